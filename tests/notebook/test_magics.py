"""%instant / %%instant through a real IPython shell against the local server.

Every grammar form of docs/notebooks.md is exercised here; errors must be short and never
show a token.
"""

from __future__ import annotations

import sys
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


def test_acting_as_a_user(
    cell: Cell, seeded: AppCredentials, clean_env: pytest.MonkeyPatch
) -> None:
    with Instant(
        app_id=seeded.app_id, admin_token=seeded.admin_token, api_uri=seeded.api_uri
    ) as db:
        refresh = db.auth.create_token(email="bob@example.com")
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
