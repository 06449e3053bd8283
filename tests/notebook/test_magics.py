"""%instant / %%instant through a real IPython shell against the local server.

Every grammar form of docs/notebooks.md is exercised here; errors must be short and never
show a token.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

from instantdb import Instant, InstantValidationError
from instantdb import id as new_id
from instantdb_local import AppCredentials, LocalServer
from instantdb_notebook.magics import InstantMagic, InstantMagicError, magic_of

SCHEMA = {
    "attrs": {
        "goals": {
            "title": {"type": "string", "unique": False, "indexed": True, "required": False},
            "n": {"type": "number", "unique": False, "indexed": True, "required": False},
        },
        "todos": {
            "text": {"type": "string", "unique": False, "indexed": False, "required": False},
        },
    },
    "links": {
        "goalTodos": {
            "forward": {"on": "goals", "label": "todos", "has": "many"},
            "reverse": {"on": "todos", "label": "goal", "has": "one"},
        }
    },
}
RULES = {"goals": {"allow": {"view": "data.title != 'private' || ruleParams.key == 'open'"}}}


class Cell:
    """Runs cells and collects everything they print, for assertions."""

    def __init__(self, shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
        self.shell = shell
        self.capsys = capsys
        self.everything: list[str] = []

    def __call__(self, code: str) -> tuple[ExecutionResult, str]:
        result = self.shell.run_cell(code)
        captured = self.capsys.readouterr()
        output = captured.out + captured.err
        self.everything.append(output + repr(result.result))
        return result, output

    def ok(self, code: str) -> Any:
        result, output = self(code)
        assert result.success, output
        return result.result

    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns


@pytest.fixture
def cell(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> Cell:
    return Cell(shell, capsys)


@pytest.fixture
def app(instant_server: LocalServer) -> AppCredentials:
    return instant_server.create_app("magics", schema=SCHEMA, rules=RULES)


@pytest.fixture
def env_app(app: AppCredentials, clean_env: pytest.MonkeyPatch) -> AppCredentials:
    for key, value in app.env.items():
        clean_env.setenv(key, value)
    return app


@pytest.fixture
def seeded(env_app: AppCredentials) -> AppCredentials:
    with Instant(
        app_id=env_app.app_id, admin_token=env_app.admin_token, api_uri=env_app.api_uri
    ) as db:
        goal = new_id()
        db.transact(
            [db.tx.goals[new_id()].update({"title": f"g{n}", "n": n}) for n in range(5)]
            + [
                db.tx.goals[goal].update({"title": "private", "n": 99}),
                db.tx.todos[new_id()].update({"text": "write"}).link({"goal": goal}),
            ]
        )
    return env_app


def titles(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["title"]) if "title" in frame else []


# -- connections ---------------------------------------------------------------------------


def test_queries_use_the_environment_when_not_connected(cell: Cell, seeded: AppCredentials) -> None:
    frame = cell.ok("%instant goals")
    assert isinstance(frame, pd.DataFrame)
    assert titles(frame) == ["g0", "g1", "g2", "g3", "g4", "private"]


def test_connect_from_the_environment_says_where_not_the_token(
    cell: Cell, env_app: AppCredentials
) -> None:
    _, output = cell("%instant --connect")
    assert f"Connected: default: app {env_app.app_id} at {env_app.api_uri}" in output
    assert env_app.admin_token not in output


def test_connect_with_app_id_token_variable_alias_and_switching(
    cell: Cell, app: AppCredentials, clean_env: pytest.MonkeyPatch, instant_server: LocalServer
) -> None:
    other = instant_server.create_app("other")
    clean_env.setenv("MY_TOKEN", app.admin_token)
    clean_env.setenv("OTHER_TOKEN", other.admin_token)
    uri = app.api_uri
    cell.ok(
        f"%instant --connect {app.app_id} --api-uri {uri} --admin-token-env MY_TOKEN --alias main"
    )
    cell.ok(
        f"%instant --connect {other.app_id} --api-uri {uri} --admin-token-env OTHER_TOKEN"
        " --alias other"
    )
    cell.ok('%%instant --transact\ntx.goals[id()].update({"title": "in other"})')
    assert titles(cell.ok("%instant -c main goals")) == []
    assert titles(cell.ok("%instant goals")) == ["in other"]
    _, listing = cell("%instant --connections")
    assert f"  main: app {app.app_id}" in listing
    assert f"* other: app {other.app_id}" in listing
    assert "token from $MY_TOKEN" in listing
    assert app.admin_token not in listing
    cell.ok("%instant --use main")
    assert titles(cell.ok("%instant goals")) == []
    cell.ok("%instant --close main")
    _, listing = cell("%instant --connections")
    assert "main" not in listing
    assert "* other" in listing


def test_connect_errors_name_the_missing_variable(cell: Cell) -> None:
    result, output = cell("%instant --connect")
    assert not result.success
    assert "UsageError: INSTANT_APP_ID is not set" in output
    assert "--local" in output
    result, output = cell("%instant --connect some-app --admin-token-env NOPE_TOKEN")
    assert "the environment variable NOPE_TOKEN is not set" in output
    assert "Traceback" not in output


def test_a_token_pasted_as_a_variable_name_is_not_echoed(cell: Cell) -> None:
    result, output = cell("%instant --connect app --admin-token-env 0f3c9a7e-5b1d-4c2a-9e8f")
    assert not result.success
    assert "0f3c9a7e" not in output
    assert "name of an environment variable" in output


def test_prompt_token_uses_getpass(
    cell: Cell, app: AppCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return app.admin_token

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    _, output = cell(f"%instant --connect {app.app_id} --api-uri {app.api_uri} --prompt-token")
    assert prompts == [f"Admin token for app {app.app_id}: "]
    assert "token from getpass" in cell("%instant --connections")[1]
    assert cell.ok("%instant goals").empty
    assert app.admin_token not in output


def test_keyring_token(cell: Cell, app: AppCredentials, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    fake = types.ModuleType("keyring")

    def get_password(service: str, user: str) -> str | None:
        asked.append((service, user))
        return app.admin_token if service == "instant" else None

    fake.get_password = get_password  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", fake)
    cell.ok(f"%instant --connect {app.app_id} --api-uri {app.api_uri} --keyring instant")
    assert asked == [("instant", app.app_id)]
    assert cell.ok("%instant goals").empty
    _, output = cell(f"%instant --connect {app.app_id} --keyring nothing-here")
    assert "keyring has no password for service 'nothing-here'" in output


def test_keyring_missing_says_what_to_install(cell: Cell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)
    _, output = cell("%instant --connect app --keyring svc")
    assert "pip install keyring" in output


def test_local_server_owned_by_the_extension(cell: Cell, shell: InteractiveShell) -> None:
    _, output = cell("%instant --local")
    assert "Connected: local: app" in output
    assert "local server, temporary data" in output
    magic = magic_of(shell)
    assert magic is not None
    connection = magic.connections.current
    assert connection is not None
    server = connection.server
    assert server is not None
    assert server.running
    cell.ok('%instant --transact tx.goals[id()].update({"title": "local"})')
    assert titles(cell.ok("%instant goals")) == ["local"]
    cell.ok("%instant --close local")
    assert not server.running


def test_local_server_with_a_named_data_dir_keeps_data(cell: Cell, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cell.ok(f"%instant --local --data-dir {data} --alias mine")
    cell.ok('%instant --transact tx.goals[id()].update({"title": "kept"})')
    cell.ok("%instant --close mine")
    _, output = cell(f"%instant --local --data-dir {data}")
    assert f"data in {data}" in output
    assert titles(cell.ok("%instant goals")) == ["kept"]


def test_unloading_the_extension_stops_its_local_servers(
    shell: InteractiveShell, cell: Cell
) -> None:
    cell.ok("%instant --local")
    magic = magic_of(shell)
    assert magic is not None
    assert magic.connections.current is not None
    server = magic.connections.current.server
    assert server is not None
    shell.run_line_magic("unload_ext", "instantdb_notebook")
    assert not server.running
    shell.run_line_magic("load_ext", "instantdb_notebook")


def test_attach_to_a_running_server_object_or_its_data_dir(cell: Cell, tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path / "srv") as server:
        server.client().transact(server.client().tx.goals[new_id()].update({"title": "there"}))
        cell.ns["server"] = server
        _, output = cell("%instant --attach server")
        assert "attached local server" in output
        assert titles(cell.ok("%instant goals")) == ["there"]
        _, output = cell(f"%instant --attach {tmp_path / 'srv'} --alias bydir")
        assert f"data in {tmp_path / 'srv'}" in output
        assert titles(cell.ok("%instant goals")) == ["there"]
    _, output = cell(f"%instant --attach {tmp_path / 'nothing'}")
    assert "No local Instant data in" in output


def test_attach_to_a_data_dir_whose_server_stopped_says_how_to_start_it(
    cell: Cell, tmp_path: Path
) -> None:
    data = tmp_path / "stopped"
    with LocalServer(data_dir=data):
        pass  # it ran once, so the data dir names an address where nothing answers now
    started = time.monotonic()
    result, output = cell(f"%instant --attach {data}")
    assert time.monotonic() - started < 10
    assert not result.success
    assert "Connected" not in output
    assert "No local server answers at http://127.0.0.1:" in output
    assert f"instantdb-local serve --data {data}" in output
    assert "Traceback" not in output
    _, listing = cell("%instant --connections")
    assert listing.strip() == "No connections yet."


def test_token_options_without_connect_are_refused(cell: Cell) -> None:
    _, output = cell("%instant --prompt-token goals")
    assert "go with --connect" in output
    _, output = cell("%instant --local --admin-token-env X")
    assert "go with --connect" in output


# -- query forms ------------------------------------------------------------------------------


def test_query_forms(cell: Cell, seeded: AppCredentials) -> None:
    where = '{"goals": {"$": {"where": {"n": {"$in": [1, 2]}}}}}'
    assert titles(cell.ok(f"%instant {where}")) == ["g1", "g2"]
    assert titles(cell.ok('%instant {"goals": {"$": {"where": {"n": {"$gt": 3}}}}}')) == [
        "g4",
        "private",
    ]
    cell.ns["q"] = {"goals": {"$": {"where": {"title": "g3"}}}}
    assert titles(cell.ok("%instant $q")) == ["g3"]
    cell.ns["goals"] = {"not": "a query"}  # a variable never shadows a namespace
    assert len(cell.ok("%instant goals")) == 6
    cell.ns["pick"] = lambda n: {"goals": {"$": {"where": {"n": n}}}}
    assert titles(cell.ok("%instant pick(4)")) == ["g4"]
    body = '{\n  "goals": {\n    "$": {"where": {"n": {"$lt": 2}}}\n  }\n}'
    assert titles(cell.ok(f"%%instant\n{body}")) == ["g0", "g1"]
    nested = cell.ok("%instant goals todos")
    assert [len(todos) for todos in nested.sort_values("n")["todos"]][-1] == 1


def test_several_namespaces_give_a_dict_of_frames(cell: Cell, seeded: AppCredentials) -> None:
    frames = cell.ok('%instant {"goals": {}, "todos": {}}')
    assert sorted(frames) == ["goals", "todos"]
    assert list(frames["todos"]["text"]) == ["write"]


def test_result_assignment_forms(cell: Cell, seeded: AppCredentials) -> None:
    result, output = cell("%instant a << goals")
    assert result.result is None
    assert "Out" not in output
    assert len(cell.ns["a"]) == 6
    result, output = cell("%instant b= << goals")
    assert result.result is cell.ns["b"]
    cell("%%instant c <<\ngoals")
    assert len(cell.ns["c"]) == 6
    result, _ = cell("%instant -o d goals")
    assert result.result is None
    assert len(cell.ns["d"]) == 6
    cell.ok("e = %instant goals")
    assert len(cell.ns["e"]) == 6


def test_limit_autolimit_dry_run_and_raw(cell: Cell, seeded: AppCredentials) -> None:
    assert len(cell.ok("%instant --limit 2 goals")) == 2
    assert cell.ok("%instant --dry-run --limit 2 goals todos") == {
        "goals": {"todos": {}, "$": {"limit": 2}}
    }
    cell.ok("%config InstantMagic.autolimit = 3")
    assert len(cell.ok("%instant goals")) == 3
    cell.ok("%config InstantMagic.autolimit = 0")
    raw = cell.ok("%instant --raw goals")
    assert isinstance(raw, dict)
    assert len(raw["goals"]) == 6
    cell.ok("%config InstantMagic.autodataframe = False")
    assert isinstance(cell.ok("%instant goals"), dict)


def test_all_pages_through_with_progress(cell: Cell, seeded: AppCredentials) -> None:
    result, output = cell("%instant --all --page-size 2 goals")
    assert result.success, output
    assert titles(result.result) == ["g0", "g1", "g2", "g3", "g4", "private"]
    assert "goals: 6 entities fetched (3 pages)" in output
    assert result.result.index.is_unique
    cell.ok("%config InstantMagic.progress = False")
    _, output = cell("%instant --all --page-size 4 goals")
    assert "fetched" not in output


def test_all_refuses_queries_that_page_themselves(cell: Cell, seeded: AppCredentials) -> None:
    _, output = cell('%instant --all {"goals": {"$": {"offset": 2}}}')
    assert "remove offset" in output
    _, output = cell("%instant --all --limit 2 goals")
    assert "drop --limit" in output


def test_transact_line_and_cell(cell: Cell, env_app: AppCredentials) -> None:
    result = cell.ok('%instant --transact tx.goals[id()].update({"title": "one"})')
    assert set(result) == {"tx-id"}
    cell.ns["names"] = ["two", "three"]
    cell.ok(
        '%%instant --transact\n[\n  tx.goals[id()].update({"title": name})\n  for name in names\n]'
    )
    assert titles(cell.ok("%instant goals")) == ["one", "three", "two"]
    _, output = cell("%instant --transact")
    assert "--transact needs chunks" in output


def bob_refresh_token(app: AppCredentials) -> str:
    """A refresh token of bob@example.com, made with the app's admin token."""
    with Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as db:
        return db.auth.create_token(email="bob@example.com")


