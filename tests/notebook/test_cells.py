"""Re-running a cell replaces the live handles its earlier runs made (no kernel needed:
the shell that says which cell is running is faked)."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from instantdb_notebook import LiveQuery, Portal
from instantdb_notebook._cells import current_execution


class FakeShell:
    """Answers get_parent() as ipykernel's shell does, for the request being run."""

    def __init__(self) -> None:
        self.parent: Any = {}

    def get_parent(self) -> Any:
        return self.parent

    def execute(self, msg_id: str, cell_id: str | None) -> None:
        metadata = {"cellId": cell_id} if cell_id is not None else {}
        self.parent = {"header": {"msg_id": msg_id}, "metadata": metadata}


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> FakeShell:
    fake = FakeShell()
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)
    return fake


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal(name="cells-portal") as p:
        yield p


async def forever() -> AsyncIterator[dict[str, Any]]:
    yield {"type": "ok", "data": {"goals": [{"id": "g1"}]}}
    await asyncio.Event().wait()  # until cancelled


def live(portal: Portal) -> LiveQuery:
    handle = LiveQuery(forever, portal=portal)
    handle.wait_for(timeout=10)
    return handle


def test_the_running_cell_is_read_from_the_request_metadata(shell: FakeShell) -> None:
    shell.execute("m1", "cell-a")
    assert current_execution() == ("cell-a", "m1")
    shell.execute("m2", None)
    assert current_execution() is None
    shell.parent = "not a header"
    assert current_execution() is None


def test_no_ipython_means_no_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert current_execution() is None
    assert "IPython" not in sys.modules  # it was not imported to find out


def test_a_new_run_of_a_cell_stops_the_handles_of_its_earlier_run(
    shell: FakeShell, portal: Portal
) -> None:
    shell.execute("run-1", "cell-a")
    first, second = live(portal), live(portal)  # one run may make several
    assert first.status == second.status == "connected"
    shell.execute("run-2", "cell-b")
    elsewhere = live(portal)
    shell.execute("run-3", "cell-a")
    replacement = live(portal)
    assert (first.status, first.running) == ("stopped", False)
    assert (second.status, second.running) == ("stopped", False)
    assert elsewhere.status == replacement.status == "connected"
    for handle in (elsewhere, replacement):
        handle.stop()


def test_without_a_cell_id_nothing_is_replaced(shell: FakeShell, portal: Portal) -> None:
    shell.execute("run-1", None)
    first = live(portal)
    shell.execute("run-2", None)
    second = live(portal)
    assert first.status == second.status == "connected"
    first.stop()
    second.stop()
