"""Notebook tools for InstantDB: DataFrames, `%instant` magics and live widgets.

- `to_dataframe`, `to_dataframes`, `to_arrow`: query results as pandas / Arrow.
- ``%load_ext instantdb_notebook``: the ``%instant`` / ``%%instant`` magics.
- `live_query`, `read_stream`: live handles that update widgets in place, run on a
  private event loop in a background thread (`get_portal`), so they keep updating while
  a cell blocks.

Importing this package is cheap: pandas, pyarrow, IPython and ipywidgets are imported
only by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import ErrorPayloadError, FrameError, NamespaceError, SchemaMismatchWarning
from .frames import FrameInfo, to_arrow, to_dataframe, to_dataframes
from .live import (
    LiveEndedError,
    LiveQuery,
    LiveState,
    LiveStream,
    StreamState,
    live_query,
    read_stream,
    submit_async,
)
from .portal import Portal, PortalClosedError, PortalFuture, get_portal

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .magics import InstantMagic, InstantMagicError
    from .widgets import LiveQueryWidget, StreamWidget

__all__ = [
    "ErrorPayloadError",
    "FrameError",
    "FrameInfo",
    "InstantMagic",
    "InstantMagicError",
    "LiveEndedError",
    "LiveQuery",
    "LiveQueryWidget",
    "LiveState",
    "LiveStream",
    "NamespaceError",
    "Portal",
    "PortalClosedError",
    "PortalFuture",
    "SchemaMismatchWarning",
    "StreamState",
    "StreamWidget",
    "get_portal",
    "live_query",
    "load_ipython_extension",
    "read_stream",
    "submit_async",
    "to_arrow",
    "to_dataframe",
    "to_dataframes",
    "unload_ipython_extension",
]

# These need IPython or ipywidgets, so they are imported on first access.
_LAZY = {
    "InstantMagic": "magics",
    "InstantMagicError": "magics",
    "LiveQueryWidget": "widgets",
    "StreamWidget": "widgets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'instantdb_notebook' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"instantdb_notebook.{module}"), name)


def load_ipython_extension(shell: InteractiveShell) -> None:
    """``%load_ext instantdb_notebook``: register ``%instant`` / ``%%instant``."""
    from .magics import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """``%unload_ext instantdb_notebook``: close its connections and local servers."""
    from .magics import unload_ipython_extension as unload

    unload(shell)
