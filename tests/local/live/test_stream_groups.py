"""Appends queued together are stored together: one durable write and one
``stream-flushed`` per group, while each append is still checked as if alone."""

from __future__ import annotations

import asyncio
import errno
import uuid
from typing import Any

import pytest

from instantdb_local.live._stream_store import PART_LIMIT, StreamStore
from tests.local.live.harness import Session, client


def append(event: str, stream_id: str, chunks: Any, offset: Any, **extra: Any) -> dict[str, Any]:
    return {
        "client-event-id": event,
        "op": "append-stream",
        "stream-id": stream_id,
        "chunks": chunks,
        "offset": offset,
        "done": False,
        **extra,
    }


async def started(writer: Session, client_id: str) -> str:
    await writer.send(
        "start-stream", **{"client-id": client_id, "reconnect-token": str(uuid.uuid4())}
    )
    return str((await writer.next_op("start-stream-ok"))["stream-id"])


@pytest.fixture
def store_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pieces each durable write of the store got."""
    calls: list[int] = []
    real = StreamStore.append

    def counted(self: StreamStore, stream_id: str, pieces: Any) -> None:
        calls.append(len(pieces))
        real(self, stream_id, pieces)

    monkeypatch.setattr(StreamStore, "append", counted)
    return calls


def test_a_push_of_several_appends_is_stored_once_and_acknowledged_once(
    server: Any, store_calls: list[int]
) -> None:
    app = server.new_app()

    async def main() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as writer,
            Session(server.base_url, http, app) as reader,
        ):
            stream_id = await started(writer, "grouped")
            await reader.send("subscribe-stream", **{"stream-id": stream_id})
            assert (await reader.next_op("stream-append"))["content"] == ""
            response = await writer.push(
                append("a1", stream_id, ["Hello"], 0),
                append("a2", stream_id, [" wör", "ld"], 5),
                append("a3", stream_id, ["!"], 12),
            )
            assert response.status_code == 200
            assert await writer.next_op("stream-flushed") == {
                "op": "stream-flushed",
                "stream-id": stream_id,
                "offset": 13,
                "done": False,
            }
            await writer.stream.expect_quiet(0.2)  # one acknowledgement for the group
            assert store_calls == [1]  # one part touched, one durable write
            live = await reader.next_op("stream-append")
            assert (live["offset"], live["content"]) == (0, "Hello wörld!")
            await reader.stream.expect_quiet(0.2)

            await writer.send(
                "append-stream",
                **{"stream-id": stream_id, "chunks": [], "offset": 13, "done": True},
            )
            assert (await writer.next_op("stream-flushed"))["done"] is True
            read = await reader.send("subscribe-stream", **{"stream-id": stream_id})
            reply = await reader.next_op("stream-append")
            while reply["client-event-id"] != read:  # the live subscription's completion
                reply = await reader.next_op("stream-append")
            fetched = [(await http.get(f["url"])).content for f in reply["files"]]
            assert b"".join(fetched) == "Hello wörld!".encode()

    asyncio.run(main())


def test_each_append_of_a_group_is_checked_as_if_alone(server: Any) -> None:
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as writer:
            stream_id = await started(writer, "checked")
            await writer.push(
                append("ok1", stream_id, ["ab"], 0),
                append("replayed", stream_id, ["ab"], 0),
                append("malformed", stream_id, "not a list", 2),
                append("ok2", stream_id, ["cd"], 2),
                append("end", stream_id, ["e"], 4, done=True),
                append("late", stream_id, ["f"], 5),
            )
            replayed = await writer.next_op("error")
            assert replayed["client-event-id"] == "replayed"
            assert replayed["message"].endswith("Invalid offset for stream.")
            assert (replayed["hint"]["expected-offset"], replayed["hint"]["offset"]) == (2, 0)
            malformed = await writer.next_op("error")
            assert malformed["client-event-id"] == "malformed"
            assert malformed["message"].endswith("chunks must be a list of strings.")
            assert await writer.next_op("stream-flushed") == {
                "op": "stream-flushed",
                "stream-id": stream_id,
                "offset": 5,
                "done": True,
            }
            late = await writer.next_op("error")
            assert late["client-event-id"] == "late"
            assert late["message"].endswith("Stream is completed.")

    asyncio.run(main())


def test_a_group_ends_at_any_other_message(server: Any, store_calls: list[int]) -> None:
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as writer:
            first = await started(writer, "first")
            second = await started(writer, "second")
            await writer.push(
                append("a", first, ["a"], 0),
                append("b", second, ["b"], 0),
                {"client-event-id": "u", "op": "unsubscribe-stream", "subscribe-event-id": "x"},
                append("c", first, ["c"], 1),
            )
            assert await writer.next_op("stream-flushed") == {
                "op": "stream-flushed",
                "stream-id": first,
                "offset": 1,
                "done": False,
            }
            assert (await writer.next_op("stream-flushed"))["stream-id"] == second
            assert (await writer.next_op("error"))["client-event-id"] == "u"
            flushed = await writer.next_op("stream-flushed")
            assert (flushed["stream-id"], flushed["offset"]) == (first, 2)
            assert store_calls == [1, 1, 1]

    asyncio.run(main())


def test_a_storage_failure_fails_the_whole_group(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = server.new_app()
    token = str(uuid.uuid4())

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as writer:
            await writer.send("start-stream", **{"client-id": "failing", "reconnect-token": token})
            stream_id = (await writer.next_op("start-stream-ok"))["stream-id"]

            def broken(*args: Any) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            with monkeypatch.context() as patch:
                patch.setattr(StreamStore, "append", broken)
                await writer.push(
                    append("a", stream_id, ["lost"], 0), append("b", stream_id, [" too"], 4)
                )
                assert await writer.next_op("append-failed") == {
                    "op": "append-failed",
                    "stream-id": stream_id,
                }
                await writer.stream.expect_quiet(0.2)
            await writer.send("start-stream", **{"client-id": "failing", "reconnect-token": token})
            assert (await writer.next_op("start-stream-ok"))["offset"] == 0

    asyncio.run(main())


def test_parts_close_between_the_chunks_of_a_group(server: Any) -> None:
    app = server.new_app()
    size = 600 * 1024
    chunks = [letter * size for letter in "xyz"]

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as writer:
            stream_id = await started(writer, "parts")
            await writer.push(
                *[append(f"a{n}", stream_id, [chunk], n * size) for n, chunk in enumerate(chunks)],
                append("end", stream_id, [], 3 * size, done=True),
            )
            assert (await writer.next_op("stream-flushed"))["offset"] == 3 * size
            await writer.send("subscribe-stream", **{"stream-id": stream_id})
            files = (await writer.next_op("stream-append"))["files"]
            # A part closes once it holds the limit, between chunks, never inside one.
            assert [f["size"] for f in files] == [2 * size, size]
            assert 2 * size >= PART_LIMIT
            fetched = [(await http.get(f["url"])).content for f in files]
            assert fetched == ["".join(chunks[:2]).encode(), chunks[2].encode()]

    asyncio.run(main())