def test_no_token_connects_for_users_only_and_says_which_options_work(
    cell: Cell, seeded: AppCredentials, clean_env: pytest.MonkeyPatch
) -> None:
    refresh = bob_refresh_token(seeded)
    clean_env.setenv("BOB_TOKEN", refresh)
    clean_env.delenv("INSTANT_APP_ADMIN_TOKEN")
    _, output = cell(f"%instant --connect {seeded.app_id} --no-token --alias users")
    assert f"Connected: users: app {seeded.app_id} at {seeded.api_uri} (no admin token)" in output
    guest = cell.ok("%instant --guest goals")
    assert titles(guest) == ["g0", "g1", "g2", "g3", "g4"]  # the rules hide "private"
    as_bob = cell.ok("%instant --token-env BOB_TOKEN goals")
    assert titles(as_bob) == ["g0", "g1", "g2", "g3", "g4"]
    cell.ok('%instant --guest --rule-params \'{"key": "open"}\' -o opened goals')
    assert "private" in titles(cell.ns["opened"])

    for line in ("%instant goals", "%instant --live goals", "%instant --transact tx"):
        result, output = cell(line)
        assert not result.success
        message = output.strip()
        assert message.startswith("UsageError: the connection users has no admin token")
        assert "it was made with --no-token" in message
        assert "--guest" in message
        assert "--token-env VAR" in message
        assert "--as-email needs the admin token" in message
        assert "admin_token=" not in message
        assert "as_user(" not in message
    _, output = cell("%instant --as-email bob@example.com goals")
    assert "UsageError: --as-email needs the admin token" in output
    assert "admin_token=" not in output
    _, output = cell("%instant --schema")
    assert "UsageError: --schema (the schema is read as admin) needs the admin token" in output
    assert refresh not in "".join(cell.everything)


