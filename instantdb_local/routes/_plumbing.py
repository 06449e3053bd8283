"""What every route shares: reading the request, who is asking, and error responses.

A route is a plain synchronous function ``handler(call) -> JSON`` wrapped by
`json_route`. The wrapper reads the body on the event loop, then runs the handler in a
worker thread, because engine calls block on SQLite and must not stall the loop. Every
`ServerError` becomes the real server's ``{"type", "message", "hint"}`` body; anything
else is logged and answered as a 500 ``unknown`` without a traceback.

The order of checks follows the real server (server-semantics section 0): app id (header,
then query parameter), admin token, then the impersonation headers.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from instantdb_local import errors
from instantdb_local.engine import Actor, AppEngine
from instantdb_local.errors import ServerError
from instantdb_local.instance import Instance

logger = logging.getLogger("instantdb_local")

# Large enough for any admin JSON body a client sends in practice; a bigger body is
# refused with a clear 413 instead of being buffered without bound.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

# Every JSON body is parsed, validated and answered by recursive code, and Python's
# recursion limit (1000 frames) would turn a deep enough body into a 500. Real data is
# rarely more than a few dozen levels deep; at this depth every route still has
# hundreds of frames to spare.
MAX_JSON_DEPTH = 128

# Secrets that arrive malformed are still secrets: hints never echo them.
REDACTED = "<redacted>"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

JSONValue = Any
Handler = Callable[["Call"], "JSONValue | Response"]


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    # uuid.UUID also accepts braces, urn: prefixes and missing dashes; the server does not.
    return len(value) == 36


def canonical_uuid(value: str) -> str:
    return str(uuid.UUID(value))


def truthy(value: object) -> bool:
    """Clojure truthiness, which the real server applies to its boolean options."""
    return value is not None and value is not False


def coerce_email(value: object, path: Sequence[str]) -> str:
    """A trimmed, lowercased email, or the server's param-malformed error."""
    if isinstance(value, str):
        email = value.strip().lower()
        if _EMAIL.match(email):
            return email
    raise errors.param_malformed(path, value)


