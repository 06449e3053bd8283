"""The pure parts of subscribe_query: SSE decoding, the reconnect schedule and
`SubscriptionMachine`, fed events by hand (no network, no clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb import (
    InstantAPIError,
    InstantConnectionError,
    InstantError,
    InstantPermissionError,
    InstantRateLimitError,
    InstantServerError,
    InstantValidationError,
)
from instantdb._protocol.reconnect import (
    MAX_BACKOFF,
    STABLE_AFTER,
    ReconnectSchedule,
    TransientError,
    is_terminal,
)
from instantdb._protocol.sse import SSEDecoder, SSEEvent, SSEProtocolError, messages_of
from instantdb._protocol.subscription import (
    BACKLOG,
    OUTAGE_REPORT_AFTER,
    Next,
    SubscriptionMachine,
    page_info_of,
)

INIT = {"op": "sse-init", "machine-id": "m1", "session-id": "s1", "sse-token": "k1"}
PAGE_META = {
    "page-info": {
        "goals": {
            "start-cursor": ["goals", "id", "g1", 0],
            "end-cursor": ["goals", "id", "g2", 0],
            "has-next-page?": True,
            "has-previous-page?": False,
        }
    },
    "aggregate": {},
}


def add_query_ok(result: Any, meta: Any = None) -> dict[str, Any]:
    return {"op": "add-query-ok", "result": result, "result-meta": meta or {"page-info": {}}}


def refresh_ok(result: Any) -> dict[str, Any]:
    return {
        "op": "refresh-ok",
        "computations": [{"instaql-result": result, "result-meta": {"page-info": {}}}],
    }


def api(status: int, kind: str = "x", **extra: Any) -> InstantAPIError:
    return InstantAPIError("m", status=status, body={"type": kind, **extra})


def machine(random: float = 1.0) -> SubscriptionMachine:
    return SubscriptionMachine(random=lambda: random)


def drain(m: SubscriptionMachine) -> list[dict[str, Any]]:
    out = []
    while (payload := m.pop()) is not None:
        out.append(payload)
    return out


# -- SSE decoding ---------------------------------------------------------------------


def test_decoder_reads_data_lines_retry_and_skips_comments() -> None:
    d = SSEDecoder()
    events = d.feed(b'retry:500\n\ndata:{"op":"a"}\n\n:\n\ndata: {"op":"b"}\r\n\r\n')
    assert [e.data for e in events] == ['{"op":"a"}', '{"op":"b"}']
    assert d.retry_ms == 500


def test_decoder_keeps_partial_lines_and_split_utf8_across_chunks() -> None:
    d = SSEDecoder()
    raw = 'data:{"t":"héllo"}\n\n'.encode()
    split = raw.index("é".encode()) + 1  # inside the two-byte character
    assert d.feed(raw[:split]) == []
    assert d.feed(raw[split:]) == [SSEEvent('{"t":"héllo"}')]


def test_decoder_joins_multi_line_data_and_ignores_event_and_id() -> None:
    d = SSEDecoder()
    assert d.feed(b"event: x\nid: 7\ndata: [1,\ndata: 2]\n\n") == [SSEEvent("[1,\n2]")]


def test_decoder_strips_a_leading_bom() -> None:
    assert SSEDecoder().feed(b'\xef\xbb\xbfdata:{"op":"a"}\n\n')[0].data == '{"op":"a"}'


@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3), max_size=6),
    st.data(),
)
def test_decoder_gives_the_same_events_however_the_bytes_are_cut(
    messages: list[dict[str, str]], data: st.DataObject
) -> None:
    raw = b"".join(
        b"data:" + json.dumps(m, ensure_ascii=False).encode() + b"\n\n:\n" for m in messages
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    d = SSEDecoder()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        events += d.feed(raw[start:cut])
        start = cut
    assert [json.loads(e.data) for e in events] == messages


def test_messages_of_accepts_an_object_or_an_array_of_objects() -> None:
    assert messages_of(SSEEvent('{"op":"a"}')) == [{"op": "a"}]
    assert messages_of(SSEEvent('[{"op":"a"},{"op":"b"}]')) == [{"op": "a"}, {"op": "b"}]


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"'])
def test_messages_of_refuses_what_is_not_a_message(data: str) -> None:
    with pytest.raises(SSEProtocolError):
        messages_of(SSEEvent(data))


# -- failures: terminal or transient --------------------------------------------------


@pytest.mark.parametrize(
    ("error", "terminal"),
    [
        (api(400, "validation-failed"), True),
        (api(401), True),
        (api(403), True),
        (api(404), True),
        (api(200), True),  # answered, but not an event stream
        (InstantError("client is closed"), True),
        (api(408), False),
        (InstantRateLimitError("slow down", status=429, retry_after=3.0), False),
        (api(500), False),
        (api(503), False),
        (InstantConnectionError("refused", may_have_been_sent=False), False),
        (TransientError("no sse-init"), False),
        (SSEProtocolError("garbage"), True),
    ],
)
def test_which_failures_are_terminal(error: InstantError, terminal: bool) -> None:
    assert is_terminal(error) is terminal


# -- the reconnect schedule -----------------------------------------------------------


def test_schedule_is_immediate_then_doubles_with_jitter_up_to_the_cap() -> None:
    s = ReconnectSchedule(random=lambda: 1.0)
    delays = [s.delay_after(api(503), now=0) for _ in range(9)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    low = ReconnectSchedule(random=lambda: 0.0)
    assert [low.delay_after(api(503), now=0) for _ in range(4)] == [0.0, 0.25, 0.5, 1.0]


def test_schedule_resets_only_after_a_stable_connection() -> None:
    s = ReconnectSchedule(random=lambda: 1.0)
    for _ in range(4):
        s.delay_after(api(503), now=0)
    s.opened(now=100)
    assert s.delay_after(api(503), now=100 + STABLE_AFTER / 2) == 4.0  # flapping: keep growing
    s.opened(now=200)
    assert s.delay_after(api(503), now=200 + STABLE_AFTER) == 0.0


def test_schedule_honours_the_server_retry_hint_and_a_429_wait() -> None:
    s = ReconnectSchedule(random=lambda: 1.0)
    s.retry_hint = 0.5
    assert s.delay_after(api(503), now=0) == 0.5
    limited = InstantRateLimitError("slow", status=429, retry_after=7.0)
    assert s.delay_after(limited, now=0) == 7.0


# -- the machine ----------------------------------------------------------------------


def test_initial_result_then_refreshes_become_ok_payloads() -> None:
    m = machine()
    m.connecting(now=0)
    assert m.ready_state == "connecting"
    assert m.session_info is None
    assert m.on_message(INIT, now=0) is Next.READ
    assert m.ready_state == "open"
    assert m.session_info == {"machine_id": "m1", "session_id": "s1"}
    m.on_message(add_query_ok({"goals": [{"id": "g1"}]}, PAGE_META), now=0)
    m.on_message(refresh_ok({"goals": []}), now=1)
    m.on_message({"op": "refresh-ok", "computations": []}, now=2)  # only attrs changed
    first, second = drain(m)
    assert first == {
        "type": "ok",
        "data": {"goals": [{"id": "g1"}]},
        "page_info": {
            "goals": {
                "start_cursor": ["goals", "id", "g1", 0],
                "end_cursor": ["goals", "id", "g2", 0],
                "has_next_page": True,
                "has_previous_page": False,
            }
        },
        "session_info": {"machine_id": "m1", "session_id": "s1"},
    }
    assert second["data"] == {"goals": []}
    assert second["page_info"] is None


def test_page_info_absent_or_empty_is_none() -> None:
    assert page_info_of(None) is None
    assert page_info_of({"page-info": {}}) is None
    assert page_info_of({}) is None


def test_unknown_ops_are_ignored() -> None:
    m = machine()
    assert m.on_message({"op": "something-new"}, now=0) is Next.READ
    assert drain(m) == []


def test_error_for_a_refresh_is_yielded_and_the_subscription_goes_on() -> None:
    m = machine()
    m.on_message(INIT, now=0)
    m.on_message(add_query_ok({"goals": []}), now=0)
    message = {
        "op": "error",
        "status": 400,
        "type": "permission-denied",
        "message": "no",
        "original-event": {"op": "refresh"},
    }
    assert m.on_message(message, now=1) is Next.READ
    _, error = drain(m)
    assert error["type"] == "error"
    assert isinstance(error["error"], InstantPermissionError)
    assert error["error"].status == 400
    assert error["error"].body["original-event"] == {"op": "refresh"}
    assert (error["ready_state"], error["is_closed"]) == ("open", False)
    assert not m.is_closed


def test_error_for_the_initial_query_ends_the_subscription() -> None:
    m = machine()
    m.on_message(INIT, now=0)
    message = {
        "op": "error",
        "status": 400,
        "type": "validation-failed",
        "message": "bad query",
        "original-event": {"op": "add-query"},
    }
    assert m.on_message(message, now=0) is Next.STOP
    [payload] = drain(m)
    assert isinstance(payload["error"], InstantValidationError)
    assert (payload["ready_state"], payload["is_closed"]) == ("closed", True)
    assert m.exhausted


def test_server_error_for_the_initial_query_reconnects() -> None:
    m = machine()
    m.on_message(INIT, now=0)
    message = {"op": "error", "status": 500, "original-event": {"op": "add-query"}}
    assert m.on_message(message, now=0) is Next.RECONNECT
    assert isinstance(m.reconnect_reason, InstantServerError)
    assert str(m.reconnect_reason) == "subscribe-query error"


@pytest.mark.parametrize("status", [400, 401, 403])
@pytest.mark.parametrize("connected_before", [False, True])
def test_auth_and_validation_failures_end_with_one_error_payload(
    status: int, connected_before: bool
) -> None:
    m = machine()
    m.connecting(now=0)
    if connected_before:
        m.on_message(INIT, now=0)
        m.on_message(add_query_ok({}), now=0)
        m.connecting(now=5)
    assert m.failed(api(status), now=5) is None
    payloads = drain(m)
    assert payloads[-1]["type"] == "error"
    assert payloads[-1]["error"].status == status
    assert (payloads[-1]["ready_state"], payloads[-1]["is_closed"]) == ("closed", True)
    assert m.exhausted
    assert m.failed(api(503), now=6) is None  # nothing happens after the end


@pytest.mark.parametrize("connected_before", [False, True])
def test_transient_failures_reconnect_and_report_a_long_outage_once(connected_before: bool) -> None:
    m = machine()
    m.connecting(now=0)
    if connected_before:
        m.on_message(INIT, now=0)
    drop = InstantConnectionError("refused", may_have_been_sent=False)
    delays = []
    for now in (0.0, 1.0, 3.0, OUTAGE_REPORT_AFTER, 20.0):
        m.connecting(now=now)
        delays.append(m.failed(drop, now=now))
    assert all(delay is not None for delay in delays)
    [report] = drain(m)
    assert report["type"] == "error"
    assert report["error"] is drop
    assert (report["ready_state"], report["is_closed"]) == ("connecting", False)
    m.on_message(INIT, now=30)
    m.on_message(add_query_ok({"goals": []}), now=30)
    assert [p["type"] for p in drain(m)] == ["ok"]
    assert m.ready_state == "open"


def test_backlog_keeps_the_newest_payloads_and_counts_the_dropped() -> None:
    m = machine()
    m.on_message(INIT, now=0)
    for n in range(BACKLOG + 7):
        m.on_message(refresh_ok({"n": n}), now=0)
    payloads = drain(m)
    assert len(payloads) == BACKLOG
    assert payloads[0]["data"] == {"n": 7}
    assert payloads[-1]["data"] == {"n": BACKLOG + 6}
    assert m.dropped == 7


def test_the_final_error_is_never_dropped_by_the_backlog() -> None:
    m = SubscriptionMachine(random=lambda: 1.0, backlog=2)
    m.on_message(INIT, now=0)
    for n in range(5):
        m.on_message(refresh_ok({"n": n}), now=0)
    m.failed(api(401), now=1)
    assert [p["type"] for p in drain(m)] == ["ok", "ok", "error"]


def test_close_discards_undelivered_payloads_and_is_idempotent() -> None:
    m = machine()
    m.on_message(INIT, now=0)
    m.on_message(refresh_ok({}), now=0)
    m.close()
    m.close()
    assert m.ready_state == "closed"
    assert m.pop() is None
    assert m.exhausted
    assert m.on_message(refresh_ok({}), now=1) is Next.STOP


def test_retry_hint_sets_a_floor_for_waits() -> None:
    m = machine()
    m.on_retry_hint(2000)
    assert m.failed(api(503), now=0) == 2.0
