"""Presence: ``GET /admin/rooms/presence`` (live-protocol section 4.4) and the
LOCAL-ONLY ``/local/rooms/presence`` that sets a peer's presence directly, so tests and
demos can have a room without a realtime client. The real server has no such route.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from instantdb_local import errors
from instantdb_local.errors import ServerError
from instantdb_local.live import hub_of

from ._plumbing import (
    Call,
    canonical_uuid,
    error_response,
    instance_of,
    is_uuid,
    parse_json_body,
    read_body,
    unexpected_error_response,
)


def _required(value: Any, path: list[str]) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise errors.param_missing(path)
    if not isinstance(value, str):
        raise errors.param_malformed(path, value)
    return value


def _expand_users(call: Call, app_id: str, sessions: dict[str, Any]) -> dict[str, Any]:
    # Presence holds {"id": ...}; the route answers the user's full record, and null
    # for a user that no longer exists.
    engine = call.engine(app_id)
    for entry in sessions.values():
        user = entry.get("user")
        if user is not None:
            entry["user"] = engine.find_user(id=str(user["id"]))
    return sessions


async def get_presence(request: Request) -> Response:
    try:
        call = Call(request=request, instance=instance_of(request), body=None)
        # Admin token only: the impersonation headers are ignored here.
        app_id = await run_in_threadpool(call.admin_app_id)
        room_type = request.query_params.get("room-type")
        _required(room_type, ["params", "room-type"])
        room_id = _required(request.query_params.get("room-id"), ["params", "room-id"])
        sessions = hub_of(request.app).rooms.sessions(app_id, room_id)
        if sessions is not None:
            sessions = await run_in_threadpool(_expand_users, call, app_id, sessions)
    except ServerError as error:
        return error_response(error)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    return JSONResponse({"sessions": sessions})


async def set_local_presence(request: Request) -> Response:
    """LOCAL ONLY. ``{"room-id", "data", "peer-id"?, "user-id"?}`` puts a peer in a room."""
    try:
        call = Call(
            request=request,
            instance=instance_of(request),
            body=parse_json_body(await read_body(request)),
        )
        app_id = await run_in_threadpool(call.admin_app_id)
        body = call.body_map
        room_id = _required(body.get("room-id"), ["body", "room-id"])
        data = body.get("data", {})
        if not isinstance(data, dict):
            raise errors.param_malformed(["body", "data"], data)
        peer_id = body.get("peer-id") or str(uuid.uuid4())
        if not isinstance(peer_id, str):
            raise errors.param_malformed(["body", "peer-id"], peer_id)
        user_id = body.get("user-id")
        if user_id is not None:
            if not is_uuid(user_id):
                raise errors.param_malformed(["body", "user-id"], user_id)
            user_id = canonical_uuid(user_id)
        hub_of(request.app).rooms.set_local(app_id, room_id, peer_id, data, user_id)
    except ServerError as error:
        return error_response(error)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    return JSONResponse({"peer-id": peer_id})


async def remove_local_presence(request: Request) -> Response:
    """LOCAL ONLY. ``?room-id=&peer-id=`` removes a peer the POST put there."""
    try:
        call = Call(request=request, instance=instance_of(request), body=None)
        app_id = await run_in_threadpool(call.admin_app_id)
        room_id = _required(request.query_params.get("room-id"), ["params", "room-id"])
        peer_id = _required(request.query_params.get("peer-id"), ["params", "peer-id"])
        removed = hub_of(request.app).rooms.remove_local(app_id, room_id, peer_id)
    except ServerError as error:
        return error_response(error)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    return JSONResponse({"removed": removed})


ROUTES: list[BaseRoute] = [
    Route("/admin/rooms/presence", get_presence, methods=["GET"]),
    Route("/local/rooms/presence", set_local_presence, methods=["POST"]),
    Route("/local/rooms/presence", remove_local_presence, methods=["DELETE"]),
]
