"""The example notebooks: committed without outputs, and run end to end, twice each:

- with no ``INSTANT_*`` variables, where the notebook starts its own local server;
- with the variables set to a server this test runs (as Binder's start hook and any
  user's own app do), where the notebook must use that app and start nothing.

After every cell a probe collects the secrets the kernel knows (admin tokens from the
extension's connections, any LocalServer and the environment; refresh tokens held in
variables), and no output may contain one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from instantdb_local import LocalServer

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT = 60
ENVIRONMENT = ("INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI")
PROBE = """\
import json as _json, os as _os
from instantdb_notebook.magics import magic_of as _magic_of
_magic = _magic_of(get_ipython())
_tokens = [c.spec.admin_token for c in (_magic.connections.all() if _magic else [])]
_tokens.append(_os.environ.get("INSTANT_APP_ADMIN_TOKEN"))
for _name, _value in list(globals().items()):
    if type(_value).__name__ == "LocalServer" and _value.running:
        _tokens.append(_value.admin_token)
    elif isinstance(_value, str) and _name.endswith("token") and not _name.startswith("_"):
        _tokens.append(_value)
    elif isinstance(_value, dict) and isinstance(_value.get("refresh_token"), str):
        _tokens.append(_value["refresh_token"])
print("TOKENS" + _json.dumps([t for t in _tokens if t]))
"""


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_four_notebooks() -> None:
    assert [p.name for p in notebook_paths()] == [
        "01_quickstart.ipynb",
        "02_dataframe_analysis.ipynb",
        "03_live_and_streams.ipynb",
        "04_permissions_and_auth.ipynb",
    ]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs: {cell.source[:40]!r}"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_the_first_cell_says_where_the_data_goes(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    first, setup = notebook.cells[0], notebook.cells[1]
    assert first.cell_type == "markdown"
    assert "INSTANT_APP_ID" in first.source
    assert "INSTANT_API_URI" in first.source
    assert "local server" in first.source
    # The first code cell starts a server only when both variables are absent.
    assert setup.cell_type == "code"
    assert 'os.environ.get("INSTANT_APP_ID") or os.environ.get("INSTANT_API_URI")' in setup.source


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def outside_server() -> Iterator[LocalServer]:
    """A server the notebooks are pointed at, serving the notebooks' project files."""
    with LocalServer(project_dir=NOTEBOOKS) as server:
        yield server


def execute(path: Path) -> nbformat.NotebookNode:
    """Run ``path`` with a probe after every code cell, in the notebooks' directory."""
    notebook = nbformat.read(path, as_version=4)
    probed = nbformat.v4.new_notebook(metadata=notebook.metadata)
    for cell in notebook.cells:
        probed.cells.append(cell)
        if cell.cell_type == "code":
            probed.cells.append(nbformat.v4.new_code_cell(PROBE, metadata={"probe": True}))
    client = NotebookClient(
        probed,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # as Jupyter runs it
    )
    client.execute()  # raises CellExecutionError on any untagged failing cell
    return probed


def assert_no_secret_shown(probed: nbformat.NotebookNode) -> None:
    secrets: set[str] = set()
    for cell in probed.cells:
        if cell.metadata.get("probe"):
            text = "".join(o.get("text", "") for o in cell.outputs)
            secrets.update(json.loads(text.split("TOKENS", 1)[1]))
    assert secrets, "the probe found no token: the notebook never connected"
    shown = json.dumps(
        {
            "outputs": [
                c.outputs
                for c in probed.cells
                if c.cell_type == "code" and not c.metadata.get("probe")
            ],
            "metadata": probed.metadata,
        }
    )
    for secret in secrets:
        assert secret not in shown


def setup_output(probed: nbformat.NotebookNode) -> str:
    """What the first code cell (the connection) showed."""
    cell = next(c for c in probed.cells if c.cell_type == "code")
    return json.dumps(cell.outputs)


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_runs_with_no_credentials_on_its_own_local_server(path: Path) -> None:
    probed = execute(path)
    assert "http://127.0.0.1:" in setup_output(probed)
    assert_no_secret_shown(probed)


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_runs_against_the_app_the_environment_names(
    path: Path, outside_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in outside_server.env.items():
        monkeypatch.setenv(name, value)
    probed = execute(path)
    # Its client is the app it was given, not a server of its own.
    shown = setup_output(probed)
    assert f"app_id='{outside_server.app_id}'" in shown
    assert f"api_uri='{outside_server.api_uri}'" in shown
    assert_no_secret_shown(probed)
