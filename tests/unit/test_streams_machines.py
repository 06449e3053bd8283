"""The stream writer and reader state machines, fed by hand (no network)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb import InstantError, InstantValidationError, InstantValueError
from instantdb._protocol.streams import (
    APPEND_LIMIT,
    BLOCK_SIZE,
    MAX_RESTARTS,
    MAX_RESUBSCRIBES,
    ReaderMachine,
    Segment,
    StreamCorruptedError,
    Text,
    WriterMachine,
    session_ids,
)

S = "5e000000-0000-4000-8000-000000000001"


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"e{next(counter)}"


def writer(**kwargs: Any) -> WriterMachine:
    kwargs.setdefault("rule_params", None)
    return WriterMachine(client_id="c1", reconnect_token="RT", new_id=ids(), **kwargs)


def started(w: WriterMachine, offset: int = 0) -> list[dict[str, Any]]:
    [start] = [m for m in w.on_session_open() if m["op"] == "start-stream"]
    return w.on_message(
        {
            "op": "start-stream-ok",
            "client-event-id": start["client-event-id"],
            "stream-id": S,
            "offset": offset,
        }
    )


def take(w: WriterMachine, budget: int = 4 * APPEND_LIMIT) -> list[dict[str, Any]]:
    """What the session would push now."""
    return w.take(budget)


def texts(append: dict[str, Any]) -> list[str]:
    """An append's chunks as text (the machine keeps them as UTF-8 `Text`)."""
    return [str(chunk) for chunk in append["chunks"]]


def flushed(offset: int, done: bool = False) -> dict[str, Any]:
    return {"op": "stream-flushed", "stream-id": S, "offset": offset, "done": done}


def append_error(event: str, status: int = 400) -> dict[str, Any]:
    return {
        "op": "error",
        "status": status,
        "client-event-id": event,
        "type": "validation-failed",
        "message": "Invalid offset for stream.",
        "original-event": {"op": "append-stream"},
    }


# -- writer ---------------------------------------------------------------------------


def test_writer_starts_then_appends_at_growing_offsets_then_finishes() -> None:
    w = writer(rule_params={"k": 1})
    [start] = w.on_session_open()
    assert start == {
        "client-event-id": "e1",
        "op": "start-stream",
        "client-id": "c1",
        "reconnect-token": "RT",
        "rule-params": {"k": 1},
    }
    w.write("Hello")
    assert take(w) == []  # not started yet: buffered
    assert (
        w.on_message(
            {"op": "start-stream-ok", "client-event-id": "e1", "stream-id": S, "offset": 0}
        )
        == []
    )
    assert w.stream_id == S
    assert take(w) == [
        {
            "client-event-id": "e2",
            "op": "append-stream",
            "stream-id": S,
            "chunks": [Text(b"Hello")],
            "offset": 0,
            "done": False,
        }
    ]
    assert take(w) == []  # nothing new
    w.write(" wör")
    [a] = take(w)
    assert (texts(a), a["offset"]) == ([" wör"], 5)
    w.write(b"ld!")
    w.finish()
    w.finish()  # idempotent
    [last] = take(w)  # the last bytes and the end, together
    assert (texts(last), last["offset"], last["done"]) == (["ld!"], 10, True)
    assert "abort-reason" not in last
    assert take(w) == []
    assert not w.finished
    w.on_message(flushed(13, done=True))
    assert w.done_flushed
    assert w.finished
    assert w.error is None


def test_writes_made_while_a_push_is_out_go_together_in_the_next() -> None:
    w = writer()
    started(w)
    w.write("a")
    [first] = take(w)
    for chunk in ("b", "cd", "€", "f"):
        w.write(chunk)
    [batched] = take(w)
    assert (texts(first), first["offset"]) == (["a"], 0)
    assert (texts(batched), batched["offset"]) == (["bcd€f"], 1)
    assert w.total_bytes == 8


def test_a_push_carries_at_most_its_budget_in_appends_of_at_most_the_limit() -> None:
    w = writer()
    started(w)
    # "é" is two bytes: no cut may fall inside one.
    w.write("é" * (APPEND_LIMIT + 7))
    push = take(w, budget=APPEND_LIMIT + 9)
    sizes = [len("".join(texts(m)).encode()) for m in push]
    assert sizes == [APPEND_LIMIT, 8]
    assert [m["offset"] for m in push] == [0, APPEND_LIMIT]
    rest = take(w)
    assert [m["offset"] for m in rest] == [APPEND_LIMIT + 8, 2 * APPEND_LIMIT + 8]
    assert sum(len("".join(texts(m)).encode()) for m in push + rest) == w.total_bytes
    # A character longer than the budget still goes whole: a push always makes progress.
    w.write("😀")
    [emoji] = take(w, budget=1)
    assert texts(emoji) == ["😀"]


