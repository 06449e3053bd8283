"""The local server's routes, one module per family.

To add a family (rooms, subscriptions, streams, webhooks): write a module with a
``ROUTES`` list built with `json_route` (or plain Starlette routes for streaming
responses), add it to `all_routes` below, and delete its entries from
`unsupported.PENDING`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from instantdb_local.auth import MagicCodeLimiter, MagicCodePolicy

from . import admin, auth, ephemeral, health, storage, unsupported, webhooks
from ._plumbing import DEFAULT_MAX_BODY_BYTES, Call, json_route
from .storage import DEFAULT_MAX_UPLOAD_BYTES

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "Call",
    "all_routes",
    "configure",
    "json_route",
]


def all_routes() -> list[BaseRoute]:
    # Implemented routes first: the first match wins, so a pending entry left behind
    # can never shadow a real route.
    return [
        *admin.ROUTES,
        *auth.ROUTES,
        *storage.ROUTES,
        *ephemeral.ROUTES,
        *health.ROUTES,
        *webhooks.ROUTES,
        *unsupported.ROUTES,
    ]


def configure(
    app: Starlette,
    *,
    max_upload_bytes: int | None = None,
    magic_codes: MagicCodePolicy | None = None,
) -> None:
    """Set the route families' limits on an app `create_app` made.

    ``max_upload_bytes`` caps ``PUT /admin/storage/upload`` (default 5 GiB; the JSON
    body limit does not apply to uploads). ``magic_codes`` sets the magic-code rate
    limits and code lifetime (default: the real server's 20 sends and 20 verify
    attempts per email and hour, codes valid 24 h); setting it resets the buckets.
    """
    if max_upload_bytes is not None:
        if isinstance(max_upload_bytes, bool) or max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be a positive int, got {max_upload_bytes!r}")
        app.state.max_upload_bytes = max_upload_bytes
    if magic_codes is not None:
        app.state.magic_code_limiter = MagicCodeLimiter(magic_codes)
