"""The notebook layer never shows the admin token or a refresh token: every ``%instant``
form (errors included, short and full tracebacks), what each cell returns and stores,
the live handles' reprs and displays, the widgets' state (``get_state()``, as sent to
the browser), and the outputs of an executed notebook, widget state included.

The scanner is the SDK harness's (`SecretScanner`, `capture_everything`): logs at DEBUG,
warnings and output are scanned along with each cell's results and errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient

from instantdb import Instant
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_notebook.live import LiveEndedError
from tests.reliability._notebook_operations import (
    NOTEBOOK_OPERATIONS,
    Seen,
    public_notebook_callables,
)
from tests.reliability._secrets import SecretScanner, capture_everything

REFRESH_VARIABLE = "SECRETS_USER_TOKEN"
RULES = {
    "goals": {"allow": {"view": "true", "create": "true"}},
    "$streams": {"allow": {"$default": "true"}},
}
SCHEMA = {"attrs": {"goals": {"title": {"type": "string"}}}, "links": {}}

# Every form of the grammar (docs/notebooks.md), successes and failures.
CELLS = [
    "%instant --connect",
    "%instant --connections",
    "%instant goals",
    "%instant --raw goals",
    "%instant --dry-run --limit 1 goals",
    "%instant --all --page-size 1 goals",
    "%instant --rule-params '{\"k\": 1}' goals",
    "%instant --guest goals",
    "%instant --as-email someone@b.co goals",
    f"%instant --token-env {REFRESH_VARIABLE} goals",
    f"%instant --token-env {REFRESH_VARIABLE} --raw goals",
    "%instant --links ids goals",
    "%instant --schema",
    "%%instant --transact\n[tx.goals[id()].update({'title': 'from a cell'})]",
    f"%%instant --token-env {REFRESH_VARIABLE} --transact\n"
    "[tx.goals[id()].update({'title': 'as the user'})]",
    "%%instant\n{'goals': {'$': {'limit': 2}}}",
    "%instant df << goals",
    "%instant -o stored goals",
    "%instant --help",
    # Failures: refused options, bad values, server refusals, missing variables.
    "%instant --token abc goals",
    "%instant --admin-token abc goals",
    "%instant --refresh-token abc goals",
    "%instant --token-env NO_SUCH_VARIABLE goals",
    "%instant --connect not-an-app-id",
    "%instant --connect 00000000-0000-4000-8000-000000000000",
    "%instant {'goals': {'$': {'where': {'title': {'$gt': 1}}}}}",
    "%instant failed << {'goals': {'$': {'where': {'title': {'$gt': 1}}}}}",
    f"%instant --token-env {REFRESH_VARIABLE} --as-email a@b.co goals",
    "%instant --use nowhere",
    "%instant --close nowhere",
    "%instant {not a dict",
    "%%instant --transact\nraise ValueError('in the cell')",
    "%instant --limit x goals",
    "%instant --unknown-option value goals",
]


def test_every_public_notebook_callable_has_an_operation() -> None:
    public = public_notebook_callables()
    covered = {name for operation in NOTEBOOK_OPERATIONS for name in operation.covers}
    missing = public - covered
    assert not missing, (
        f"public notebook callables without a secrets check: {sorted(missing)}; run each "
        "in an operation of NOTEBOOK_OPERATIONS in tests/reliability/_notebook_operations.py"
    )
    assert not covered - public, f"operations cover names that are not public: {covered - public}"
    # The walk reaches classes' members, those the user found in the audit included.
    assert {"Portal.submit", "PortalFuture.result", "submit_async", "LiveQuery.wait_for"} <= public


def pasted_token_cells(world: dict[str, str]) -> list[str]:
    """The real tokens typed where the magic expects something else: each is refused or
    hidden, never repeated (the pasted tokens of docs/notebooks.md)."""
    admin, refresh, app = world["admin_token"], world["refresh_token"], world["app_id"]
    return [
        f"%instant --connect {app} {admin}",
        f"%instant --connect {admin}",
        f"%instant -o {refresh} goals",
        f"%instant --out {admin} goals",
        f"%instant --use {admin}",
        f"%instant --close {refresh}",
        f"%instant -c {admin} goals",
        f"%instant --connection {refresh} goals",
        f"%instant --attach {admin}",
        f"%instant --alias {admin} --connect",
        f"%instant --keyring {refresh} --connect {app}",
        f"%instant --as-email {refresh} goals",
        f"%instant --rule-params {refresh} goals",
        f"%instant --limit {admin} goals",
        f"%instant {refresh}",
        f"%%instant\n{admin}",
        f"%instant {{'goals': {{'$': {{'where': {{'id': {refresh}}}}}}}}}",
        f"%%instant --transact\ntx.goals[{admin}].update({{}})",
    ]


@pytest.fixture(scope="module")
def world(server: LocalServer) -> dict[str, str]:
    creds = server.create_app(title="notebook-secrets", schema=SCHEMA, rules=RULES)
    with Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri) as db:
        refresh = db.auth.create_token(email="someone@b.co")
        db.transact(db.tx.goals[db_id()].update({"title": "first"}))
        with db.streams.write(client_id="notebook-stream", timeout=10) as writer:
            writer.write("a stream \u2713")
    return {
        "app_id": creds.app_id,
        "admin_token": creds.admin_token,
        "api_uri": creds.api_uri,
        "refresh_token": refresh,
    }


def db_id() -> str:
    from instantdb import id

    return id()


def _scanner(world: dict[str, str]) -> SecretScanner:
    return SecretScanner(
        {"admin token": world["admin_token"], "refresh token": world["refresh_token"]}
    )


@pytest.fixture
def shell(
    world: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[InteractiveShell]:
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.setenv("INSTANT_APP_ID", world["app_id"])
    monkeypatch.setenv("INSTANT_APP_ADMIN_TOKEN", world["admin_token"])
    monkeypatch.setenv("INSTANT_API_URI", world["api_uri"])
    monkeypatch.setenv(REFRESH_VARIABLE, world["refresh_token"])
    monkeypatch.chdir(tmp_path)  # no pyproject.toml is picked up
    ip = get_ipython()
    assert ip is not None
    ip.run_line_magic("load_ext", "instantdb_notebook")
    before = set(ip.user_ns)
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "instantdb_notebook")
        ip.config.pop("InstantMagic", None)
        for name in set(ip.user_ns) - before:
            del ip.user_ns[name]


@pytest.fixture
def plain_shell(
    world: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[InteractiveShell]:
    """The shell with the app in the environment and the extension not loaded."""
    from IPython.testing.globalipapp import get_ipython

    for name, value in _environment(world).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    ip = get_ipython()
    assert ip is not None
    before = set(ip.user_ns)
    try:
        yield ip
    finally:
        ip.config.pop("InstantMagic", None)
        for name in set(ip.user_ns) - before:
            del ip.user_ns[name]


def _environment(world: dict[str, str]) -> dict[str, str]:
    return {
        "INSTANT_APP_ID": world["app_id"],
        "INSTANT_APP_ADMIN_TOKEN": world["admin_token"],
        "INSTANT_API_URI": world["api_uri"],
        REFRESH_VARIABLE: world["refresh_token"],
    }


@pytest.mark.parametrize(
    "operation",
    NOTEBOOK_OPERATIONS,
    ids=[operation.run.__name__.strip("_") for operation in NOTEBOOK_OPERATIONS],
)
def test_public_notebook_callables_show_no_token(
    plain_shell: InteractiveShell,
    world: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    operation: Any,
) -> None:
    scanner = _scanner(world)
    seen = Seen(world=world, scanner=scanner, shell=plain_shell, tmp_path=tmp_path)
    with capture_everything() as captured:
        operation.run(seen)
    printed = capsys.readouterr()
    scanner.capture(operation.run.__name__, captured)
    scanner.text("printed", printed.out + printed.err)
    assert scanner.leaks == []


def _scan_cell(scanner: SecretScanner, shell: InteractiveShell, code: str) -> bool:
    result = shell.run_cell(code)
    where = f"cell {code.splitlines()[0]!r}"
    if result.result is not None:
        scanner.object(f"{where} result", result.result)
        _scan_displays(scanner, where, result.result)
    error = result.error_in_exec or result.error_before_exec
    if error is not None:
        scanner.error(f"{where} error", error)
    return bool(result.success)


def _scan_displays(scanner: SecretScanner, where: str, value: Any) -> None:
    """What a front end would be sent: mimebundles, HTML, and widget state."""
    for method in ("_repr_html_", "_repr_mimebundle_", "_repr_markdown_"):
        render = getattr(value, method, None)
        if callable(render):
            scanner.text(f"{where} {method}", repr(render()))
    widget = getattr(value, "widget", None)
    for candidate in (value, widget):
        if candidate is not None and hasattr(candidate, "get_state"):
            scanner.text(f"{where} widget state", json.dumps(candidate.get_state(), default=repr))
            for child in getattr(candidate, "children", ()):
                scanner.text(f"{where} child state", json.dumps(child.get_state(), default=repr))


@pytest.mark.parametrize("short_errors", [True, False])
def test_every_magic_form_shows_no_token(
    shell: InteractiveShell,
    world: dict[str, str],
    short_errors: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scanner = _scanner(world)
    outcomes: list[bool] = []
    with capture_everything() as captured:
        shell.run_cell(f"%config InstantMagic.short_errors = {short_errors}")
        for code in CELLS:
            outcomes.append(_scan_cell(scanner, shell, code))
        for code in pasted_token_cells(world):
            assert not _scan_cell(scanner, shell, code), code
        # Everything the cells left in the namespace: results, stored errors, handles.
        for name in ("df", "stored", "failed"):
            if name in shell.user_ns:
                scanner.object(f"user_ns[{name!r}]", shell.user_ns[name])
        shell.run_cell("%instant --close default")
    printed = capsys.readouterr()
    scanner.capture("magics", captured)
    scanner.text("printed", printed.out + printed.err + captured.stdout.getvalue())
    assert scanner.leaks == []
    assert any(outcomes)
    assert not all(outcomes)
    assert isinstance(shell.user_ns.get("failed"), Exception)  # the stored error was scanned


def test_live_handles_and_widgets_show_no_token(
    shell: InteractiveShell, world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    scanner = _scanner(world)
    with capture_everything() as captured:
        cells = {
            "live": "live = %instant --live goals",
            "as_user": f"mine = %instant --token-env {REFRESH_VARIABLE} --live goals",
            "stream": "story = %instant --stream-client notebook-stream",
            "missing": "gone = %instant --stream-client no-such-stream",
        }
        for code in cells.values():
            assert _scan_cell(scanner, shell, code), code
        live, mine = shell.user_ns["live"], shell.user_ns["mine"]
        story, gone = shell.user_ns["story"], shell.user_ns["gone"]
        live.wait_for(timeout=15)
        mine.wait_for(timeout=15)
        assert story.wait_for(timeout=15) == "a stream \u2713"
        with pytest.raises(LiveEndedError) as ended:
            gone.wait_for(timeout=15)
        scanner.error("a missing stream's wait", ended.value)
        for name, handle in (("live", live), ("mine", mine), ("story", story), ("gone", gone)):
            scanner.object(f"{name} handle", handle)
            scanner.object(f"{name} state", handle.state)
            _scan_displays(scanner, name, handle)
            if handle.error is not None:
                scanner.error(f"{name} error", handle.error)
            handle.stop()
            _scan_displays(scanner, f"{name} stopped", handle)
    printed = capsys.readouterr()
    scanner.capture("live", captured)
    scanner.text("printed", printed.out + printed.err)
    assert scanner.leaks == []


NOTEBOOK_CELLS = [
    "%load_ext instantdb_notebook",
    "%instant --connect",
    "%instant goals",
    f"%instant --token-env {REFRESH_VARIABLE} goals",
    "live = %instant --live goals\nlive",
    "live.wait_for(timeout=30); live.stop(); live",
    "story = %instant --stream-client notebook-stream\nstory",
    "story.wait_for(timeout=30); story",
    "%instant --connections",
    "import os\nfrom instantdb import Instant\n"
    "db = Instant(app_id=os.environ['INSTANT_APP_ID'], "
    "admin_token=os.environ['INSTANT_APP_ADMIN_TOKEN'], api_uri=os.environ['INSTANT_API_URI'])\n"
    f"user = db.as_user(token=os.environ[{REFRESH_VARIABLE!r}])\n"
    "print(db, user, db.auth, db.webhooks)\ndb, user",
    "%instant {'goals': {'$': {'where': {'title': {'$gt': 1}}}}}",
]


@pytest.mark.slow
def test_an_executed_notebook_shows_no_token(
    world: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in (
        ("INSTANT_APP_ID", world["app_id"]),
        ("INSTANT_APP_ADMIN_TOKEN", world["admin_token"]),
        ("INSTANT_API_URI", world["api_uri"]),
        (REFRESH_VARIABLE, world["refresh_token"]),
    ):
        monkeypatch.setenv(name, value)  # the kernel inherits them
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in NOTEBOOK_CELLS]
    notebook.cells[-1].metadata["tags"] = ["raises-exception"]
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=True,
    )
    client.execute()
    written = nbformat.writes(notebook)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert any(o.get("output_type") == "error" for o in outputs)  # the failure ran
    assert "application/vnd.jupyter.widget-view+json" in written  # widgets were shown
    scanner = _scanner(world)
    scanner.text("the executed notebook (outputs and widget state)", written)
    assert scanner.leaks == []


def test_the_creds_of_this_module_are_real(world: dict[str, str]) -> None:
    # The scans above look for tokens that work: a typo'd world would make them vacuous.
    creds = AppCredentials(world["app_id"], world["admin_token"], world["api_uri"])
    with Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri) as db:
        assert db.auth.verify_token(world["refresh_token"])["email"] == "someone@b.co"
        assert db.query({"goals": {}})["goals"]