def test_out_and_connection_long_forms(
    cell: Cell, app: AppCredentials, instant_server: LocalServer, clean_env: pytest.MonkeyPatch
) -> None:
    other = instant_server.create_app("other-long-forms")
    clean_env.setenv("MAIN_TOKEN", app.admin_token)
    clean_env.setenv("OTHER_TOKEN", other.admin_token)
    cell.ok(
        f"%instant --connect {app.app_id} --api-uri {app.api_uri} "
        "--admin-token-env MAIN_TOKEN --alias main"
    )
    cell.ok('%instant --transact tx.goals[id()].update({"title": "in main"})')
    cell.ok(
        f"%instant --connect {other.app_id} --api-uri {app.api_uri} "
        "--admin-token-env OTHER_TOKEN --alias other"
    )
    result, output = cell("%instant --connection main --out from_main goals")
    assert result.success, output
    assert result.result is None  # stored, not shown
    assert titles(cell.ns["from_main"]) == ["in main"]
    cell.ok("%instant --out from_current goals")
    assert titles(cell.ns["from_current"]) == []  # --connection was for that command only
    _, listing = cell("%instant --connections")
    assert f"* other: app {other.app_id}" in listing
    result, output = cell("%instant --connection nowhere goals")
    assert "No connection named 'nowhere' (connections: main, other)" in output


