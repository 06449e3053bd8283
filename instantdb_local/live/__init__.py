"""The local server's live side: SSE sessions, live queries, streams and presence.

The routes in `instantdb_local.routes.live` and `instantdb_local.routes.rooms` reach it
through `hub_of(app)`, which creates the app's `LiveHub` on first use, on the server's
event loop. `configure(app, LiveSettings(...))` sets its behaviour beforehand (tests
use a short keepalive), and `close_connections(app)` ends every open stream at once,
from any thread, so a stopping server does not wait for clients to hang up.
"""

from __future__ import annotations

import contextlib
import functools

from starlette.applications import Starlette

from ._hub import LiveHub, LiveSettings
from ._session import Session
from ._sse import CONTENT_TYPE, KEEPALIVE, RETRY, encode_event
from ._stream_store import PART_LIMIT
from ._streams import FILES_ROUTE
from ._wire import isn

__all__ = [
    "CONTENT_TYPE",
    "FILES_ROUTE",
    "KEEPALIVE",
    "PART_LIMIT",
    "RETRY",
    "LiveHub",
    "LiveSettings",
    "Session",
    "close_connections",
    "configure",
    "encode_event",
    "hub_of",
    "isn",
]

_HUB = "live_hub"
_SETTINGS = "live_settings"


def configure(app: Starlette, settings: LiveSettings) -> None:
    """Set the live side's settings for ``app``; call before the server serves it."""
    if getattr(app.state, _HUB, None) is not None:
        raise RuntimeError("The live side of this app is already running; configure it first.")
    setattr(app.state, _SETTINGS, settings)


def hub_of(app: Starlette) -> LiveHub:
    """The app's hub, created on first use. Call on the server's event loop."""
    hub: LiveHub | None = getattr(app.state, _HUB, None)
    if hub is None:
        hub = LiveHub(app.state.instance, getattr(app.state, _SETTINGS, None))
        setattr(app.state, _HUB, hub)
    return hub


def close_connections(app: Starlette, *, final: bool = False) -> None:
    """End every open live connection of ``app`` (thread-safe; a no-op before first use).

    Clients see their stream end and reconnect; useful right before stopping a server.
    ``final`` (the server is stopping) also answers new sessions 503 from then on, so a
    client that reconnects at once cannot hold up the shutdown.
    """
    hub: LiveHub | None = getattr(app.state, _HUB, None)
    if hub is None:
        return
    with contextlib.suppress(RuntimeError):  # the loop already stopped: nothing is open
        hub.loop.call_soon_threadsafe(functools.partial(hub.close, final=final))