def test_room_runs_out_at_the_buffer_limit_and_comes_back_with_flushes() -> None:
    w = writer(buffer_limit=10)
    started(w)
    w.write("12345")
    assert w.has_room
    w.write("678901")  # the write that crosses the limit is taken whole
    assert (w.buffered, w.has_room) == (11, False)
    take(w)
    assert not w.has_room  # sent is not confirmed
    w.on_message(flushed(5))
    assert (w.buffered, w.has_room) == (6, True)


def test_finish_before_the_start_is_confirmed_sends_done_once_it_is() -> None:
    w = writer()
    [start] = w.on_session_open()
    w.finish("user cancelled")
    assert take(w) == []
    w.on_message(
        {
            "op": "start-stream-ok",
            "client-event-id": start["client-event-id"],
            "stream-id": S,
            "offset": 0,
        }
    )
    [done] = take(w)
    assert done["done"] is True
    assert texts(done) == []
    assert done["offset"] == 0
    assert done["abort-reason"] == "user cancelled"


def test_writes_after_finish_or_failure_raise() -> None:
    w = writer()
    started(w)
    w.finish()
    with pytest.raises(InstantError, match="closed"):
        w.write("x")
    f = writer()
    f.fail(InstantValidationError("bad", status=400))
    with pytest.raises(InstantValidationError):
        f.write("x")


def test_bytes_may_split_a_character_across_writes() -> None:
    w = writer()
    started(w)
    euro = "€".encode()
    w.write(euro[:1])
    assert take(w) == []  # nothing whole to send yet
    w.write(euro[1:] + b"!")
    [m] = take(w)
    assert texts(m) == ["€!"]
    assert m["offset"] == 0
    assert w.total_bytes == 4


@pytest.mark.parametrize("data", [b"\xff", b"ok\xc3("])
def test_bytes_that_are_not_utf8_are_refused(data: bytes) -> None:
    w = writer()
    started(w)
    with pytest.raises(InstantValueError, match="UTF-8"):
        w.write(data)
    assert w.total_bytes == 0


def test_finishing_in_the_middle_of_a_character_is_refused() -> None:
    w = writer()
    started(w)
    w.write("€".encode()[:2])
    with pytest.raises(InstantValueError, match="middle of a UTF-8 character"):
        w.finish()


def test_stream_flushed_drops_confirmed_bytes() -> None:
    w = writer()
    started(w)
    w.write("abc")
    w.write("def")
    w.on_message(flushed(3))
    assert w.flushed_offset == 3
    assert w.on_message({**flushed(6), "stream-id": "other"}) == []
    assert w.flushed_offset == 3


def test_new_session_resumes_from_the_durable_offset_and_resends_the_rest() -> None:
    w = writer()
    started(w)
    for chunk in ("Hello", " wor", "ld!"):
        w.write(chunk)
        take(w)
    w.on_message(flushed(5))
    w.on_session_lost()
    w.write("?")
    assert take(w) == []  # disconnected: buffered
    [start] = w.on_session_open()
    assert start["op"] == "start-stream"
    assert start["reconnect-token"] == "RT"
    w.on_message(
        {
            "op": "start-stream-ok",
            "client-event-id": start["client-event-id"],
            "stream-id": S,
            "offset": 9,
        }
    )
    [resend] = take(w)
    assert (texts(resend), resend["offset"], resend["done"]) == (["ld!?"], 9, False)
    w.write("x")
    [nxt] = take(w)
    assert nxt["offset"] == 13


def test_start_ok_for_a_replaced_start_is_ignored() -> None:
    w = writer()
    w.on_session_open()
    w.on_session_lost()
    w.on_session_open()
    assert (
        w.on_message(
            {"op": "start-stream-ok", "client-event-id": "e1", "stream-id": S, "offset": 0}
        )
        == []
    )
    assert w.stream_id is None


