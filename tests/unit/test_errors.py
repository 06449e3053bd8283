"""How failures become errors: API answers, odd bodies, and the network."""

from __future__ import annotations

import json
import pickle
from typing import Any

import httpx
import pytest

from instantdb import (
    InstantAPIError,
    InstantConnectionError,
    InstantError,
    InstantNetworkError,
    InstantPermissionError,
    InstantQueryTimeoutError,
    InstantRateLimitError,
    InstantServerError,
    InstantTimeoutError,
    InstantValidationError,
)
from instantdb._protocol._call import Response
from instantdb._protocol._responses import api_error
from tests.unit.mock_api import ADMIN_TOKEN, ClientHarness


def error_body(kind: str | None, message: str = "server says no", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "hint": {"k": 1}, "trace-id": "trace-1", **extra}


def response(status: int, content: bytes | str | dict[str, Any] = b"", **headers: str) -> Response:
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    return Response(status=status, headers=headers, content=content)


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (400, "validation-failed", InstantValidationError),
        (400, "param-missing", InstantValidationError),
        (400, "param-malformed", InstantValidationError),
        (400, "permission-denied", InstantPermissionError),
        (400, "permission-evaluation-failed", InstantPermissionError),
        (400, "record-not-found", InstantAPIError),
        (404, None, InstantAPIError),
        (429, "rate-limited", InstantRateLimitError),
        (429, "timeout", InstantQueryTimeoutError),
        (500, "unknown", InstantServerError),
        (502, None, InstantServerError),
        (503, "operation-timed-out", InstantServerError),
    ],
)
def test_error_class_follows_status_and_type(
    status: int, kind: str | None, expected: type[InstantAPIError]
) -> None:
    error = api_error(response(status, error_body(kind)))
    assert type(error) is expected
    assert isinstance(error, InstantAPIError)
    assert isinstance(error, InstantError)
    assert error.status == status
    assert str(error) == "server says no"
    assert error.type == kind
    assert error.hint == {"k": 1}
    assert error.trace_id == "trace-1"
    assert error.body == error_body(kind)


def test_trace_id_prefers_the_camel_case_key() -> None:
    error = api_error(response(400, error_body("x", traceId="camel")))
    assert error.trace_id == "camel"


def test_json_body_without_message_uses_the_raw_text() -> None:
    raw = '{"type":"validation-failed","hint":null}'
    error = api_error(response(400, raw))
    assert str(error) == raw
    assert error.body == {"type": "validation-failed", "hint": None}
    assert error.hint is None


def test_non_json_body() -> None:
    error = api_error(response(502, "Bad Gateway: upstream unavailable"))
    assert type(error) is InstantServerError
    assert str(error) == "Bad Gateway: upstream unavailable"
    assert error.body == {"type": None, "message": "Bad Gateway: upstream unavailable"}
    assert (error.type, error.hint, error.trace_id) == (None, None, None)


@pytest.mark.parametrize("content", [b"", b"  \n"])
def test_empty_body_falls_back_to_the_status(content: bytes) -> None:
    error = api_error(response(503, content))
    assert str(error) == "API Error (503)"
    assert error.status == 503


def test_json_that_is_not_an_object() -> None:
    error = api_error(response(400, "[1, 2]"))
    assert error.body == [1, 2]
    assert str(error) == "[1, 2]"
    assert (error.type, error.hint, error.trace_id) == (None, None, None)


def test_redirects_say_how_to_fix_the_base_url() -> None:
    error = api_error(response(301, b"", location="https://api.instantdb.com/admin/query"))
    assert str(error).startswith(
        "API Error (301): the server redirected to https://api.instantdb.com"
    )
    assert "set api_uri" in str(error)