def test_acting_as_a_user(
    cell: Cell, seeded: AppCredentials, clean_env: pytest.MonkeyPatch
) -> None:
    refresh = bob_refresh_token(seeded)
    assert "private" not in titles(cell.ok("%instant --guest goals"))
    assert "private" not in titles(cell.ok("%instant --as-email bob@example.com goals"))
    clean_env.setenv("BOB_TOKEN", refresh)
    result, output = cell("%instant --token-env BOB_TOKEN goals")
    assert result.success, output
    assert "private" not in titles(result.result)
    assert refresh not in output
    _, output = cell("%instant --guest --as-email a@b.c goals")
    assert "one user at a time" in output


def test_rule_params_as_json_or_a_variable(cell: Cell, seeded: AppCredentials) -> None:
    assert "private" in titles(cell.ok('%instant --guest --rule-params \'{"key": "open"}\' goals'))
    cell.ns["params"] = {"key": "open"}
    assert "private" in titles(cell.ok("%instant --guest --rule-params $params goals"))
    assert "private" not in titles(cell.ok("%instant --guest --rule-params '{\"key\": 1}' goals"))
    _, output = cell("%instant --rule-params '[1]' goals")
    assert "--rule-params must be a dict" in output


# -- errors ---------------------------------------------------------------------------------


