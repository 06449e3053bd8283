"""Which notebook cell made a live handle, so that re-running the cell replaces it.

Re-running a cell such as ``board = live_query(db, q)`` rebinds ``board``, but the
previous subscription would go on running on the portal, unreachable, holding its
connection open and redrawing a widget nobody sees. Frontends say which cell an
execution comes from (JupyterLab and Notebook 7 put ``cellId`` in the
``execute_request`` metadata), so a handle made by a new execution of a cell stops the
handles made by earlier executions of that same cell. Handles made by one execution
never stop each other, and without a cell id (a plain script, a frontend that sends
none) nothing is stopped.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CellHandles", "cell_handles", "current_execution"]


def current_execution() -> tuple[str, str] | None:
    """``(cell id, execution id)`` of the cell running now, if a frontend sent one.

    Never imports IPython: if it is not loaded, this is not a kernel.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    get_parent = getattr(shell, "get_parent", None)  # ipykernel's shell only
    if get_parent is None:
        return None
    try:
        parent = get_parent()
    except Exception:  # an unusual kernel: behave as if no cell were known
        return None
    if not isinstance(parent, Mapping):
        return None
    metadata = parent.get("metadata")
    header = parent.get("header")
    cell_id = metadata.get("cellId") if isinstance(metadata, Mapping) else None
    execution = header.get("msg_id") if isinstance(header, Mapping) else None
    if not isinstance(cell_id, str) or not cell_id or not isinstance(execution, str):
        return None
    return cell_id, execution


class CellHandles:
    """The live handles each cell's latest execution made (weakly held)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_cell: dict[str, tuple[str, list[weakref.ref[Any]]]] = {}

    def replace(self, handle: object, stop: Callable[[Any], None]) -> None:
        """Record ``handle`` for the running cell; ``stop`` the earlier executions' ones."""
        where = current_execution()
        if where is None:
            return
        cell_id, execution = where
        with self._lock:
            previous_execution, previous = self._by_cell.get(cell_id, ("", []))
            if previous_execution == execution:
                previous.append(weakref.ref(handle))
                return
            self._by_cell[cell_id] = (execution, [weakref.ref(handle)])
        for reference in previous:
            old = reference()
            if old is not None:
                stop(old)


cell_handles = CellHandles()
