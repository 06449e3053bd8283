"""``db.streams`` end to end: the SDK's writers and readers against the local server's
stream sessions (``/admin/sse`` + ``/admin/sse/push``), for `Instant` and `AsyncInstant`.

What is checked: the 3-chunk vector of live-protocol section 6.2 read from byte 5; a
reader tailing a stream while it is written; readers and writers whose connections are
cut (by `TCPProxy`) mid-event, mid-download and mid-character, compared by SHA-256 with
what was written, so every byte arrives exactly once; writers that leave early (an empty
block, an exception) closing their stream; the ``$streams`` rows, queried and
subscribed to.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from instantdb import InstantAPIError, InstantError, InstantPermissionError, InstantTimeoutError
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from tests.integration._live import (
    LiveReader,
    LiveSubscription,
    LiveWriter,
    ok_data,
    run,
    write_block,
)
from tests.integration._tcp_proxy import TCPProxy
from tests.integration.conftest import Clients, Driven

# Multi-byte UTF-8 in every chunk: 1, 2, 3 and 4 bytes a character.
PIECE = "naïve café ✓ 😀 "


def chunks_of(count: int, repeat: int) -> list[str]:
    return [f"<{n:04d}>" + PIECE * repeat for n in range(count)]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stream_row(db: Driven, client_id: str) -> dict[str, Any]:
    rows = db.query({"$streams": {"$": {"where": {"clientId": client_id}}}})["$streams"]
    assert len(rows) == 1, rows
    return dict(rows[0])


def writer(db: Driven, clients: Clients, client_id: str, **kwargs: Any) -> LiveWriter:
    return LiveWriter(db.client.streams.write(client_id=client_id, **kwargs), clients.loop)


def reader(db: Driven, clients: Clients, **kwargs: Any) -> LiveReader:
    return LiveReader(db.client.streams.read(**kwargs), clients.loop)


def test_three_chunks_then_a_read_from_byte_5(db: Driven, clients: Clients) -> None:
    written = write_block(
        db.client.streams.write(client_id="c1"), clients.loop, ["Hello", " wor", "ld!"]
    )
    stream_id = run(clients.loop, written.wait_stream_id())
    assert written.error is None
    assert written.bytes_written == written.bytes_flushed == 12

    from_5 = reader(db, clients, client_id="c1", byte_offset=5)
    assert from_5.read_all() == " world!"
    assert from_5.reader.done is True
    assert from_5.reader.byte_offset == 12
    assert from_5.reader.stream_id == stream_id
    assert from_5.reader.abort_reason is None

    assert reader(db, clients, stream_id=stream_id).read_all() == "Hello world!"
    raw = reader(db, clients, stream_id=stream_id, byte_offset=5, as_bytes=True)
    assert raw.read_all() == b" world!"

    row = stream_row(db, "c1")
    assert row["id"] == stream_id
    assert row["done"] is True
    assert row["size"] == 12
    assert row.get("abortReason") is None


def test_a_missing_stream_fails_the_reader_clearly(db: Driven, clients: Clients) -> None:
    missing = reader(db, clients, client_id="never-written")
    with pytest.raises(InstantAPIError, match="Stream is missing") as caught:
        missing.next()
    assert caught.value.status == 400
    assert missing.reader.done is False


def test_a_reader_tails_a_stream_while_it_is_written(db: Driven, clients: Clients) -> None:
    live = writer(db, clients, "tailed").enter()
    live.write("first ✓ ")
    tail = reader(db, clients, client_id="tailed")
    assert tail.read_until(len("first ✓ ")) == "first ✓ "

    # Each write reaches the reader before the stream ends.
    for text in ["second 😀 ", "third é"]:
        live.write(text)
        expected = tail.text() + text
        assert tail.read_until(len(expected)) == expected
        assert tail.reader.done is False

    # A reader joining late, mid-stream, from a byte inside the second chunk.
    late = reader(db, clients, client_id="tailed", byte_offset=len(b"first \xe2\x9c\x93 sec"))
    assert late.read_until(len("ond 😀 third é")) == "ond 😀 third é"

    live.close()
    assert tail.read_all() == "first ✓ second 😀 third é"
    assert late.read_all() == "ond 😀 third é"
    assert tail.reader.done is True
    assert late.reader.done is True


@pytest.mark.timeout(30)  # the bug was a loop that never returned
def test_a_reader_closed_from_elsewhere_stops_waiting(db: Driven, clients: Clients) -> None:
    """Regression: a reader closed while its iteration waited for data spun forever."""
    live = writer(db, clients, "quiet").enter()
    live.write("only this")
    tail = reader(db, clients, client_id="quiet")
    assert tail.read_until(len("only this")) == "only this"
    if clients.loop is None:
        threading.Timer(0.2, tail.reader.close).start()
        assert tail.next() is None
    else:
        loop = clients.loop
        loop.call_later(0.2, lambda: loop.create_task(tail.reader.aclose()))
        assert tail.next() is None
    assert tail.reader.done is False
    live.close()


@pytest.mark.parametrize("live", [False, True], ids=["finished", "live"])
def test_a_reader_cut_mid_read_gets_every_byte_once(
    db: Driven, clients: Clients, instant_app: AppCredentials, live: bool
) -> None:
    # A finished stream is served as part files (cut mid-download); a live one as
    # events (cut mid-event). More than 1 MiB, so a part boundary is crossed too.
    chunks = chunks_of(110, 500) if not live else chunks_of(60, 100)
    text = "".join(chunks)
    budgets = [150_000, 700_000, 25_000] if not live else [3_000, 17_001, 40_000]
    with TCPProxy.to(instant_app.api_uri) as proxy:
        through_proxy = clients.make(instant_app, api_uri=proxy.api_uri)
        out = writer(db, clients, "cut-reader").enter()
        written = len(chunks) if not live else 1
        for chunk in chunks[:written]:
            out.write(chunk)
        if not live:
            out.close()
        tail = reader(through_proxy, clients, client_id="cut-reader")
        proxy.cut_after(budgets.pop(0))
        while tail.next() is not None:
            if not proxy.armed and budgets:
                proxy.cut_after(budgets.pop(0))
            if live and written < len(chunks):
                out.write(chunks[written])
                written += 1
                if written == len(chunks):
                    out.close()
        assert not budgets, "not every planned cut happened"
        assert proxy.cuts == 3
        assert proxy.accepted >= 4  # the reader's connections were really replaced
    got = tail.text()
    assert len(got.encode()) == len(text.encode())
    assert sha256(got) == sha256(text)
    assert tail.reader.done is True


def test_a_writer_whose_connection_drops_resumes_and_readers_see_each_byte_once(
    db: Driven, clients: Clients, instant_app: AppCredentials
) -> None:
    chunks = chunks_of(40, 30)
    text = "".join(chunks)
    with TCPProxy.to(instant_app.api_uri) as proxy:
        through_proxy = clients.make(instant_app, api_uri=proxy.api_uri)
        out = writer(through_proxy, clients, "cut-writer").enter()
        stream_id = out.stream_id
        tail = reader(db, clients, stream_id=stream_id)
        for n, chunk in enumerate(chunks):
            out.write(chunk)
            if n % 10 == 5:
                # Mid-stream, with pushes possibly in flight; later writes are buffered
                # until the stream is resumed on a new session.
                assert proxy.cut() >= 1
            if n % 10 == 8:
                expected = "".join(chunks[: n + 1])
                assert tail.read_until(len(expected)) == expected
        out.close()
        assert proxy.cuts == 4
    assert out.writer.error is None
    assert out.writer.bytes_flushed == out.writer.bytes_written == len(text.encode())
    got = tail.read_all()
    assert sha256(got) == sha256(text)
    assert sha256(reader(db, clients, stream_id=stream_id).read_all()) == sha256(text)
    row = stream_row(db, "cut-writer")
    assert row["done"] is True
    assert row["size"] == len(text.encode())


def test_cuts_while_batched_pushes_are_on_the_wire_lose_and_repeat_nothing(
    db: Driven, clients: Clients, instant_app: AppCredentials
) -> None:
    # An LLM's token stream: thousands of small writes, which return at once and go out
    # many to a push, so each cut below drops pushes in flight and writes still queued.
    tokens = [f"<{n}>{PIECE}" for n in range(4000)]
    text = "".join(tokens)
    with TCPProxy.to(instant_app.api_uri) as proxy:
        through_proxy = clients.make(instant_app, api_uri=proxy.api_uri)
        out = writer(through_proxy, clients, "cut-batches").enter()
        tail = reader(db, clients, stream_id=out.stream_id)
        for n, token in enumerate(tokens):
            out.write(token)
            if n % 1000 == 999:
                assert proxy.cut() >= 1
                # Resumed (after its backoff), with everything confirmed, before the
                # next thousand writes.
                settle(clients, lambda: out.writer.bytes_flushed == out.writer.bytes_written)
        out.close()
        assert proxy.cuts == 4
    assert out.writer.error is None
    assert out.writer.bytes_flushed == out.writer.bytes_written == len(text.encode())
    assert sha256(tail.read_all()) == sha256(text)
    assert stream_row(db, "cut-batches")["size"] == len(text.encode())


def test_flush_waits_until_every_written_byte_is_durable(db: Driven, clients: Clients) -> None:
    out = writer(db, clients, "checkpoints").enter()
    tail = reader(db, clients, stream_id=out.stream_id)
    text = ""
    for checkpoint in range(3):
        for token in chunks_of(200, 2):
            out.write(token)
            text += token
        out.flush()
        # Confirmed, with the stream still open: the server holds every byte so far.
        assert out.writer.bytes_flushed == out.writer.bytes_written == len(text.encode())
        assert not stream_row(db, "checkpoints").get("done")
        assert tail.read_until(len(text)) == text, checkpoint
    out.flush()  # nothing new: returns at once
    out.close()
    assert sha256(tail.read_all()) == sha256(text)


def test_flush_times_out_clearly_while_the_server_is_unreachable(
    db: Driven, clients: Clients, instant_app: AppCredentials
) -> None:
    proxy = TCPProxy.to(instant_app.api_uri)
    through_proxy = clients.make(instant_app, api_uri=proxy.api_uri)
    out = writer(through_proxy, clients, "unreachable", timeout=1).enter()
    out.write("confirmed ")
    out.flush()
    proxy.stop()  # every connection cut, and no new one accepted
    out.write("never confirmed")
    with pytest.raises(InstantTimeoutError, match="10 of 25 bytes are confirmed durable"):
        out.flush(timeout=0.5)
    assert out.writer.bytes_flushed == 10
    with pytest.raises(InstantTimeoutError):
        out.close()


def settle(clients: Clients, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds, running the async client's loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not settled within {timeout:g} s"
        if clients.loop is None:
            time.sleep(0.02)
        else:
            clients.loop.run_until_complete(asyncio.sleep(0.02))


def test_an_empty_writer_block_still_closes_the_stream(db: Driven, clients: Clients) -> None:
    empty = write_block(db.client.streams.write(client_id="empty"), clients.loop, [])
    assert empty.error is None
    row = stream_row(db, "empty")
    assert row["done"] is True
    assert row["size"] == 0
    assert row.get("abortReason") is None
    assert reader(db, clients, client_id="empty").read_all() == ""


class ModelCrashed(Exception):
    pass


def test_an_exception_in_the_writer_block_aborts_the_stream(db: Driven, clients: Clients) -> None:
    with pytest.raises(ModelCrashed):
        write_block(
            db.client.streams.write(client_id="crashed"),
            clients.loop,
            ["partial ✓"],
            error=ModelCrashed("the model crashed"),
        )
    row = stream_row(db, "crashed")
    assert row["done"] is True
    assert row["abortReason"] == "the model crashed"
    assert row["size"] == len("partial ✓".encode())
    after = reader(db, clients, client_id="crashed")
    assert after.read_all() == "partial ✓"
    assert after.reader.abort_reason == "the model crashed"


def test_a_writer_cannot_be_used_after_its_block(db: Driven, clients: Clients) -> None:
    done = write_block(db.client.streams.write(client_id="closed"), clients.loop, ["x"])
    with pytest.raises(InstantError, match="closed"):
        run(clients.loop, done.write("more"))
    # A second writer for the same client id is refused: another writer owns it.
    with pytest.raises(InstantAPIError, match="already exists"):
        write_block(db.client.streams.write(client_id="closed"), clients.loop, ["y"])
    assert stream_row(db, "closed")["size"] == 1


def test_streams_rows_are_queryable_and_live(db: Driven, clients: Clients) -> None:
    rows = LiveSubscription(
        db.subscribe_query({"$streams": {"$": {"where": {"clientId": "watched"}}}}), clients.loop
    )
    try:
        assert ok_data(rows.next() or {}) == {"$streams": []}
        out = writer(db, clients, "watched").enter()
        stream_id = out.stream_id
        opened = rows.until(lambda p: bool(ok_data(p)["$streams"]))
        assert ok_data(opened)["$streams"][0]["id"] == stream_id
        out.write("abc")
        out.close()
        finished = rows.until(lambda p: ok_data(p)["$streams"][0].get("done") is True)
        row = ok_data(finished)["$streams"][0]
        assert row["size"] == 3
        assert row["clientId"] == "watched"
        assert "hashedReconnectToken" in row  # never the token itself
    finally:
        rows.close()


class Lines:
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, message: str) -> None:
        self.lines.append(message)

    info = error = debug


def test_closing_sessions_on_purpose_logs_no_error(
    clients: Clients, instant_app: AppCredentials
) -> None:
    """Regression: every writer and reader that closed normally logged an [error] line
    for its own connection's end."""
    log = Lines()
    db = clients.make(instant_app, verbose=True, logger=log)
    write_block(db.client.streams.write(client_id="logged"), clients.loop, ["a", "b"])
    early = reader(db, clients, client_id="logged")
    assert early.next() == "ab"
    early.close()
    assert reader(db, clients, client_id="logged").read_all() == "ab"
    assert [line for line in log.lines if line.startswith("[error]")] == []
    assert sum(line == "[sse][close]" for line in log.lines) == 3


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_streams_follow_the_server_through_a_restart(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer and a reader open while the server stops and restarts on the same data
    dir and port: the writer resumes (bytes written meanwhile are kept and sent), the
    reader resumes at its offset, and every byte arrives once.

    Regression: stream sessions reconnected at once, ignoring the server's ``retry:``
    hint, and the stopping server accepted them, which held its shutdown for the whole
    graceful timeout ("Cancel 2 running task(s)").
    """
    data_dir = tmp_path / "data"
    server = LocalServer(data_dir=data_dir).start()
    port = server.port
    clients = Clients(kind)
    restarted: list[LocalServer] = []
    try:
        db = clients.make(server.credentials)
        out = writer(db, clients, "restarted").enter()
        out.write("before ✓ ")
        tail = reader(db, clients, stream_id=out.stream_id)
        assert tail.read_until(len("before ✓ ")) == "before ✓ "

        with caplog.at_level(logging.WARNING):
            server.stop()
        assert not [r for r in caplog.records if "graceful shutdown" in r.getMessage()]
        out.write("while down 😀 ")
        restarted.append(LocalServer(data_dir=data_dir, port=port).start())
        out.write("after")
        out.close()
        assert tail.read_all() == "before ✓ while down 😀 after"
        assert out.writer.bytes_flushed == len("before ✓ while down 😀 after".encode())
        assert stream_row(db, "restarted")["done"] is True
    finally:
        clients.close()
        for started in [*restarted, server]:
            started.stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_writes_bigger_than_a_request_are_split_into_appends(kind: str) -> None:
    """Regression: one write (or the backlog resent after a resume) went as a single
    append in a single push, so a write bigger than the server's body limit was
    refused (413) again on every reconnect until the writer timed out, the stream left
    open."""
    text = "".join(chunks_of(1, 9 * 1024 * 1024 // len(PIECE.encode())))
    with LocalServer(max_body_bytes=6 * 1024 * 1024) as server:
        clients = Clients(kind)
        try:
            with TCPProxy.to(server.api_uri) as proxy:
                db = clients.make(server.credentials)
                through_proxy = clients.make(server.credentials, api_uri=proxy.api_uri)
                out = writer(through_proxy, clients, "big").enter()
                out.write("start ")
                assert proxy.cut() >= 1
                out.write(text)  # pushed while the session is gone: resent after resume
                out.close()
            assert reader(db, clients, client_id="big").read_all() == "start " + text
            assert stream_row(db, "big")["size"] == len(("start " + text).encode())
        finally:
            clients.close()


@pytest.mark.timeout(30)  # the bug was a retry loop until the writer timed out
def test_a_server_refusing_every_push_as_too_large_fails_the_writer_clearly(
    clients: Clients,
) -> None:
    with LocalServer(max_body_bytes=256 * 1024) as server:
        db = clients.make(server.credentials)
        with pytest.raises(InstantError, match=r"too large \(413"):
            write_block(db.client.streams.write(client_id="huge"), clients.loop, ["x" * 300_000])
        assert stream_row(db, "huge").get("done") is not True


STREAM_RULES = {
    "$streams": {
        "allow": {"create": "auth.id != null && ruleParams.ok == true", "view": "auth.id != null"}
    }
}


@pytest.mark.instant_app(rules=STREAM_RULES)
def test_impersonated_writers_and_readers_are_held_to_the_streams_rules(
    db: Driven, clients: Clients
) -> None:
    db.auth.create_token(email="writer@example.com")
    user = db.as_user(email="writer@example.com")
    guest = db.as_user(guest=True)
    write_block(
        user.client.streams.write(client_id="allowed", rule_params={"ok": True}),
        clients.loop,
        ["by the rules"],
    )
    assert reader(user, clients, client_id="allowed").read_all() == "by the rules"
    for who, params in [(user, None), (guest, {"ok": True})]:
        refused = who.client.streams.write(client_id="refused", rule_params=params)
        with pytest.raises(InstantPermissionError):
            write_block(refused, clients.loop, ["never stored"])
    with pytest.raises(InstantPermissionError):
        reader(guest, clients, client_id="allowed").next()
    rows = db.query({"$streams": {}})["$streams"]
    assert [row["clientId"] for row in rows] == ["allowed"]


def test_writers_and_readers_work_without_their_with_blocks(db: Driven, clients: Clients) -> None:
    plain = db.client.streams.write(client_id="no-with")
    run(clients.loop, plain.write("opened by the first write"))
    run(clients.loop, plain.close())
    run(clients.loop, plain.close())  # idempotent
    assert plain.error is None
    # The reader helpers iterate without entering the reader: it starts on the first
    # item and releases its session at the end of the stream.
    assert reader(db, clients, client_id="no-with").read_all() == "opened by the first write"
    assert stream_row(db, "no-with")["done"] is True