def test_a_bad_query_is_a_short_error_stored_in_the_target(
    cell: Cell, seeded: AppCredentials
) -> None:
    result, output = cell('%instant bad << {"todos": {"$": {"where": {"text": {"$gt": 1}}}}}')
    assert not result.success
    assert isinstance(result.error_in_exec, InstantMagicError)
    assert "Traceback" not in output
    assert "InstantValidationError: " in output
    assert "hint: " in output
    assert "(the exception is stored in bad)" in output
    assert len(output.strip().splitlines()) <= 4
    assert isinstance(cell.ns["bad"], InstantValidationError)
    assert seeded.admin_token not in output


def test_full_tracebacks_on_request(cell: Cell, seeded: AppCredentials) -> None:
    cell.ok("%config InstantMagic.short_errors = False")
    result, output = cell('%instant {"todos": {"$": {"where": {"text": {"$gt": 1}}}}}')
    assert isinstance(result.error_in_exec, InstantValidationError)
    assert "Traceback" in output


def test_usage_errors_are_one_line(cell: Cell, seeded: AppCredentials) -> None:
    for line, expected in [
        ("%instant --bogus goals", "unknown option(s): --bogus"),
        ("%instant [1, 2]", "the query must be a dict"),
        ('%instant {"goals": ', "the query is not a Python expression"),
        ("%instant", "no query"),
        ("%instant --live --all goals", "--live shows everything"),
        ("%instant --stream-id a --stream-client b", "give --stream-id or --stream-client"),
    ]:
        result, output = cell(line)
        assert not result.success
        assert f"UsageError: {expected}" in output, (line, output)
        assert "Traceback" not in output


def test_options_after_the_query_say_they_go_first(cell: Cell, seeded: AppCredentials) -> None:
    for line, fix in [
        ("%instant goals --limit 3", "%instant --limit 3 goals"),
        ("%instant goals todos --raw", "%instant --raw goals todos"),  # valid Python
        ("%instant goals --limit=2 --raw", "%instant --limit=2 --raw goals"),
    ]:
        result, output = cell(line)
        assert not result.success
        assert "UsageError: options come before the query" in output, output
        assert f"Write {fix}" in output
        assert "invalid syntax" not in output
        assert "not a Python expression" not in output
    _, output = cell("%%instant\ngoals --limit 3")
    assert "options go on the %%instant line" in output
    # An option's name inside a valid query is data, not a misplaced option.
    frame = cell.ok('%instant {"goals": {"$": {"where": {"title": "--limit"}}}}')
    assert frame.empty


def test_a_column_name_clash_names_the_magics_sep_option(
    cell: Cell, env_app: AppCredentials
) -> None:
    cell.ok(
        "%instant --transact "
        'tx.goals[id()].update({"title": "t", "meta": {"owner": "a"}, "meta.owner": "b"})'
    )
    result, output = cell("%instant goals")
    assert not result.success
    assert "would both be named 'meta.owner'" in output
    assert "add --sep __ to the %instant line's options (%instant --sep __ QUERY)" in output
    assert "sep=" not in output
    frame = cell.ok("%instant --sep __ goals")
    assert (frame["meta.owner"].iloc[0], frame["meta__owner"].iloc[0]) == ("b", "a")
    assert list(cell.ok("%instant --sep __ --live goals").wait_for(timeout=10)["meta__owner"]) == [
        "a"
    ]


