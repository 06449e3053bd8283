"""A local, Instant-compatible server on SQLite, for notebooks, examples and tests.

``from instantdb_local import LocalServer`` is all most callers need. The server's
dependencies (Starlette, uvicorn) are imported on first use of `LocalServer`, so
importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instantdb_local.server import AppCredentials, LocalServer

__all__ = ["AppCredentials", "LocalServer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from instantdb_local import server

        return getattr(server, name)
    raise AttributeError(f"module 'instantdb_local' has no attribute {name!r}")
