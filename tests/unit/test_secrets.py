"""The admin token and refresh tokens never show: not in reprs, messages or logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from instantdb import InstantAPIError, InstantConnectionError, RetryPolicy
from instantdb._protocol import admin
from tests.unit.mock_api import ADMIN_TOKEN, REFRESH_TOKEN, ClientHarness

SECRETS = (ADMIN_TOKEN, REFRESH_TOKEN)


def assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_reprs_hide_tokens(harness: ClientHarness) -> None:
    db = harness.make()
    scoped = db.as_user(token=REFRESH_TOKEN)
    call = admin.query_call(scoped._settings, {"goals": {}}, None)
    for shown in (
        db,
        scoped,
        db._settings,
        scoped._settings,
        scoped._settings.impersonation,
        call.request,
        call,
    ):
        assert_hidden(repr(shown))
        assert_hidden(str(shown))
    assert "as_user(token=***)" in repr(scoped)
    # the request does carry them, for the wire
    assert call.request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert call.request.headers["as-token"] == REFRESH_TOKEN


def test_server_echoes_of_a_token_are_scrubbed(harness: ClientHarness) -> None:
    echo = {
        "type": "param-malformed",
        "message": f"Malformed parameter: Bearer {ADMIN_TOKEN} / as-token {REFRESH_TOKEN}",
        "hint": {"original-input": [ADMIN_TOKEN, {"token": REFRESH_TOKEN}]},
    }
    harness.api.queue(httpx.Response(400, json=echo))
    db = harness.make().as_user(token=REFRESH_TOKEN)
    with pytest.raises(InstantAPIError) as caught:
        harness.call(db, "query", {"goals": {}})
    error = caught.value
    for shown in (str(error), repr(error), repr(error.body), repr(error.hint), repr(error.args)):
        assert_hidden(shown)
    assert str(error) == "Malformed parameter: Bearer <redacted> / as-token <redacted>"
    assert error.hint == {"original-input": ["<redacted>", {"token": "<redacted>"}]}


def test_network_error_messages_are_scrubbed(harness: ClientHarness) -> None:
    harness.api.queue(httpx.ConnectError(f"proxy rejected Bearer {ADMIN_TOKEN}"))
    db = harness.make(retry=False)
    with pytest.raises(InstantConnectionError) as caught:
        harness.call(db, "query", {"goals": {}})
    assert_hidden(str(caught.value))
    assert "<redacted>" in str(caught.value)


def test_logs_never_carry_tokens(harness: ClientHarness, caplog: pytest.LogCaptureFixture) -> None:
    harness.api.queue(
        httpx.Response(503, json={"message": "busy"}),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={}),
    )
    no_waiting = RetryPolicy(initial_backoff=0, max_backoff=0)
    db = harness.make(retry=no_waiting).as_user(token=REFRESH_TOKEN)
    with caplog.at_level(logging.DEBUG):
        harness.call(db, "query", {"goals": {}})
    assert len(caplog.records) >= 2  # the two retries were logged (and httpx's own lines)
    for record in caplog.records:
        assert_hidden(record.getMessage())