def test_help_lists_every_option_and_sends_nothing(cell: Cell) -> None:
    from instantdb_notebook._magic_args import _PARSER

    for line in ("%instant --help", "%instant -h goals"):
        result, output = cell(line)
        assert result.success, output
        assert result.result is None
        assert output.startswith("usage: %instant [OPTIONS]")
        assert "%%instant [OPTIONS] [TARGET]" in output
        options = [flag for action in _PARSER._actions for flag in action.option_strings]
        assert len(options) > 30
        for flag in options:
            assert flag in output, flag
    # The hint in the unknown-option error points at a command that exists.
    _, output = cell("%instant --bogus goals")
    assert "%instant --help lists them" in output


def test_errors_in_the_users_expression_are_short(cell: Cell, seeded: AppCredentials) -> None:
    result, output = cell("%instant make_query(1)")
    assert "CellCodeError: the cell's expression raised NameError" in output
    assert isinstance(result.error_in_exec, InstantMagicError)
    assert "Traceback" not in output


def test_not_connected_says_how(cell: Cell) -> None:
    _, output = cell("%instant goals")
    assert "INSTANT_APP_ID is not set" in output
    assert "%instant --local" in output


def test_dollar_operators_are_not_expanded_by_ipython(cell: Cell, seeded: AppCredentials) -> None:
    cell.ns["gt"] = "BROKEN"
    cell.ns["where"] = "BROKEN"
    frame = cell.ok('%instant {"goals": {"$": {"where": {"n": {"$gt": 3}}}}}')
    assert titles(frame) == ["g4", "private"]


def test_dollar_words_outside_braces_reach_the_magic_unexpanded(
    cell: Cell, seeded: AppCredentials
) -> None:
    # IPython leaves a line alone when a {...} in it fails to evaluate, so the JSON above
    # would pass even with expansion. With no braces, only @no_var_expand keeps IPython
    # from replacing $gt and $ne by the variables gt and ne.
    cell.ns["gt"] = "BROKEN"
    cell.ns["ne"] = "BROKEN"
    cell.ns["where"] = lambda attr, op, value: {"goals": {"$": {"where": {attr: {op: value}}}}}
    assert cell.ok('%instant --dry-run where("n", "$gt", 3)') == {
        "goals": {"$": {"where": {"n": {"$gt": 3}}}}
    }
    frame = cell.ok('%instant where("title", "$ne", "private")')
    assert titles(frame) == ["g0", "g1", "g2", "g3", "g4"]


# -- a token typed where something else belongs -----------------------------------------------

# Shaped like Instant's tokens (a UUID); every group is hex, and as Python it is
# ``ab12cd34 - ef56 - ...``, whose NameError would quote its first 8 characters.
PASTED = "ab12cd34-ef56-abcd-bcde-abcdef012345"


def assert_not_shown(output: str, secret: str = PASTED) -> None:
    assert secret not in output
    assert secret[:8] not in output
    assert secret[-12:] not in output


def test_a_token_after_connect_is_refused_before_connecting(
    cell: Cell, env_app: AppCredentials
) -> None:
    result, output = cell(f"%instant --connect {env_app.app_id} {PASTED}")
    assert not result.success
    assert "Connected" not in output
    assert "looks like a token" in output
    assert "never typed into a cell" in output
    assert "--admin-token-env VAR" in output
    assert_not_shown(output)
    _, listing = cell("%instant --connections")
    assert listing.strip() == "No connections yet."


@pytest.mark.parametrize(
    "line",
    [
        f"%instant -o {PASTED} goals",
        f"%instant --out={PASTED} goals",
        f"%instant --use {PASTED}",
        f"%instant --close {PASTED}",
        f"%instant -c {PASTED} goals",
        f"%instant --connection {PASTED} goals",
        f"%instant --attach {PASTED}",
        f"%instant --alias {PASTED} --connect",
        f"%instant --limit {PASTED} goals",
        f"%instant --links {PASTED} goals",
        f"%instant --rule-params {PASTED} goals",
        f"%instant --as-email {PASTED} goals",
        f"%instant --keyring {PASTED} --connect",
        f"%instant --api-uri {PASTED} --connect",
        f"%instant --local --data-dir {PASTED}",
        f"%instant --token-env {PASTED} goals",
        f"%instant {PASTED}",
        f"%%instant\n{PASTED}\n",
        f"%%instant df << {PASTED}\ngoals",
    ],
)
def test_a_token_given_as_an_option_value_or_query_is_refused_unseen(
    cell: Cell, env_app: AppCredentials, line: str
) -> None:
    cell.ok("%instant --connect --alias main")
    result, output = cell(line)
    assert not result.success, output
    assert "UsageError" in output
    assert "never typed into a cell" in output, output
    assert_not_shown(output)


