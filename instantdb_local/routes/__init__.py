"""The local server's routes, one module per family.

To add a family (auth, storage, rooms, subscriptions, streams, webhooks): write a module
with a ``ROUTES`` list built with `json_route` (or plain Starlette routes for streaming
responses), add it to `all_routes` below, and delete its entries from
`unsupported.PENDING`.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import admin, ephemeral, health, live, rooms, unsupported, users
from ._plumbing import DEFAULT_MAX_BODY_BYTES, Call, json_route

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Call", "all_routes", "json_route"]


def all_routes() -> list[BaseRoute]:
    # Implemented routes first: the first match wins, so a pending entry left behind
    # can never shadow a real route.
    return [
        *admin.ROUTES,
        *users.ROUTES,
        *ephemeral.ROUTES,
        *health.ROUTES,
        *live.ROUTES,
        *rooms.ROUTES,
        *unsupported.ROUTES,
    ]
