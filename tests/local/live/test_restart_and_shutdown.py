"""Across a restart: stream bytes are durable and their writer resumes; stopping a
server ends its open streams within a bounded time, so clients reconnect."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from instantdb_local import LocalServer, live
from tests.local.live.harness import WAIT, Session, client, eventually, query

STOP_BOUND_SECONDS = 15  # generous: LocalServer gives open requests two seconds


def test_stream_bytes_survive_a_restart_and_the_writer_resumes(tmp_path: Path):
    data = tmp_path / "data"
    token = str(uuid.uuid4())

    async def write(server: LocalServer) -> str:
        app = server.instance.default_app
        async with client() as http, Session(server.api_uri, http, app) as writer:
            await writer.send("start-stream", **{"client-id": "kept", "reconnect-token": token})
            stream_id = str((await writer.next_op("start-stream-ok"))["stream-id"])
            for chunk, offset in (("durable ", 0), ("bytes", 8)):
                fields = {"stream-id": stream_id, "chunks": [chunk], "offset": offset}
                await writer.send("append-stream", **fields)
                await writer.next_op("stream-flushed")
        return stream_id

    async def read_and_resume(server: LocalServer, stream_id: str) -> None:
        app = server.instance.default_app
        async with (
            client() as http,
            Session(server.api_uri, http, app) as reader,
            Session(server.api_uri, http, app) as writer,
        ):
            read = await reader.send("subscribe-stream", **{"client-id": "kept"})
            snapshot = await reader.next_op("stream-append")
            assert snapshot["stream-id"] == stream_id
            assert snapshot["offset"] == 0
            assert snapshot["content"] == ""
            parts = [(await http.get(f["url"])).content for f in snapshot["files"]]
            assert b"".join(parts) == b"durable bytes"

            await writer.send("start-stream", **{"client-id": "kept", "reconnect-token": token})
            resumed = await writer.next_op("start-stream-ok")
            assert (resumed["stream-id"], resumed["offset"]) == (stream_id, 13)
            fields = {"stream-id": stream_id, "chunks": ["!"], "offset": 13, "done": True}
            await writer.send("append-stream", **fields)
            assert (await writer.next_op("stream-flushed"))["done"] is True
            assert await reader.next_op("stream-append") == {
                "op": "stream-append",
                "client-event-id": read,
                "stream-id": stream_id,
                "client-id": "kept",
                "offset": 13,
                "content": "!",
            }
            assert (await reader.next_op("stream-append"))["done"] is True
            rows = await query(http, server.api_uri, app, {"$streams": {}})
            assert rows["$streams"][0]["size"] == 14

    with LocalServer(data_dir=data) as first:
        stream_id = asyncio.run(write(first))
    with LocalServer(data_dir=data) as second:
        asyncio.run(read_and_resume(second, stream_id))


def test_after_a_crash_unacknowledged_whole_characters_count_and_half_ones_go(tmp_path: Path):
    """A crash between writing bytes and acknowledging them leaves a prefix of what the
    writer sent, maybe ending inside a character: the resumed stream starts after the
    last whole one, so the writer resends exactly the rest."""
    data = tmp_path / "data"
    token = str(uuid.uuid4())

    async def write(server: LocalServer) -> str:
        app = server.instance.default_app
        async with client() as http, Session(server.api_uri, http, app) as writer:
            await writer.send("start-stream", **{"client-id": "torn", "reconnect-token": token})
            stream_id = str((await writer.next_op("start-stream-ok"))["stream-id"])
            fields = {"stream-id": stream_id, "chunks": ["acknowledged"], "offset": 0}
            await writer.send("append-stream", **fields)
            await writer.next_op("stream-flushed")
        return stream_id

    async def resume(server: LocalServer, stream_id: str) -> None:
        app = server.instance.default_app
        async with client() as http, Session(server.api_uri, http, app) as writer:
            await writer.send("start-stream", **{"client-id": "torn", "reconnect-token": token})
            resumed = await writer.next_op("start-stream-ok")
            assert resumed["offset"] == len("acknowledged ✓".encode())
            fields = {"stream-id": stream_id, "offset": resumed["offset"], "done": True}
            await writer.send("append-stream", **fields, chunks=["€!"])
            assert (await writer.next_op("stream-flushed"))["done"] is True
            await writer.send("subscribe-stream", **{"stream-id": stream_id})
            files = (await writer.next_op("stream-append"))["files"]
            text = b"".join([(await http.get(f["url"])).content for f in files]).decode()
            assert text == "acknowledged ✓€!"

    with LocalServer(data_dir=data) as first:
        stream_id = asyncio.run(write(first))
    # What the crash left: two whole characters the server never acknowledged, then
    # the first two bytes of a third.
    [part] = data.rglob(f"streams/{stream_id}/0")
    with part.open("ab") as file:
        file.write(" ✓".encode() + "€".encode()[:2])
    with LocalServer(data_dir=data) as second:
        asyncio.run(resume(second, stream_id))


def test_stopping_a_local_server_ends_its_open_streams(tmp_path: Path):
    server = LocalServer(data_dir=tmp_path / "data").start()

    async def main() -> None:
        app = server.instance.default_app
        async with client() as http:
            async with Session(server.api_uri, http, app) as session:
                started = time.monotonic()
                await asyncio.to_thread(server.stop)
                await asyncio.wait_for(session.stream.ended.wait(), WAIT)
                assert time.monotonic() - started < STOP_BOUND_SECONDS
            # The server comes back on its data dir; a new connection is a new session.
            server.start()
            async with Session(server.api_uri, http, server.instance.default_app) as again:
                assert again.id != session.id

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_close_connections_ends_streams_at_once_and_the_hub_keeps_serving(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            async with Session(server.base_url, http, app) as session:
                live.close_connections(server.app)
                await asyncio.wait_for(session.stream.ended.wait(), WAIT)
                await eventually(lambda: len(server.hub.sessions) == 0)
            async with Session(server.base_url, http, app) as again:
                await again.send("join-room", **{"room-id": "r"})
                await again.next_op("join-room-ok")

    asyncio.run(main())
