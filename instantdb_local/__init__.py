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
        try:
            from instantdb_local import server
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "instantdb_local":
                raise
            from instantdb_local.errors import MissingExtraError

            raise MissingExtraError(f"instantdb_local.{name}", exc.name) from exc
        return getattr(server, name)
    raise AttributeError(f"module 'instantdb_local' has no attribute {name!r}")