def test_a_token_pasted_inside_an_expression_is_hidden_in_the_error(
    cell: Cell, seeded: AppCredentials
) -> None:
    line = f'%instant bad << {{"goals": {{"$": {{"where": {{"id": {PASTED}}}}}}}}}'
    for short in (True, False):
        cell.ok(f"%config InstantMagic.short_errors = {short}")
        result, output = cell(line)
        assert not result.success
        assert "NameError" in output  # the error is still said
        assert "<hidden>" in output
        assert_not_shown(output)
        stored = cell.ns["bad"]
        chain = [stored, stored.__cause__, stored.__context__]
        assert_not_shown(" ".join(repr(error) for error in chain))


def test_a_variable_holding_a_token_is_not_echoed_by_attach(
    cell: Cell, env_app: AppCredentials
) -> None:
    cell.ns["where_it_runs"] = PASTED
    result, output = cell("%instant --attach where_it_runs")
    assert not result.success
    assert "looks like a token" in output
    assert_not_shown(output)


def test_the_admin_token_given_as_an_app_id_is_refused_unseen(
    cell: Cell, env_app: AppCredentials
) -> None:
    result, output = cell(f"%instant --connect {env_app.admin_token}")
    assert not result.success
    assert "Connected" not in output
    assert "looks like a token" in output
    assert_not_shown(output, env_app.admin_token)


def test_names_that_are_not_tokens_are_still_named_in_errors(
    cell: Cell, env_app: AppCredentials
) -> None:
    cell.ok("%instant --connect")
    _, output = cell("%instant --use staging")
    assert "No connection named 'staging' (connections: default)" in output
    _, output = cell("%instant -o 2fast goals")
    assert "-o needs a Python variable name, got '2fast'" in output
    # An app id is a UUID too, and is used (and named) as the connection's alias.
    cell.ok(f"%instant --connect {env_app.app_id}")
    _, output = cell(f"%instant --use {env_app.app_id}")
    assert f"Using {env_app.app_id}: app {env_app.app_id}" in output


def test_quoted_uuids_in_a_where_still_query(cell: Cell, env_app: AppCredentials) -> None:
    goal = new_id()
    cell.ns["goal"] = goal
    cell.ok(f'%instant --transact tx.goals["{goal}"].update({{"title": "by id"}})')
    frame = cell.ok(f'%instant {{"goals": {{"$": {{"where": {{"id": "{goal}"}}}}}}}}')
    assert list(frame.index) == [goal]
    assert titles(cell.ok('%instant {"goals": {"$": {"where": {"id": goal}}}}')) == ["by id"]


# -- configuration ----------------------------------------------------------------------------


def test_config_lists_and_sets_settings(cell: Cell, shell: InteractiveShell) -> None:
    _, output = cell("%config InstantMagic")
    for name in ("autodataframe", "displaylimit", "autolimit", "short_errors", "page_size"):
        assert f"InstantMagic.{name}" in output
    cell.ok("%config InstantMagic.displaylimit = 7")
    magic = magic_of(shell)
    assert isinstance(magic, InstantMagic)
    assert magic.displaylimit == 7
    cell("%config InstantMagic.links = 'bogus'")
    assert magic.links == "nested"


@pytest.mark.parametrize(
    ("setting", "bad", "expected"),
    [
        ("render_interval", "-1", "render_interval must be a number of seconds, 0 or more"),
        ("render_interval", "float('nan')", "render_interval must be a number of seconds"),
        ("render_interval", "float('inf')", "render_interval must be a number of seconds"),
        ("displaylimit", "-1", "displaylimit must be 0 or more"),
        ("autolimit", "-5", "autolimit must be 0 or more"),
        ("page_size", "0", "page_size must be at least 1"),
    ],
)
def test_bad_numeric_settings_are_refused_at_config_time(
    cell: Cell,
    shell: InteractiveShell,
    caplog: pytest.LogCaptureFixture,
    setting: str,
    bad: str,
    expected: str,
) -> None:
    magic = magic_of(shell)
    assert magic is not None
    before = getattr(magic, setting)
    cell(f"%config InstantMagic.{setting} = {bad}")
    assert getattr(magic, setting) == before
    # %config reports a refused value through logging.error, as one line.
    assert [record.getMessage() for record in caplog.records if expected in record.getMessage()]


