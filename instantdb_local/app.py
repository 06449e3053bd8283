"""The ASGI application: the routes of `instantdb_local.routes` over one `Instance`.

Errors are answered the way the real server answers them: typed ``{"type", "message",
"hint"}`` bodies with the status of their type, the plain-text 400 for malformed JSON,
and the JSON 404 body for a route that does not exist (also for a known path with the
wrong method, as the real router has no 405).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import errors, webhooks
from .errors import ServerError
from .instance import Instance
from .routes import DEFAULT_MAX_BODY_BYTES, all_routes
from .routes._plumbing import error_response, unexpected_error_response

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]


async def _http_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code in (404, 405):
        return error_response(errors.route_not_found())
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(ServerError(None, str(getattr(exc, "detail", "")), status=status))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_error_response(request, exc)


def create_app(instance: Instance, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """An ASGI app serving ``instance``. The caller owns the instance and closes it."""
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    app = Starlette(
        routes=all_routes(),
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
    )
    app.state.instance = instance
    app.state.max_body_bytes = max_body_bytes
    # Webhooks watch transactions and deliver in the background for as long as the
    # instance is open (pending deliveries resume here after a restart).
    webhooks.service_for(instance)
    return app