@pytest.mark.parametrize(
    ("hint", "header", "expected"),
    [
        ({"retry-after": 3}, None, 3.0),
        ({"retry-after": 3}, "10", 3.0),  # the server's own hint wins
        (None, "7", 7.0),
        ({"retry-at": "later"}, "2.5", 2.5),
        (None, "Wed, 21 Oct 2015 07:28:00 GMT", None),  # HTTP dates are not read
        ({"retry-after": "soon"}, None, None),
        ({"retry-after": -4}, None, 0.0),
        ({"retry-after": True}, None, None),
        (None, None, None),
    ],
)
def test_rate_limit_wait(hint: Any, header: str | None, expected: float | None) -> None:
    headers = {"retry-after": header} if header is not None else {}
    error = api_error(response(429, error_body("rate-limited", hint=hint), **headers))
    assert isinstance(error, InstantRateLimitError)
    assert error.retry_after == expected


@pytest.mark.parametrize(
    "error",
    [
        InstantAPIError("m", status=400, body={"type": "x"}),
        InstantRateLimitError("m", status=429, body=None, retry_after=1.5),
        InstantConnectionError("m", may_have_been_sent=False),
        InstantTimeoutError("m"),
    ],
)
def test_errors_pickle(error: InstantError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_repr_of_api_errors_omits_the_body() -> None:
    error = InstantAPIError("nope", status=400, body={"type": "x", "hint": {"secret-ish": 1}})
    assert repr(error) == "InstantAPIError('nope', status=400, type='x')"


# --- through the clients ---------------------------------------------------------------


def test_api_errors_reach_the_caller(harness: ClientHarness) -> None:
    harness.api.queue(
        httpx.Response(400, json=error_body("validation-failed", "Validation failed for steps"))
    )
    db = harness.make()
    with pytest.raises(InstantValidationError, match="Validation failed for steps") as caught:
        harness.call(db, "transact", db.tx.goals["g"].update({"title": 42}))
    assert caught.value.status == 400
    assert caught.value.hint == {"k": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "answered 200 with an empty body"),
        (b"<html>", "body that is not JSON"),
        (b"[1]", "not an object"),
    ],
)
def test_a_success_without_a_json_object_is_an_error(
    harness: ClientHarness, content: bytes, message: str
) -> None:
    harness.api.queue(httpx.Response(200, content=content))
    with pytest.raises(InstantAPIError, match=message) as caught:
        harness.call(harness.make(), "query", {"goals": {}})
    assert caught.value.status == 200


def test_other_2xx_statuses_are_successes(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(201, json={"tx-id": 3}))
    db = harness.make()
    assert harness.call(db, "transact", db.tx.goals["g"].delete()) == {"tx-id": 3}


@pytest.mark.parametrize(
    ("exception", "expected", "sent", "message"),
    [
        (httpx.ConnectError("refused"), InstantConnectionError, False, "could not connect to"),
        (httpx.ConnectTimeout("slow"), InstantTimeoutError, False, "timed out connecting"),
        (httpx.PoolTimeout("busy"), InstantTimeoutError, False, "free connection in the pool"),
        (httpx.ReadTimeout("slow"), InstantTimeoutError, True, "did not answer in time"),
        (httpx.WriteTimeout("slow"), InstantTimeoutError, True, "did not answer in time"),
        (httpx.ReadError("reset"), InstantConnectionError, True, "ReadError: reset"),
        (
            httpx.RemoteProtocolError("gone"),
            InstantConnectionError,
            True,
            "may have been processed",
        ),
    ],
)
def test_network_failures_are_wrapped_and_chained(
    harness: ClientHarness,
    exception: httpx.HTTPError,
    expected: type[InstantNetworkError],
    sent: bool,
    message: str,
) -> None:
    harness.api.queue(exception)
    db = harness.make(retry=False)
    with pytest.raises(expected, match=message) as caught:
        harness.call(db, "query", {"goals": {}})
    error = caught.value
    assert error.__cause__ is exception
    assert error.may_have_been_sent is sent
    assert str(error).startswith("POST /admin/query: ")
    assert isinstance(error, OSError)  # so `except OSError` network handling keeps working
    assert ADMIN_TOKEN not in str(error)
