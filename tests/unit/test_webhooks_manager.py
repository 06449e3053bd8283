"""db.webhooks.manager on both clients: exact requests, row shapes, checks before I/O."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from instantdb import InstantError, InstantTypeError, InstantValueError
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, REFRESH_TOKEN, ClientHarness
from tests.unit.test_requests import our_headers, standard

HOOK = "d0000000-0000-4000-8000-000000000001"
ROW = {
    "id": HOOK,
    "sink": {"url": "https://example.com/hook"},
    "namespaces": ["goals"],
    "actions": ["create"],
    "status": "active",
    "disabled_reason": None,
    "created_at": "2024-01-01T00:00:00Z",
    "updated_at": "2024-01-02T00:00:00Z",
}
INFO = {
    "id": HOOK,
    "sink": {"url": "https://example.com/hook"},
    "namespaces": ["goals"],
    "actions": ["create"],
    "status": "active",
    "disabledReason": None,
    "createdAt": "2024-01-01T00:00:00Z",
    "updatedAt": "2024-01-02T00:00:00Z",
}
EVENT = {
    "isn": "0/0/2A",
    "status": "error",
    "attempts": [
        {
            "attempt-at": "2024-01-03T00:00:00.5Z",
            "duration-ms": 12,
            "success?": False,
            "status-code": 500,
            "response-text": "boom",
            "error-type": None,
            "error-message": None,
        }
    ],
    "next_attempt_after": "2024-01-03T00:01:00Z",
    "created_at": "2024-01-03T00:00:00Z",
    "updated_at": "2024-01-03T00:00:01Z",
}
EVENT_INFO = {
    "isn": "0/0/2A",
    "status": "error",
    "attempts": [
        {
            "attemptAt": "2024-01-03T00:00:00.5Z",
            "durationMs": 12,
            "success": False,
            "statusCode": 500,
            "responseText": "boom",
            "errorType": None,
            "errorMessage": None,
        }
    ],
    "nextAttemptAfter": "2024-01-03T00:01:00Z",
    "createdAt": "2024-01-03T00:00:00Z",
    "updatedAt": "2024-01-03T00:00:01Z",
}
DASH = f"/dash/apps/{APP_ID}/webhooks"


def sent(harness: ClientHarness) -> tuple[str, str, list[tuple[str, str]], Any]:
    request = harness.api.last
    body = json.loads(request.content) if request.content else None
    return (
        request.method,
        request.url.raw_path.decode(),
        list(request.url.params.multi_items()),
        body,
    )


def manager(harness: ClientHarness, db: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    return harness.call(db.webhooks.manager, method, *args, **kwargs)


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "answer", "expected_request", "result"),
    [
        (
            "list",
            (),
            {},
            {"webhooks": [ROW, {**ROW, "namespaces": None}]},
            ("GET", DASH, [], None),
            [INFO, {**INFO, "namespaces": []}],
        ),
        (
            "create",
            (),
            {"url": "https://example.com/hook", "namespaces": ["goals"], "actions": ["create"]},
            {"webhook": ROW},
            (
                "POST",
                DASH,
                [],
                {"url": "https://example.com/hook", "namespaces": ["goals"], "actions": ["create"]},
            ),
            INFO,
        ),
        (
            "update",
            (HOOK,),
            {"namespaces": ["goals", "todos"]},
            {"webhook": ROW},
            ("POST", f"{DASH}/{HOOK}", [], {"namespaces": ["goals", "todos"]}),
            INFO,
        ),
        ("delete", (HOOK,), {}, {"webhook": ROW}, ("DELETE", f"{DASH}/{HOOK}", [], None), INFO),
        ("enable", (HOOK,), {}, {"webhook": ROW}, ("POST", f"{DASH}/{HOOK}/enable", [], {}), INFO),
        (
            "disable",
            (HOOK,),
            {},
            {"webhook": ROW},
            ("POST", f"{DASH}/{HOOK}/disable", [], {}),
            INFO,
        ),
        (
            "disable",
            (HOOK,),
            {"reason": "pause"},
            {"webhook": ROW},
            ("POST", f"{DASH}/{HOOK}/disable", [], {"reason": "pause"}),
            INFO,
        ),
        (
            "get_event",
            (HOOK,),
            {"isn": "0/328/5307A1A0"},
            {"event": EVENT},
            ("GET", f"{DASH}/{HOOK}/events/0/328/5307A1A0", [], None),
            EVENT_INFO,
        ),
        (
            "get_event",
            (HOOK,),
            {"isn": 42},
            {"event": {**EVENT, "attempts": None}},
            ("GET", f"{DASH}/{HOOK}/events/0/0/2A", [], None),
            {**EVENT_INFO, "attempts": []},
        ),
        (
            "get_event",
            (HOOK,),
            {"isn": 2**40 + 1},
            {"event": EVENT},
            ("GET", f"{DASH}/{HOOK}/events/0/100/1", [], None),
            EVENT_INFO,
        ),
        (
            "resend_event",
            (HOOK,),
            {"isn": 42},
            {"event": EVENT},
            ("POST", f"{DASH}/{HOOK}/events/0/0/2A", [], {}),
            EVENT_INFO,
        ),
    ],
)
def test_manager_requests_and_rows(
    harness: ClientHarness,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    answer: Any,
    expected_request: tuple[Any, ...],
    result: Any,
) -> None:
    db = harness.make()
    harness.api.queue(httpx.Response(200, json=answer))
    assert manager(harness, db, method, *args, **kwargs) == result
    assert sent(harness) == expected_request
    # Admin headers, and no app_id query parameter (the manager's routes take none).
    assert our_headers(harness.api.last) == standard()


def test_list_events_pages_with_a_cursor_that_ends_on_the_last_page(harness: ClientHarness) -> None:
    db = harness.make()
    info = {"startCursor": "c1", "endCursor": "c2", "hasNextPage": True}
    harness.api.queue(
        httpx.Response(200, json={"events": [EVENT], "pageInfo": info}),
        httpx.Response(
            200,
            json={
                "events": [],
                "pageInfo": {"startCursor": None, "endCursor": None, "hasNextPage": False},
            },
        ),
    )
    first = manager(harness, db, "list_events", HOOK)
    assert first == {"events": [EVENT_INFO], "pageInfo": info, "cursor": "c2"}
    assert sent(harness)[:3] == ("GET", f"{DASH}/{HOOK}/events", [])
    last = manager(harness, db, "list_events", HOOK, after=first["cursor"])
    assert sent(harness)[2] == [("after", "c2")]
    assert last["cursor"] is None
    assert last["pageInfo"]["hasNextPage"] is False


def test_get_payload_goes_to_the_payload_route_and_reads_null_data_as_empty(
    harness: ClientHarness,
) -> None:
    db = harness.make()
    harness.api.queue(httpx.Response(200, json={"data": None, "idempotencyKey": "k"}))
    assert manager(harness, db, "get_payload", HOOK, isn="0/0/1") == {
        "data": [],
        "idempotencyKey": "k",
    }
    assert sent(harness) == ("GET", f"/webhooks/payload/{APP_ID}/{HOOK}/0/0/1", [], None)


def test_manager_never_sends_an_as_user_identity(harness: ClientHarness) -> None:
    db = harness.make().as_user(email="a@b.c")
    harness.api.queue(httpx.Response(200, json={"webhooks": []}))
    assert manager(harness, db, "list") == []
    headers = our_headers(harness.api.last)
    assert "as-email" not in headers
    assert headers["authorization"] == f"Bearer {ADMIN_TOKEN}"


def test_manager_without_admin_token_fails_before_sending(harness: ClientHarness) -> None:
    db = harness.make(admin_token="").as_user(token=REFRESH_TOKEN)
    with pytest.raises(InstantError, match=r"db\.webhooks\.manager\.list\(\) needs an admin token"):
        manager(harness, db, "list")
    assert harness.api.requests == []


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error", "message"),
    [
        (
            "create",
            (),
            {"url": "ftp://x", "namespaces": ["g"], "actions": ["create"]},
            InstantValueError,
            "absolute http",
        ),
        (
            "create",
            (),
            {"url": "https://x.io", "namespaces": "goals", "actions": ["create"]},
            InstantTypeError,
            "list of namespace names",
        ),
        (
            "create",
            (),
            {"url": "https://x.io", "namespaces": [], "actions": ["create"]},
            InstantValueError,
            "at least one namespace",
        ),
        (
            "create",
            (),
            {"url": "https://x.io", "namespaces": ["g"], "actions": ["upsert"]},
            InstantValueError,
            "unknown action 'upsert'",
        ),
        (
            "create",
            (),
            {"url": "https://x.io", "namespaces": ["g"], "actions": []},
            InstantValueError,
            "at least one action",
        ),
        ("update", (HOOK,), {}, InstantValueError, "at least one of url="),
        ("enable", ("../../admin",), {}, InstantValueError, "webhook's id"),
        ("get_event", (HOOK,), {"isn": "42/../x"}, InstantValueError, "look like '0/328"),
        ("get_event", (HOOK,), {"isn": "42"}, InstantValueError, "look like '0/328"),
        ("get_event", (HOOK,), {"isn": -1}, InstantValueError, "between 0"),
        ("get_event", (HOOK,), {"isn": True}, InstantTypeError, "isn must be"),
        ("disable", (HOOK,), {"reason": 3}, InstantTypeError, "reason must be a str"),
        ("list_events", (HOOK,), {"after": 5}, InstantTypeError, "cursor"),
    ],
)
def test_bad_arguments_fail_before_sending(
    harness: ClientHarness,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    db = harness.make()
    with pytest.raises(error, match=message):
        manager(harness, db, method, *args, **kwargs)
    assert harness.api.requests == []


def test_a_server_refusal_is_an_api_error_with_the_servers_message(harness: ClientHarness) -> None:
    db = harness.make()
    body = {"type": "record-not-found", "message": "Record not found: webhook", "hint": {}}
    harness.api.queue(httpx.Response(400, json=body))
    with pytest.raises(InstantError, match="Record not found: webhook") as caught:
        manager(harness, db, "enable", HOOK)
    assert getattr(caught.value, "status", None) == 400
