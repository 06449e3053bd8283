"""subscribe_query through both clients, with SSE bodies streamed by httpx.MockTransport."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from instantdb import InstantError, InstantTypeError, InstantValidationError
from tests.unit.live_fakes import ScriptedBody, event, sse_response
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, ClientHarness

INIT = {"op": "sse-init", "machine-id": "m1", "session-id": "s1", "sse-token": "tok-secret-1"}


def ok(title: str) -> dict[str, Any]:
    return {
        "op": "add-query-ok",
        "result": {"goals": [{"id": "g1", "title": title}]},
        "result-meta": {"page-info": {}},
    }


def refresh(title: str) -> dict[str, Any]:
    return {
        "op": "refresh-ok",
        "computations": [
            {"instaql-result": {"goals": [{"id": "g1", "title": title}]}, "result-meta": {}}
        ],
    }


def body(*messages: Any) -> httpx.Response:
    return sse_response(ScriptedBody(b"retry:0\n\n", *(event(m) for m in messages)))


def unauthorized() -> httpx.Response:
    return httpx.Response(
        401, json={"type": "unauthorized", "message": "Bad token", "hint": {"x": 1}}
    )


def collect(harness: ClientHarness, sub: Any, limit: int = 10, *, enter: bool = True) -> list[Any]:
    """Iterate ``sub`` (inside its context manager if ``enter``) up to ``limit`` payloads."""
    if harness.loop is None:
        out = []
        if enter:
            with sub:
                for payload in sub:
                    out.append(payload)
                    if len(out) == limit:
                        break
        else:
            for payload in sub:
                out.append(payload)
                if len(out) == limit:
                    break
        return out

    async def run() -> list[Any]:
        out = []
        if enter:
            async with sub:
                async for payload in sub:
                    out.append(payload)
                    if len(out) == limit:
                        break
        else:
            async for payload in sub:
                out.append(payload)
                if len(out) == limit:
                    break
        return out

    return harness.loop.run_until_complete(asyncio_wait(run()))


async def asyncio_wait(coro: Any) -> Any:
    import asyncio

    return await asyncio.wait_for(coro, 20)


def test_request_shape(harness: ClientHarness) -> None:
    harness.api.queue(body(INIT, ok("a")))
    db = harness.make()
    [payload] = collect(harness, db.subscribe_query({"goals": {}}, rule_params={"k": "v"}), 1)
    request = harness.api.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/admin/subscribe-query"
    assert list(request.url.params) == ["local_connection_id"]
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["cache-control"] == "no-store"
    assert request.headers["app-id"] == APP_ID
    assert request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
    sent = json.loads(request.content)
    assert sent["query"] == {"$$ruleParams": {"k": "v"}, "goals": {}}
    assert sent["inference?"] is False
    assert set(sent["versions"]) == {"@instantdb/admin", "@instantdb/core"}
    assert payload["data"] == {"goals": [{"id": "g1", "title": "a"}]}


def test_initial_result_then_changes_with_session_info(harness: ClientHarness) -> None:
    harness.api.queue(body(INIT, ok("a"), refresh("b")))
    db = harness.make()
    sub = db.subscribe_query({"goals": {}})
    assert sub.ready_state == "connecting"
    assert sub.session_info is None
    first, second = collect(harness, sub, 2)
    assert first == {
        "type": "ok",
        "data": {"goals": [{"id": "g1", "title": "a"}]},
        "page_info": None,
        "session_info": {"machine_id": "m1", "session_id": "s1"},
    }
    assert second["data"]["goals"][0]["title"] == "b"
    assert sub.is_closed
    assert sub.ready_state == "closed"


def test_reconnects_after_the_server_closes_with_the_same_connection_id(
    harness: ClientHarness,
) -> None:
    second_init = {**INIT, "session-id": "s2"}
    harness.api.queue(body(INIT, ok("a")), body(second_init, ok("fresh")))
    db = harness.make()
    sub = db.subscribe_query({"goals": {}})
    first, second = collect(harness, sub, 2)
    assert first["data"]["goals"][0]["title"] == "a"
    assert second["data"]["goals"][0]["title"] == "fresh"
    assert second["session_info"]["session_id"] == "s2"
    first_id, second_id = (r.url.params["local_connection_id"] for r in harness.api.requests)
    assert first_id == second_id
    assert harness.api.requests[0].content == harness.api.requests[1].content


def test_auth_failure_on_first_connect_ends_with_one_error(harness: ClientHarness) -> None:
    harness.api.queue(unauthorized())
    db = harness.make()
    sub = db.subscribe_query({"goals": {}})
    [payload] = collect(harness, sub)
    assert payload["type"] == "error"
    assert payload["error"].status == 401
    assert str(payload["error"]) == "Bad token"
    assert (payload["ready_state"], payload["is_closed"]) == ("closed", True)
    assert len(harness.api.requests) == 1


def test_auth_failure_on_reconnect_ends_instead_of_retrying_forever(
    harness: ClientHarness,
) -> None:
    harness.api.queue(body(INIT, ok("a")), unauthorized())
    db = harness.make()
    payloads = collect(harness, db.subscribe_query({"goals": {}}))
    assert [p["type"] for p in payloads] == ["ok", "error"]
    assert payloads[1]["error"].status == 401
    assert len(harness.api.requests) == 2


def test_invalid_query_reported_by_the_server_ends_the_subscription(
    harness: ClientHarness,
) -> None:
    error = {
        "op": "error",
        "status": 400,
        "type": "validation-failed",
        "message": "bad",
        "original-event": {"op": "add-query"},
    }
    harness.api.queue(body(INIT, error))
    db = harness.make()
    [payload] = collect(harness, db.subscribe_query({"goals": {}}))
    assert isinstance(payload["error"], InstantValidationError)
    assert len(harness.api.requests) == 1


def test_an_answer_that_is_not_an_event_stream_is_a_clear_error(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"hello": "world"}))
    db = harness.make()
    [payload] = collect(harness, db.subscribe_query({"goals": {}}))
    assert "instead of an event stream" in str(payload["error"])
    assert "api_uri" in str(payload["error"])


def test_iterating_without_the_context_manager_starts_and_closes(harness: ClientHarness) -> None:
    harness.api.queue(body(INIT, ok("a")), unauthorized())
    db = harness.make()
    sub = db.subscribe_query({"goals": {}})
    payloads = collect(harness, sub, enter=False)
    assert [p["type"] for p in payloads] == ["ok", "error"]
    assert sub.is_closed


def test_close_is_idempotent_and_ends_iteration(harness: ClientHarness) -> None:
    harness.api.queue(body(INIT, ok("a"), refresh("b")))
    db = harness.make()
    sub = db.subscribe_query({"goals": {}})
    assert collect(harness, sub, 1)[0]["type"] == "ok"  # leaves the block: closed
    for _ in range(2):
        if harness.loop is None:
            sub.close()
        else:
            harness.loop.run_until_complete(sub.aclose())
    assert collect(harness, sub, enter=False) == []
    assert len(harness.api.requests) == 1


def test_bad_query_fails_before_any_request(harness: ClientHarness) -> None:
    db = harness.make()
    with pytest.raises(InstantTypeError):
        db.subscribe_query({"goals": "all"})
    token_less = harness.make(admin_token="")
    with pytest.raises(InstantError, match="admin token"):
        token_less.subscribe_query({"goals": {}})
    assert harness.api.requests == []


def test_verbose_logs_messages_without_tokens(
    harness: ClientHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.api.queue(body(INIT, ok("a")), unauthorized())
    db = harness.make(verbose=True)
    clone = db.as_user(token="refresh-secret-9")
    with caplog.at_level(logging.DEBUG, logger="instantdb"):
        collect(harness, clone.subscribe_query({"goals": {}}))
    text = caplog.text
    assert "[sse][open]" in text
    assert "[receive]" in text
    assert "add-query-ok" in text
    assert "[error]" in text
    for secret in (ADMIN_TOKEN, "tok-secret-1", "refresh-secret-9"):
        assert secret not in text


def test_quiet_by_default(harness: ClientHarness, caplog: pytest.LogCaptureFixture) -> None:
    harness.api.queue(body(INIT, ok("a")))
    db = harness.make()
    with caplog.at_level(logging.DEBUG, logger="instantdb"):
        collect(harness, db.subscribe_query({"goals": {}}), 1)
    assert "[receive]" not in caplog.text


def test_custom_logger_receives_lines(harness: ClientHarness) -> None:
    lines: list[str] = []

    class Sink:
        def debug(self, msg: str) -> None:
            lines.append(msg)

        info = error = debug

    harness.api.queue(body(INIT, ok("a")))
    db = harness.make(verbose=True, logger=Sink())
    collect(harness, db.subscribe_query({"goals": {}}), 1)
    assert any(line.startswith("[receive]") for line in lines)
    with pytest.raises(InstantTypeError, match="logger"):
        harness.make(logger=object())