@pytest.mark.parametrize(
    "trigger",
    [lambda event: append_error(event), lambda event: {"op": "append-failed", "stream-id": S}],
)
def test_append_error_or_append_failed_restarts_and_resends(trigger: Any) -> None:
    w = writer()
    started(w)
    w.write("abc")
    [a] = take(w)
    [restart] = w.on_message(trigger(a["client-event-id"]))
    assert restart["op"] == "start-stream"
    w.write("d")
    assert take(w) == []  # restarting: buffered
    w.on_message(
        {
            "op": "start-stream-ok",
            "client-event-id": restart["client-event-id"],
            "stream-id": S,
            "offset": 0,
        }
    )
    [resend] = take(w)
    assert (texts(resend), resend["offset"]) == (["abcd"], 0)
    assert w.error is None


def test_errors_for_appends_of_an_earlier_start_are_ignored() -> None:
    w = writer()
    started(w)
    w.write("abc")
    [a] = take(w)
    w.on_message({"op": "append-failed", "stream-id": S})  # restart: a is now stale
    assert w.on_message(append_error(a["client-event-id"])) == []


def test_restarts_without_progress_are_bounded() -> None:
    w = writer()
    started(w)
    w.write("abc")
    for _ in range(MAX_RESTARTS):
        [restart] = w.on_message({"op": "append-failed", "stream-id": S})
        w.on_message(
            {
                "op": "start-stream-ok",
                "client-event-id": restart["client-event-id"],
                "stream-id": S,
                "offset": 0,
            }
        )
    assert w.on_message({"op": "append-failed", "stream-id": S}) == []
    assert w.error is not None
    assert "made no progress" in str(w.error)
    with pytest.raises(InstantError, match="no progress"):
        w.write("more")


def test_progress_resets_the_restart_budget() -> None:
    w = writer()
    started(w)
    for n in range(MAX_RESTARTS * 2):
        w.write("ab")
        [restart] = w.on_message({"op": "append-failed", "stream-id": S})
        w.on_message(
            {
                "op": "start-stream-ok",
                "client-event-id": restart["client-event-id"],
                "stream-id": S,
                "offset": w.flushed_offset,
            }
        )
        w.on_message(flushed(2 * (n + 1)))
    assert w.error is None


def test_terminal_start_error_fails_the_writer() -> None:
    w = writer()
    [start] = w.on_session_open()
    w.on_message(
        {
            "op": "error",
            "status": 400,
            "client-event-id": start["client-event-id"],
            "type": "validation-failed",
            "message": "Reconnect token is invalid.",
            "original-event": {"op": "start-stream"},
        }
    )
    assert isinstance(w.error, InstantValidationError)
    assert w.finished


def test_server_start_error_is_retried() -> None:
    w = writer()
    [start] = w.on_session_open()
    [again] = w.on_message(
        {
            "op": "error",
            "status": 500,
            "client-event-id": start["client-event-id"],
            "original-event": {"op": "start-stream"},
        }
    )
    assert again["op"] == "start-stream"
    assert again["client-event-id"] != start["client-event-id"]


@pytest.mark.parametrize(
    ("first_offset", "resume_offset", "match"),
    [(3, None, "already in the new stream"), (0, 10, "durable bytes")],
)
def test_impossible_offsets_are_corruption(
    first_offset: int, resume_offset: int | None, match: str
) -> None:
    w = writer()
    started(w, offset=first_offset)
    if resume_offset is not None:
        w.write("abc")
        w.on_session_lost()
        [start] = w.on_session_open()
        w.on_message(
            {
                "op": "start-stream-ok",
                "client-event-id": start["client-event-id"],
                "stream-id": S,
                "offset": resume_offset,
            }
        )
    assert isinstance(w.error, StreamCorruptedError)
    assert match in str(w.error)