@dataclass(frozen=True)
class Call:
    """One request, read in full, with the plumbing checks every route shares."""

    request: Request
    instance: Instance
    body: JSONValue

    # -- parameters ---------------------------------------------------------------------

    @property
    def body_map(self) -> Mapping[str, Any]:
        # A body that is not a JSON object has no named parameters: the real server then
        # reports the first required one as missing.
        return self.body if isinstance(self.body, dict) else {}

    def body_param(self, name: str, *, required: bool = True) -> Any:
        value = self.body_map.get(name)
        if value is None and required:
            raise errors.param_missing(["body", name])
        return value

    def body_map_param(self, name: str, *, required: bool = True) -> dict[str, Any] | None:
        value = self.body_param(name, required=required)
        if value is not None and not isinstance(value, dict):
            raise errors.param_malformed(["body", name], value)
        return value

    def query_param(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    # -- app id, admin token, impersonation -----------------------------------------------

    def app_id(self) -> str:
        """The app id from the ``app-id`` header, else the ``app_id`` query parameter."""
        header = self.request.headers.get("app-id")
        if header is not None:
            value, path = header.strip(), ["headers", "app-id"]
        else:
            query = self.request.query_params.get("app_id")
            if query is None:
                raise errors.param_missing(
                    ["headers", "app-id"], possible_ins=[["query-params", "app_id"]]
                )
            value, path = query.strip(), ["query-params", "app_id"]
        if not is_uuid(value):
            raise errors.param_malformed(path, value)
        return canonical_uuid(value)

    def admin_token(self) -> str:
        header = self.request.headers.get("authorization")
        if header is None:
            raise errors.param_missing(["headers", "authorization"])
        token = header.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not is_uuid(token):
            raise errors.param_malformed(["headers", "authorization"], REDACTED)
        return canonical_uuid(token)

    def admin_app_id(self) -> str:
        """The app id, after checking the admin token belongs to it."""
        app_id = self.app_id()
        self.instance.check_admin_token(app_id, self.admin_token())
        return app_id

    def actor(self) -> tuple[str, Actor]:
        """App id and who is asking, for routes that accept admin or impersonation."""
        app_id = self.app_id()
        impersonated = self._impersonation(app_id, admin_checked=False)
        if impersonated is not None:
            return app_id, impersonated
        self.instance.check_admin_token(app_id, self.admin_token())
        return app_id, Actor.admin()

    def impersonated_actor(self) -> tuple[str, Actor]:
        """For the perms-check routes: a valid admin token AND an impersonation header."""
        app_id = self.admin_app_id()
        impersonated = self._impersonation(app_id, admin_checked=True)
        if impersonated is None:
            raise errors.validation_failed(
                "non-admin",
                None,
                [{"message": "Cannot test perms as admin"}],
            )
        return app_id, impersonated

    def _impersonation(self, app_id: str, *, admin_checked: bool) -> Actor | None:
        headers = self.request.headers
        # The first header present wins: as-token, then as-email, then as-guest.
        if "as-token" in headers:
            token = headers["as-token"].strip()
            if not is_uuid(token):
                raise errors.param_malformed(["asUser", "token"], REDACTED)
            user = self._find_user(app_id, refresh_token=canonical_uuid(token))
            if user is None:
                raise errors.record_not_found("app-user", args=[{"app-id": app_id}])
            return self._as(user)
        if "as-email" in headers:
            if not admin_checked:
                self.instance.check_admin_token(app_id, self.admin_token())
            email = headers["as-email"].strip()
            user = self._find_user(app_id, email=email)
            if user is None:
                raise errors.record_not_found("app-user", args=[{"app-id": app_id, "email": email}])
            return self._as(user)
        if headers.get("as-guest"):
            return self._as(None)
        return None

    def _find_user(self, app_id: str, **lookup: str) -> dict[str, Any] | None:
        if self.instance.find_app(app_id) is None:
            return None
        return self.instance.engine(app_id).find_user(**lookup)

    def _as(self, user: Mapping[str, Any] | None) -> Actor:
        return Actor(is_admin=False, user=user, request=self.request_info())

    def request_info(self) -> dict[str, Any]:
        """What CEL rules see as ``request.ip`` / ``request.origin``; the debug routes may
        override both."""
        body = self.body_map
        client = self.request.client
        ip = body.get("ip-override") or (client.host if client else None)
        origin = body.get("origin-override") or self.request.headers.get("origin")
        return {"ip": ip, "origin": origin}

    def engine(self, app_id: str) -> AppEngine:
        return self.instance.engine(app_id)


# -- responses ------------------------------------------------------------------------------


def error_response(error: ServerError) -> Response:
    """The real server's response for an error, plain text and route misses included."""
    if error.type is None:
        if error.status == 404:
            return _error_json({"message": error.message}, error.status)
        message = error.message.encode("utf-8", "backslashreplace")
        return PlainTextResponse(message, status_code=error.status)
    return _error_json(error.body(), error.status)


def _error_json(body: Mapping[str, Any], status: int) -> Response:
    # An error body echoes what the client sent (hint.input), and must encode whatever
    # that holds: failing here would turn a 4xx into a 500 with no answer at all. The
    # strict encoding is tried first so ordinary bodies are sent exactly as they are.
    try:
        return JSONResponse(body, status_code=status)
    except (TypeError, ValueError):  # NaN, infinities, odd types, lone surrogates
        logger.warning("An error body held values JSON cannot carry; they are sent as text")
        text = json.dumps(errors.json_safe(body), separators=(",", ":"), allow_nan=False)
        return Response(text, status_code=status, media_type="application/json")


def unexpected_error_response(request: Request, exc: BaseException) -> Response:
    # Logged with the traceback for the operator; the client gets the generic body.
    # Headers are not logged: they carry the admin token.
    logger.error(
        "Unexpected error on %s %s",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return error_response(errors.unknown())


def instance_of(request: Request) -> Instance:
    return cast(Instance, request.app.state.instance)


async def read_body(request: Request) -> bytes:
    """The whole request body, refusing more than the app's limit without buffering it."""
    limit = cast(int, request.app.state.max_body_bytes)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> float:
    # NaN and Infinity are not JSON; the real server's parser refuses them too.
    raise ValueError(f"{name} is not valid JSON")


class _OutOfRange(Exception):
    """A number literal no double holds. Not a ValueError, so it is not taken for
    malformed JSON: the literal is valid, only too large."""

    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


# The largest finite double; an integer literal beyond it has no double to become.
_MAX_DOUBLE = sys.float_info.max
# Digits of the largest double's integer part: a literal with fewer is always in range.
_MAX_DOUBLE_DIGITS = len(str(int(_MAX_DOUBLE)))


def _finite_float(literal: str) -> float:
    # 1e400 is valid JSON, but float() makes it an infinity, which no store, rule or
    # answer can carry.
    value = float(literal)
    if math.isinf(value):
        raise _OutOfRange(literal)
    return value


def _bounded_int(literal: str) -> int:
    # Integers beyond the doubles' range would overflow wherever they become a number
    # (storage, comparisons). Counting digits first also spares int() the quadratic
    # work on a literal thousands of digits long.
    digits = len(literal) - literal.startswith("-")
    if digits > _MAX_DOUBLE_DIGITS:
        raise _OutOfRange(literal)
    value = int(literal)
    if digits == _MAX_DOUBLE_DIGITS and abs(value) > _MAX_DOUBLE:
        raise _OutOfRange(literal)
    return value


def parse_json_body(raw: bytes) -> JSONValue:
    """The parsed body; None when empty. Malformed JSON raises the server's plain 400,
    JSON nested deeper than `MAX_JSON_DEPTH` and numbers beyond a double's range a 400
    that says so."""
    if not raw.strip():
        return None
    try:
        body = json.loads(
            raw.decode("utf-8"),
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise errors.body_too_deep(MAX_JSON_DEPTH) from None
    except _OutOfRange as problem:
        raise errors.number_out_of_range(problem.literal) from None
    except (UnicodeDecodeError, ValueError):
        raise errors.malformed_json() from None
    if _nested_deeper_than(body, MAX_JSON_DEPTH):
        raise errors.body_too_deep(MAX_JSON_DEPTH)
    if _SURROGATE_ESCAPE.search(raw) and _holds_lone_surrogate(body):
        # "\ud800" is valid JSON syntax but no text: SQLite, the disk and every answer
        # would fail to encode it later (a 500). Pairs decode to one character and pass.
        raise errors.malformed_json()
    return body


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _holds_lone_surrogate(value: JSONValue) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _nested_deeper_than(value: JSONValue, limit: int) -> bool:
    # Iterative, so the check itself cannot hit the recursion limit. `{}` is depth 1.
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                pending.append((child, depth + 1))
    return False


def json_route(
    path: str, handler: Handler, *, methods: Sequence[str], reads_body: bool = True
) -> Route:
    """A route whose handler runs in a worker thread and answers JSON or a typed error."""

    async def endpoint(request: Request) -> Response:
        try:
            body = parse_json_body(await read_body(request)) if reads_body else None
            call = Call(request=request, instance=instance_of(request), body=body)
            result = await run_in_threadpool(handler, call)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)
        except ServerError as error:
            return error_response(error)
        except ClientDisconnect:
            # Nobody is left to answer; not a server fault worth a traceback.
            return Response(status_code=400)
        except Exception as exc:
            return unexpected_error_response(request, exc)

    endpoint.__name__ = handler.__name__
    return Route(path, endpoint, methods=list(methods))