def test_a_live_query_after_a_refused_setting_still_starts(
    cell: Cell, shell: InteractiveShell, seeded: AppCredentials
) -> None:
    cell("%config InstantMagic.render_interval = -1")
    live = cell.ok("%instant --live goals")
    try:
        assert len(live.wait_for(timeout=10)) == 6
    finally:
        live.stop()


def test_an_unexpected_failure_starting_a_live_query_is_short(
    cell: Cell, seeded: AppCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("the portal could not take it")

    monkeypatch.setattr("instantdb_notebook.magics.live_query", broken)
    monkeypatch.setattr("instantdb_notebook.magics.read_stream", broken)
    for line, what in [
        ("%instant --live goals", "the live query"),
        ("%instant --stream-client story", "the stream"),
    ]:
        result, output = cell(line)
        assert isinstance(result.error_in_exec, InstantMagicError)
        assert output.strip() == (
            f"LiveStartError: could not start {what}: ValueError: the portal could not take it"
        )


def test_settings_load_from_pyproject(
    shell: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.instantdb.magic]\ndisplaylimit = 5\nautolimt = 3\n", encoding="utf-8"
    )
    (tmp_path / "sub").mkdir()
    magic = magic_of(shell)
    assert magic is not None
    assert magic.load_project_config(tmp_path / "sub") == tmp_path / "pyproject.toml"
    assert magic.displaylimit == 5
    assert "no setting 'autolimt' (did you mean autolimit?)" in capsys.readouterr().out


def test_a_bad_value_in_pyproject_is_reported_and_the_rest_applied(
    shell: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.instantdb.magic]\npage_size = 0\ndisplaylimit = 9\n", encoding="utf-8"
    )
    magic = magic_of(shell)
    assert magic is not None
    magic.load_project_config(tmp_path)
    assert (magic.page_size, magic.displaylimit) == (500, 9)
    printed = capsys.readouterr().out
    assert "[tool.instantdb.magic] page_size is not used: InstantMagic.page_size must be" in printed
    assert "Traceback" not in printed


# -- completion ---------------------------------------------------------------------------------


def complete(shell: InteractiveShell, text: str) -> list[str]:
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return sorted({c.text for c in shell.Completer.completions(text, len(text))})


def test_completion_from_the_schema(
    cell: Cell, shell: InteractiveShell, seeded: AppCredentials
) -> None:
    cell.ok("%instant --connect")
    assert complete(shell, "%instant go") == ["goals"]
    assert "todos" in complete(shell, "%instant goals to")
    assert complete(shell, '%instant {"go') == ["goals"]
    assert complete(shell, '%instant {"goals": {"to') == ["todos"]
    assert complete(shell, '%instant {"goals": {"$": {"wh') == ["where"]
    assert complete(shell, '%instant {"goals": {"$": {"where": {"ti') == ["title"]
    assert complete(shell, '%instant df << {"todos": {"go') == ["goal"]
    assert complete(shell, '%%instant --limit 3\n{"goals": {"$": {"where": {"') == [
        "id",
        "n",
        "title",
    ]
    assert complete(shell, "%instant --li") == ["--limit", "--links", "--live"]


def test_completion_without_a_connection_offers_nothing_and_never_fails(
    cell: Cell, shell: InteractiveShell
) -> None:
    assert "goals" not in complete(shell, '%instant {"go')


# -- secrets ----------------------------------------------------------------------------------


def test_no_command_shows_the_admin_token(
    cell: Cell, shell: InteractiveShell, seeded: AppCredentials, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("SECOND_TOKEN", seeded.admin_token)
    commands = [
        "%instant --connect",
        f"%instant --connect {seeded.app_id} --api-uri {seeded.api_uri} "
        "--admin-token-env SECOND_TOKEN --alias second",
        "%instant --connections",
        "%instant goals",
        "%instant --guest goals",
        "%instant --dry-run goals",
        "%instant --schema",
        '%instant {"goals": {"$": {"where": {"title": {"$gt": 1}}}}}',
        "%instant --connect nope --admin-token-env UNSET_VARIABLE",
        f"%instant --connect x --admin-token-env {seeded.admin_token}",
        f"%instant --admin-token {seeded.admin_token} goals",
        f"%instant --bogus {seeded.admin_token}",
        "%config InstantMagic",
    ]
    for command in commands:
        cell(command)
    magic = magic_of(shell)
    assert magic is not None
    reprs = [repr(c) + c.describe() + repr(c.spec) for c in magic.connections.all()]
    shown = "\n".join(cell.everything + reprs)
    assert "Connected: second" in shown  # the commands did run
    assert seeded.admin_token not in shown