def test_a_done_flush_the_writer_did_not_ask_for_is_an_error() -> None:
    w = writer()
    started(w)
    w.write("abc")
    w.on_message(flushed(3, done=True))
    assert isinstance(w.error, StreamCorruptedError)


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12), st.data())
def test_resends_reassemble_exactly_the_text_written(
    chunks: list[str], data: st.DataObject
) -> None:
    """Whatever is batched into which push, and whatever the durable offsets and
    restarts, the server ends up with the text, each byte once."""
    w = writer()
    server = bytearray()

    def push(budget: int) -> None:
        for m in w.take(budget):
            assert m["offset"] == len(server)
            server.extend("".join(texts(m)).encode())

    started(w)
    for chunk in chunks:
        w.write(chunk)
        if data.draw(st.booleans()):
            push(data.draw(st.integers(1, 8)))
        if data.draw(st.booleans()):
            # the server loses what it was sent back to some point it had made durable
            # (at or past what it confirmed), then the writer resumes on a new session
            durable = data.draw(st.integers(w.flushed_offset, len(server)))
            while durable < len(server) and server[durable] & 0xC0 == 0x80:
                durable += 1  # the server keeps whole characters
            w.on_message(flushed(durable))
            del server[durable:]
            w.on_session_lost()
            [start] = w.on_session_open()
            w.on_message(
                {
                    "op": "start-stream-ok",
                    "client-event-id": start["client-event-id"],
                    "stream-id": S,
                    "offset": durable,
                }
            )
    w.finish()
    while w.has_unsent:
        push(data.draw(st.integers(1, 8)))
    assert server.decode() == "".join(chunks)
    assert w.error is None


# -- reader ---------------------------------------------------------------------------


def reader(offset: int = 0, **kwargs: Any) -> ReaderMachine:
    kwargs.setdefault("stream_id", None)
    kwargs.setdefault("client_id", "c1")
    return ReaderMachine(byte_offset=offset, rule_params=None, new_id=ids(), **kwargs)


def append(r: ReaderMachine, **fields: Any) -> None:
    r.on_message(
        {
            "op": "stream-append",
            "client-event-id": r.subscribe_event,
            "stream-id": S,
            "client-id": "c1",
            **fields,
        }
    )


def test_reader_subscribes_with_its_offset_only_when_positive() -> None:
    assert reader().on_session_open() == [
        {"client-event-id": "e1", "op": "subscribe-stream", "client-id": "c1"}
    ]
    [m] = reader(5, stream_id=S, client_id=None).on_session_open()
    assert m == {"client-event-id": "e1", "op": "subscribe-stream", "stream-id": S, "offset": 5}


def test_reader_queues_segments_and_discards_what_it_already_has() -> None:
    r = reader(5)
    r.on_session_open()
    append(
        r,
        offset=0,
        files=[{"id": "f", "size": 12, "url": "u0"}],
        content="?",
        done=True,
        **{"abort-reason": None},
    )
    [segment] = r.segments
    assert segment == Segment(0, ("u0",), b"?", True, None)
    assert r.stream_id == S
    assert r.accept(0, b"Hello world!") == b" world!"
    assert r.accept(12, b"?") == b"?"
    assert r.seen_offset == 13
    assert r.accept(3, b"abc") == b""  # entirely old


def test_reader_gap_is_corruption() -> None:
    r = reader(5)
    with pytest.raises(StreamCorruptedError, match="offset gap"):
        r.accept(6, b"x")


def test_messages_of_other_subscriptions_are_ignored() -> None:
    r = reader()
    r.on_session_open()
    r.on_message({"op": "stream-append", "client-event-id": "old", "offset": 0, "content": "x"})
    assert not r.segments


def test_retryable_error_resubscribes_from_the_delivered_offset() -> None:
    r = reader()
    r.on_session_open()
    append(r, offset=0, content="abc")
    r.accept(0, b"ab")
    old = r.subscribe_event
    unsubscribe, subscribe = r.on_message(
        {
            "op": "stream-append",
            "client-event-id": old,
            "error": True,
            "retry": True,
            "error-type": "rate-limit",
        }
    )
    assert unsubscribe == {
        "client-event-id": "e2",
        "op": "unsubscribe-stream",
        "subscribe-event-id": old,
    }
    assert subscribe["offset"] == 2
    assert not r.segments  # the new subscription resends them


def test_permanent_errors_fail_the_reader() -> None:
    r = reader()
    r.on_session_open()
    append(r, error=True, **{"error-type": "unknown"})
    assert isinstance(r.error, InstantError)
    assert "unknown" in str(r.error)
    m = reader()
    [sub] = m.on_session_open()
    m.on_message(
        {
            "op": "error",
            "status": 400,
            "client-event-id": sub["client-event-id"],
            "type": "record-not-found",
            "message": "Stream is missing.",
            "original-event": {"op": "subscribe-stream"},
        }
    )
    assert str(m.error) == "Stream is missing."


