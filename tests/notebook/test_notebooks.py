"""The example notebooks: committed without outputs, and run end to end with no
credentials (each starts or attaches to a local server), with a per-cell timeout.

After every cell a probe collects the admin tokens the kernel knows (from the
extension's connections and any LocalServer), and no output may contain one.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT = 60
PROBE = """\
import json as _json
from instantdb_notebook.magics import magic_of as _magic_of
_magic = _magic_of(get_ipython())
_tokens = [c.spec.admin_token for c in (_magic.connections.all() if _magic else [])]
_tokens += [v.admin_token for v in list(globals().values())
            if type(v).__name__ == "LocalServer" and v.running]
print("TOKENS" + _json.dumps([t for t in _tokens if t]))
"""


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def runnable_notebooks() -> list[object]:
    return [pytest.param(path, id=path.stem) for path in notebook_paths()]


def test_there_are_three_notebooks() -> None:
    assert [p.name for p in notebook_paths()] == [
        "01_quickstart.ipynb",
        "02_live_dashboard.ipynb",
        "03_streams.ipynb",
    ]


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs: {cell.source[:40]!r}"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", runnable_notebooks())
def test_runs_end_to_end_and_shows_no_token(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI"):
        monkeypatch.delenv(name, raising=False)  # the notebooks need no credentials
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
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on any untagged failing cell

    tokens: set[str] = set()
    for cell in probed.cells:
        if cell.metadata.get("probe"):
            text = "".join(o.get("text", "") for o in cell.outputs)
            tokens.update(json.loads(text.split("TOKENS", 1)[1]))
    assert tokens, "the probe found no token: the notebook never connected"
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
    for token in tokens:
        assert token not in shown
