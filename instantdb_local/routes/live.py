"""The live routes: ``/admin/subscribe-query``, ``/admin/sse``, ``/admin/sse/push`` and
the stream files their readers fetch (live-protocol sections 1 and 2).

Everything that can be refused is checked before a stream opens (app id, admin token
or impersonation, the query), and refused with the ordinary JSON error; from then on
failures arrive as ``error`` events on the stream. The sessions themselves live in
`instantdb_local.live`.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from instantdb_local import errors
from instantdb_local.engine import Actor
from instantdb_local.errors import ServerError
from instantdb_local.live import FILES_ROUTE, hub_of

from ._plumbing import (
    Call,
    canonical_uuid,
    error_response,
    instance_of,
    is_uuid,
    parse_json_body,
    read_body,
    truthy,
    unexpected_error_response,
)


async def _call(request: Request) -> Call:
    body = parse_json_body(await read_body(request))
    return Call(request=request, instance=instance_of(request), body=body)


def _subscriber(call: Call) -> tuple[str, Actor, dict[str, Any]]:
    app_id, actor = call.actor()
    query = call.body_map_param("query")
    assert query is not None
    return app_id, actor, query


async def subscribe_query(request: Request) -> Response:
    try:
        call = await _call(request)
        app_id, actor, query = await run_in_threadpool(_subscriber, call)
        hub = hub_of(request.app)
        session, response = hub.open_session(
            app_id,
            actor,
            inference=truthy(call.body_map.get("inference?")),
            base_url=str(request.base_url),
        )
    except ServerError as error:
        return error_response(error)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    hub.subscribe_query(session, query)
    return response


async def sse(request: Request) -> Response:
    try:
        call = await _call(request)
        app_id, actor = await run_in_threadpool(call.actor)
        _, response = hub_of(request.app).open_session(
            app_id,
            actor,
            inference=truthy(call.body_map.get("inference?")),
            base_url=str(request.base_url),
        )
    except ServerError as error:
        return error_response(error)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    return response


def _push_app_id(request: Request) -> str:
    # The push route reads the app id from the query string only (JS sends no headers).
    value = request.query_params.get("app_id")
    if value is None:
        raise errors.param_missing(["query-params", "app_id"])
    if not is_uuid(value.strip()):
        raise errors.param_malformed(["query-params", "app_id"], value)
    return canonical_uuid(value.strip())


async def push(request: Request) -> Response:
    try:
        app_id = _push_app_id(request)
        call = await _call(request)
        fields = {}
        for name in ("machine_id", "session_id", "sse_token", "messages"):
            fields[name] = call.body_param(name)
        messages = fields["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise errors.param_malformed(["body", "messages"], "a list of message objects")
        session_id = fields["session_id"]
        token = fields["sse_token"]
        hub = hub_of(request.app)
        # The token is the push's only credential: never echoed, compared as a hash.
        session = hub.find_session(str(session_id), str(token), app_id)
        hub.push(session, messages)
    except ServerError as error:
        return error_response(error)
    except ClientDisconnect:
        # Cut off mid-body: nothing was queued, and nobody is left to answer.
        return Response(status_code=400)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    return JSONResponse({})


async def stream_file(request: Request) -> Response:
    """A stream part, for whoever holds its URL (the URL is the credential)."""
    params = request.path_params
    try:
        index = int(params["index"])
    except ValueError:
        index = -1
    data = None
    if index >= 0:
        hub = hub_of(request.app)
        try:
            data = await run_in_threadpool(
                hub.streams.read_file, params["app_id"], params["key"], params["stream_id"], index
            )
        except Exception as exc:
            return unexpected_error_response(request, exc)
    if data is None:
        return error_response(
            ServerError("record-not-found", "No stream file at this URL.", status=404)
        )
    return Response(data, media_type="application/octet-stream")


ROUTES: list[BaseRoute] = [
    Route("/admin/subscribe-query", subscribe_query, methods=["POST"]),
    Route("/admin/sse", sse, methods=["POST"]),
    Route("/admin/sse/push", push, methods=["POST"]),
    Route(FILES_ROUTE + "/{app_id}/{key}/{stream_id}/{index}", stream_file, methods=["GET"]),
]