def test_resubscribes_without_progress_are_bounded() -> None:
    r = reader()
    r.on_session_open()
    for _ in range(MAX_RESUBSCRIBES):
        assert r.resubscribe(InstantError("fetch failed"))
    assert r.resubscribe(InstantError("fetch failed")) == []
    assert r.error is not None
    assert "could not be read past byte 0" in str(r.error)


def test_new_session_resubscribes_at_the_delivered_offset() -> None:
    r = reader(3)
    r.on_session_open()
    append(r, offset=3, content="abcd")
    r.accept(3, b"ab")
    r.on_session_lost()
    [m] = r.on_session_open()
    assert m["offset"] == 5


def test_close_unsubscribes_unless_the_stream_ended() -> None:
    r = reader()
    r.on_session_open()
    [m] = r.close()
    assert m["op"] == "unsubscribe-stream"
    assert m["subscribe-event-id"] == "e1"
    done = reader()
    done.on_session_open()
    done.complete(Segment(None, done=True, abort_reason="stopped"))
    assert done.close() == []
    assert done.abort_reason == "stopped"


def test_session_ids_require_all_three_fields() -> None:
    ok = session_ids({"op": "sse-init", "machine-id": "m", "session-id": "s", "sse-token": "t"})
    assert (ok.machine_id, ok.session_id, ok.sse_token) == ("m", "s", "t")
    assert "t" not in repr(ok)
    with pytest.raises(InstantError, match="sse-token"):
        session_ids({"op": "sse-init", "machine-id": "m", "session-id": "s"})


@given(st.text(max_size=30), st.data())
def test_overlapping_redeliveries_reassemble_exactly(text: str, data: st.DataObject) -> None:
    """Data redelivered from any earlier offset, cut anywhere, yields each byte once."""
    raw = text.encode()
    r = reader()
    out = bytearray()
    while r.seen_offset < len(raw):
        start = data.draw(st.integers(0, r.seen_offset))
        end = data.draw(st.integers(r.seen_offset + 1, len(raw)))
        out += r.accept(start, raw[start:end])
    assert bytes(out) == raw


# Writes of every UTF-8 length, from tiny to several blocks (BLOCK_SIZE) and past the
# append limit, so cuts fall inside blocks, at their edges and inside big writes.
WRITES = st.tuples(
    st.sampled_from(["a", "é", "✓", "😀", 'x"\n']), st.sampled_from([1, 7, 5000, 40_000, 400_000])
).map(lambda pair: pair[0] * pair[1])


@given(st.data())
def test_appends_carry_exactly_the_written_bytes_from_their_offset_across_restarts(
    data: st.DataObject,
) -> None:
    w = writer()
    started(w)
    stream = bytearray()  # what was written
    received = 0  # the server's end: where the next append must start
    ends = [0]  # append ends the server received, so may confirm or resume from
    biggest = 0
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        action = data.draw(st.sampled_from(["write", "take", "flush", "restart"]))
        if action == "write":
            text = data.draw(WRITES, label="write")
            w.write(text)
            stream += text.encode()
            biggest = max(biggest, len(text.encode()))
        elif action == "take":
            for append in w.take(data.draw(st.integers(1, 3 * APPEND_LIMIT), label="budget")):
                [text] = append["chunks"] or [Text()]
                assert append["offset"] == received  # strict offsets
                assert text.utf8 == stream[received : received + len(text)]
                assert len(text) <= APPEND_LIMIT
                received += len(text)
                ends.append(received)
        elif action == "flush":
            offset = data.draw(st.sampled_from([end for end in ends if end >= w.flushed_offset]))
            w.on_message(flushed(offset))
        else:  # a new session resumes from a durable point the server chooses
            offset = data.draw(st.sampled_from([end for end in ends if end >= w.flushed_offset]))
            w.on_session_lost()
            [start] = w.on_session_open()
            w.on_message(
                {
                    "op": "start-stream-ok",
                    "client-event-id": start["client-event-id"],
                    "stream-id": S,
                    "offset": offset,
                }
            )
            received = offset
            ends = [end for end in ends if end <= offset]
        assert w.error is None
        assert w.buffered == len(stream) - w.flushed_offset
        # What is kept beyond the unconfirmed bytes is the start of one block at most.
        assert w.held_bytes - w.buffered < max(BLOCK_SIZE, biggest)
    for append in w.take(len(stream)):  # the rest goes out, exactly
        [text] = append["chunks"]
        assert (append["offset"], text.utf8) == (received, stream[received : received + len(text)])
        received += len(text)
    assert received == len(stream)
