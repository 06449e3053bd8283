"""db.streams through both clients, against a scripted stream server on MockTransport."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

import httpx
import pytest

from instantdb import InstantError, InstantTimeoutError, InstantValueError
from tests.unit.live_fakes import QueueBody, event, sse_response
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, ClientHarness

S = "5e000000-0000-4000-8000-000000000001"
FILE_URL = "https://files.example.test/part/0"


class FakeStreamServer:
    """One stream, served over any number of sessions, with knobs to misbehave."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: list[queue.Queue[bytes | None]] = []
        self.content = bytearray()
        self.durable = 0
        self.done = False
        self.abort_reason: str | None = None
        self.pushes: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.confirm_starts = True
        self.drop_after_appends: int | None = None
        self.file_bytes: bytes | None = None  # serve this much as a finished file
        self.cut_reads_after: int | None = None  # live content sent before going quiet
        self.ack_appends = False  # send stream-flushed after each append
        self.appends = 0
        # Set to an event: the next push with an append waits until it is set.
        self.hold_next_append: threading.Event | asyncio.Event | None = None
        self.holding = threading.Event()  # a push is being held

    def handler(self, request: httpx.Request) -> Any:
        gate = self.hold_next_append
        if gate is not None and request.url.path == "/admin/sse/push":
            ops = [m["op"] for m in json.loads(request.content)["messages"]]
            if "append-stream" in ops:
                self.hold_next_append = None
                self.holding.set()
                if isinstance(gate, asyncio.Event):
                    return self._answer_after(gate, request)
                assert gate.wait(10), "the test never released the held push"
        return self._answer(request)

    async def _answer_after(self, gate: asyncio.Event, request: httpx.Request) -> httpx.Response:
        await asyncio.wait_for(gate.wait(), 10)
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if request.url.path == "/admin/sse":
                source: queue.Queue[bytes | None] = queue.Queue()
                self.sessions.append(source)
                n = len(self.sessions)
                init = {
                    "op": "sse-init",
                    "machine-id": "M",
                    "session-id": f"s{n}",
                    "sse-token": f"token-{n}",
                }
                source.put(event(init))
                return sse_response(QueueBody(source))
            if request.url.path == "/admin/sse/push":
                body = json.loads(request.content)
                self.pushes.append(body)
                source = self.sessions[int(body["session_id"][1:]) - 1]
                for message in body["messages"]:
                    self.on_message(source, message)
                return httpx.Response(200, json={})
            if str(request.url) == FILE_URL and self.file_bytes is not None:
                return httpx.Response(200, content=self.file_bytes)
        return httpx.Response(404, json={"message": "no such route"})

    def on_message(self, source: queue.Queue[bytes | None], message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "start-stream":
            if not self.confirm_starts:
                return
            del self.content[self.durable :]  # the server rebuilds from durable parts
            source.put(
                event(
                    {
                        "op": "start-stream-ok",
                        "client-event-id": message["client-event-id"],
                        "client-id": message["client-id"],
                        "stream-id": S,
                        "offset": self.durable,
                    }
                )
            )
        elif op == "append-stream":
            if message["offset"] != len(self.content):
                source.put(
                    event(
                        {
                            "op": "error",
                            "status": 400,
                            "type": "validation-failed",
                            "client-event-id": message["client-event-id"],
                            "message": "Invalid offset for stream.",
                            "original-event": {"op": "append-stream"},
                        }
                    )
                )
                return
            self.content += "".join(message["chunks"]).encode()
            self.appends += 1
            if self.drop_after_appends is not None and self.appends >= self.drop_after_appends:
                self.drop_after_appends = None
                source.put(None)  # the connection drops; nothing was made durable
            elif message.get("done"):
                self.done = True
                self.durable = len(self.content)
                self.abort_reason = message.get("abort-reason")
                source.put(
                    event(
                        {
                            "op": "stream-flushed",
                            "stream-id": S,
                            "offset": self.durable,
                            "done": True,
                        }
                    )
                )
            elif self.ack_appends:
                self.durable = len(self.content)
                source.put(event(flushed(self.durable)))
        elif op == "subscribe-stream":
            offset = message.get("offset", 0)
            reply: dict[str, Any] = {
                "op": "stream-append",
                "client-event-id": message["client-event-id"],
                "stream-id": S,
                "client-id": "c1",
            }
            if self.file_bytes is not None:
                reply.update(
                    offset=0, files=[{"id": "f", "size": len(self.file_bytes), "url": FILE_URL}]
                )
                start = len(self.file_bytes)
            else:
                reply["offset"] = offset
                start = offset
            text = bytes(self.content[start:])
            if self.cut_reads_after is not None:
                text = text[: self.cut_reads_after]
                self.cut_reads_after = None
                reply["content"] = text.decode()
                source.put(event(reply))
                return  # nothing more on this session: the test drops it
            reply["content"] = text.decode()
            if self.done:
                reply["done"] = True
                reply["abort-reason"] = self.abort_reason
            source.put(event(reply))


def flushed(offset: int) -> dict[str, Any]:
    return {"op": "stream-flushed", "stream-id": S, "offset": offset, "done": False}


@pytest.fixture
def server(harness: ClientHarness) -> FakeStreamServer:
    fake = FakeStreamServer()
    harness.api.default = fake.handler
    return fake


def run(harness: ClientHarness, sync: Any, asynchronous: Any) -> Any:
    if harness.loop is None:
        return sync()
    return harness.loop.run_until_complete(asyncio.wait_for(asynchronous(), 20))


def write_all(harness: ClientHarness, db: Any, chunks: list[Any], **kwargs: Any) -> Any:
    def sync() -> Any:
        with db.streams.write(client_id="c1", **kwargs) as writer:
            sid = writer.stream_id
            for chunk in chunks:
                writer.write(chunk)
        return sid, writer

    async def asynchronous() -> Any:
        async with db.streams.write(client_id="c1", **kwargs) as writer:
            sid = await writer.stream_id
            for chunk in chunks:
                await writer.write(chunk)
        return sid, writer

    return run(harness, sync, asynchronous)


def read_all(harness: ClientHarness, db: Any, **kwargs: Any) -> tuple[list[Any], Any]:
    def sync() -> Any:
        with db.streams.read(**kwargs) as reader:
            return list(reader), reader

    async def asynchronous() -> Any:
        async with db.streams.read(**kwargs) as reader:
            return [chunk async for chunk in reader], reader

    return run(harness, sync, asynchronous)


def messages(server: FakeStreamServer) -> list[dict[str, Any]]:
    return [m for push in server.pushes for m in push["messages"]]


def test_write_three_chunks(harness: ClientHarness, server: FakeStreamServer) -> None:
    db = harness.make()
    sid, writer = write_all(harness, db, ["Hello", " wor", "ld!"])
    assert sid == S
    assert server.content == b"Hello world!"
    assert server.done
    assert writer.error is None
    assert writer.bytes_flushed == writer.bytes_written == 12
    sent = messages(server)
    assert sent[0]["op"] == "start-stream"
    # However the writes were batched, the appends follow each other byte for byte and
    # the last one ends the stream.
    offset = 0
    for append in sent[1:]:
        assert append["op"] == "append-stream"
        assert append["offset"] == offset
        offset += len("".join(append["chunks"]).encode())
    assert offset == 12
    assert [m["done"] for m in sent[1:]] == [False] * (len(sent) - 2) + [True]
    push = server.requests[1]
    assert push.url.params["app_id"] == APP_ID
    assert json.loads(push.content)["sse_token"] == "token-1"
    opened = server.requests[0]
    assert opened.url.params["app_id"] == APP_ID
    assert opened.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"


def test_writes_return_during_a_push_and_go_together_in_the_next(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    db = harness.make()
    chunks = ["b", "cd", "€", "f"]

    def sync() -> None:
        server.hold_next_append = gate = threading.Event()
        with db.streams.write(client_id="c1") as writer:
            assert writer.stream_id == S
            writer.write("a")
            assert server.holding.wait(10)
            for chunk in chunks:
                writer.write(chunk)  # returns although the push of "a" is held
            gate.set()

    async def asynchronous() -> None:
        server.hold_next_append = gate = asyncio.Event()
        async with db.streams.write(client_id="c1") as writer:
            await writer.stream_id
            await writer.write("a")
            assert server.holding.is_set()  # the push started before write returned
            for chunk in chunks:
                await writer.write(chunk)
            gate.set()

    run(harness, sync, asynchronous)
    appends = [m for m in messages(server) if m["op"] == "append-stream"]
    assert [(m["chunks"], m["offset"]) for m in appends[:2]] == [(["a"], 0), (["bcd€f"], 1)]
    assert server.content == "abcd€f".encode()
    assert server.done


def test_a_writer_holds_a_bounded_buffer_and_waits_for_room(
    harness: ClientHarness, server: FakeStreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("instantdb._protocol.streams.BUFFER_LIMIT", 10)
    db = harness.make()

    def sync() -> Any:
        writer = db.streams.write(client_id="c1", timeout=0.3)
        writer.write("12345")
        writer.write("678901")  # crosses the limit: taken whole
        with pytest.raises(InstantTimeoutError, match="holds at most 10 unconfirmed"):
            writer.write("never taken")
        server.sessions[-1].put(event(flushed(11)))
        writer.write("!")  # room again once the server confirmed
        writer.close()
        return writer

    async def asynchronous() -> Any:
        writer = db.streams.write(client_id="c1", timeout=0.3)
        await writer.write("12345")
        await writer.write("678901")
        with pytest.raises(InstantTimeoutError, match="holds at most 10 unconfirmed"):
            await writer.write("never taken")
        server.sessions[-1].put(event(flushed(11)))
        await writer.write("!")
        await writer.close()
        return writer

    writer = run(harness, sync, asynchronous)
    assert writer.error is None
    assert writer.bytes_written == 12
    assert server.content == b"12345678901!"


def test_a_fast_producer_never_holds_more_than_the_limit(
    harness: ClientHarness, server: FakeStreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("instantdb._protocol.streams.BUFFER_LIMIT", 64)
    server.ack_appends = True
    db = harness.make()
    peak = 0

    def sync() -> Any:
        nonlocal peak
        with db.streams.write(client_id="c1") as writer:
            for n in range(200):
                writer.write(f"{n:04d}|")
                peak = max(peak, writer.bytes_written - writer.bytes_flushed)
        return writer

    async def asynchronous() -> Any:
        nonlocal peak
        async with db.streams.write(client_id="c1") as writer:
            for n in range(200):
                await writer.write(f"{n:04d}|")
                peak = max(peak, writer.bytes_written - writer.bytes_flushed)
        return writer

    writer = run(harness, sync, asynchronous)
    assert peak <= 64 + 5  # the limit, plus the one write that crossed it
    assert server.content.decode() == "".join(f"{n:04d}|" for n in range(200))
    assert writer.bytes_flushed == 1000


def test_writer_that_exits_at_once_still_ends_the_stream(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    db = harness.make()

    def sync() -> None:
        with db.streams.write(client_id="c1"):
            pass

    async def asynchronous() -> None:
        async with db.streams.write(client_id="c1"):
            pass

    run(harness, sync, asynchronous)
    assert server.done
    assert messages(server)[-1]["done"] is True


def test_block_that_raises_aborts_the_stream_and_keeps_its_exception(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    db = harness.make()

    def sync() -> None:
        with db.streams.write(client_id="c1") as writer:
            writer.write("partial")
            raise RuntimeError("model crashed")

    async def asynchronous() -> None:
        async with db.streams.write(client_id="c1") as writer:
            await writer.write("partial")
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        run(harness, sync, asynchronous)
    assert server.done
    assert server.abort_reason == "model crashed"
    assert server.content == b"partial"


def test_unconfirmed_start_times_out_clearly(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    server.confirm_starts = False
    db = harness.make()

    def sync() -> None:
        with db.streams.write(client_id="c1", timeout=0.3) as writer:
            writer.write("x")

    async def asynchronous() -> None:
        async with db.streams.write(client_id="c1", timeout=0.3) as writer:
            await writer.write("x")

    with pytest.raises(InstantTimeoutError, match="did not confirm the start"):
        run(harness, sync, asynchronous)


def test_close_raises_when_the_end_is_not_confirmed(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    server.confirm_starts = False
    db = harness.make()

    def sync() -> None:
        writer = db.streams.write(client_id="c1", timeout=0.3)
        with writer:
            pass

    async def asynchronous() -> None:
        async with db.streams.write(client_id="c1", timeout=0.3):
            pass

    with pytest.raises(InstantTimeoutError, match="never confirmed"):
        run(harness, sync, asynchronous)


def test_writer_resumes_after_the_session_drops(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    server.drop_after_appends = 1
    db = harness.make()
    write_all(harness, db, ["Hello", " wor", "ld!", "?"])
    assert server.content == b"Hello world!?"
    assert server.done
    starts = [m for m in messages(server) if m["op"] == "start-stream"]
    assert len(starts) == 2
    assert starts[0]["reconnect-token"] == starts[1]["reconnect-token"]
    assert len(server.sessions) == 2


def test_bytes_writes_may_split_characters(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    db = harness.make()
    data = "naïve €".encode()
    write_all(harness, db, [data[:3], data[3:8], data[8:]])
    assert server.content == data


def test_read_from_a_byte_offset(harness: ClientHarness, server: FakeStreamServer) -> None:
    server.content = bytearray(b"Hello world!")
    server.durable = 12
    server.done = True
    db = harness.make()
    chunks, reader = read_all(harness, db, client_id="c1", byte_offset=5)
    assert "".join(chunks) == " world!"
    assert reader.stream_id == S
    assert reader.done
    assert reader.byte_offset == 12
    [subscribe] = messages(server)  # no unsubscribe after the end
    assert subscribe["offset"] == 5


def test_read_files_then_content_discarding_the_overlap(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    server.file_bytes = "Hello wörld".encode()
    server.content = bytearray("Hello wörld and more".encode())
    server.done = True
    server.abort_reason = "stopped"
    db = harness.make()
    chunks, reader = read_all(harness, db, stream_id=S, byte_offset=7)
    assert "".join(chunks) == "örld and more"
    assert reader.abort_reason == "stopped"
    file_request = next(r for r in server.requests if str(r.url) == FILE_URL)
    assert "authorization" not in file_request.headers


def test_reader_resumes_after_a_drop_without_duplicates(
    harness: ClientHarness, server: FakeStreamServer
) -> None:
    text = "".join(f"line {n}: ünïcode\n" for n in range(20))
    server.content = bytearray(text.encode())
    server.durable = len(server.content)
    server.done = True
    server.cut_reads_after = 37  # inside a two-byte character
    db = harness.make()

    def sync() -> Any:
        with db.streams.read(client_id="c1") as reader:
            first = next(reader)
            server.sessions[-1].put(None)  # the connection drops once that much was read
            return [first, *reader], reader

    async def asynchronous() -> Any:
        async with db.streams.read(client_id="c1") as reader:
            first = await anext(reader)
            server.sessions[-1].put(None)
            return [first, *[chunk async for chunk in reader]], reader

    chunks, reader = run(harness, sync, asynchronous)
    assert "".join(chunks) == text
    assert reader.byte_offset == len(text.encode())
    subscribes = [m for m in messages(server) if m["op"] == "subscribe-stream"]
    assert [m.get("offset") for m in subscribes] == [None, 37]


def test_read_as_bytes(harness: ClientHarness, server: FakeStreamServer) -> None:
    server.content = bytearray("€uro".encode())
    server.done = True
    db = harness.make()
    chunks, _ = read_all(harness, db, client_id="c1", as_bytes=True)
    assert b"".join(chunks) == "€uro".encode()


def test_read_needs_an_id_and_a_valid_offset(harness: ClientHarness) -> None:
    db = harness.make()
    with pytest.raises(InstantValueError, match=r"stream_id=\.\.\. .* or client_id"):
        db.streams.read()
    with pytest.raises(InstantValueError, match=">= 0"):
        db.streams.read(client_id="c1", byte_offset=-1)
    with pytest.raises(InstantError, match="client_id"):
        db.streams.write(client_id="")
    assert harness.api.requests == []


def test_sync_sessions_leave_no_thread_behind(server: FakeStreamServer) -> None:
    harness = ClientHarness("sync")
    harness.api.default = server.handler
    try:
        db = harness.make()
        write_all(harness, db, ["a", "b"])
        server.done = True
        read_all(harness, db, client_id="c1")
        alive = [t.name for t in threading.enumerate() if t.name.startswith("instantdb-stream")]
        assert alive == []
    finally:
        harness.shutdown()
