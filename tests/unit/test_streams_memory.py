"""The writer's memory bound, pinned without a clock: a producer that writes whenever
the writer has room (always faster than the server), a pusher that sends one push at a
time, and a server that confirms each push only after the next two went out."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import weakref
from collections import deque
from dataclasses import dataclass

from instantdb._protocol.streams import (
    BLOCK_SIZE,
    PushBody,
    SessionIds,
    WriterMachine,
    push_request,
)
from tests.unit.test_streams_machines import flushed, started, writer
from tests.unit.test_streams_push import settings

SESSION = SessionIds("machine", "session", "5e000000-0000-4000-8000-00000000beef")
LIMIT = 512 * 1024
BUDGET = 256 * 1024  # the text one push carries at most
LAG = 2  # pushes the server has received but not yet confirmed
# About 10 KiB: multi-byte characters, and characters JSON escapes. (None outside the
# BMP: decoding them here takes 4 bytes a character, the test's cost, not the writer's.)
WRITE = 'naïve ✓ "quoted" \\ tab\t end\n' * 340


@dataclass
class Run:
    peak_buffered: int = 0
    peak_extra_held: int = 0  # held beyond the unconfirmed bytes
    pushes: int = 0


class Meter:
    """The peak of traced allocations on the writer's side only: what the test then
    allocates to check each push (joining and decoding it) is left out."""

    def __init__(self) -> None:
        self.baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        self.peak = 0

    def writer_side_done(self) -> None:
        self.peak = max(self.peak, tracemalloc.get_traced_memory()[1] - self.baseline)

    def test_side_done(self) -> None:
        tracemalloc.reset_peak()


def pump(total: int, meter: Meter | None = None) -> Run:
    """Writes ``total`` bytes through a writer limited to `LIMIT` and checks, at every
    step, what it holds and that the server receives exactly the stream."""
    w: WriterMachine = writer(buffer_limit=LIMIT)
    started(w)
    settings_ = settings()
    run = Run()
    unconfirmed: deque[int] = deque()
    written, received = hashlib.sha256(), hashlib.sha256()
    received_bytes = 0
    data = WRITE.encode()
    while w.flushed_offset < total:
        while w.has_room and w.total_bytes < total:
            w.write(WRITE)
            written.update(data)
            run.peak_buffered = max(run.peak_buffered, w.buffered)
            run.peak_extra_held = max(run.peak_extra_held, w.held_bytes - w.buffered)
        if w.has_unsent:
            push = w.take(BUDGET)
            texts = [weakref.ref(text) for message in push for text in message["chunks"]]
            body = push_request(settings_, SESSION, push).content
            del push
            if meter:
                meter.writer_side_done()
            sent = _send(body)
            assert all(text() is None for text in texts)  # nothing of a push outlives it
            for message in json.loads(sent)["messages"]:
                assert message["offset"] == received_bytes  # strict offsets
                chunk = "".join(message["chunks"]).encode()
                received.update(chunk)
                received_bytes += len(chunk)
            del sent, message, chunk
            if meter:
                meter.test_side_done()
            unconfirmed.append(received_bytes)
            run.pushes += 1
        if unconfirmed and (len(unconfirmed) > LAG or not w.has_unsent):
            w.on_message(flushed(unconfirmed.popleft()))
            assert w.held_bytes - w.buffered < BLOCK_SIZE  # confirmed bytes are let go
    assert received_bytes == w.total_bytes == total
    assert received.digest() == written.digest()
    assert w.held_bytes == 0
    if meter:
        meter.writer_side_done()
    return run


def _send(body: object) -> bytes:
    """What the transport does with a push body: read it once, piece by piece."""
    assert isinstance(body, PushBody)
    reader = body.open()
    pieces = list(iter(reader.read, b""))
    reader.close()
    return b"".join(pieces)


def test_a_producer_faster_than_the_server_waits_at_the_buffer_limit() -> None:
    total = len(WRITE.encode()) * 200  # about 2 MiB: several times the limit
    run = pump(total)
    # The limit, plus the one write that crossed it; and at most the confirmed start of
    # one block (small writes are gathered in blocks of BLOCK_SIZE).
    assert LIMIT <= run.peak_buffered <= LIMIT + len(WRITE.encode())
    assert run.peak_extra_held < BLOCK_SIZE
    assert run.pushes >= total // BUDGET  # no push carried more than its budget


def traced_peak(total: int) -> int:
    tracemalloc.start()
    try:
        meter = Meter()
        pump(total, meter)
        return meter.peak
    finally:
        tracemalloc.stop()


def test_what_a_writer_allocates_is_its_buffer_plus_one_push_whatever_the_stream_size() -> None:
    write = len(WRITE.encode())
    small, large = traced_peak(write * 150), traced_peak(write * 600)  # about 1.5 and 6 MiB
    escaped = len(json.dumps(WRITE, ensure_ascii=False).encode()) / write
    # The buffer (the limit, the write that crossed it, a partly confirmed block), one
    # push's escaped text, and a block being escaped (its copy and the one before it),
    # with 32 KiB for the small objects. A writer that made one more copy of what it
    # sends, or kept a push, would be over.
    bound = LIMIT + write + BLOCK_SIZE + escaped * BUDGET + 2 * BLOCK_SIZE + 32 * 1024
    assert small <= bound
    assert large <= bound
    assert abs(large - small) <= 16 * 1024  # it does not grow with the stream
