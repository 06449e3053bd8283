"""Streams over ``/admin/sse`` + push (live-protocol section 2 and vector 6.2): every
op and error text, durable acknowledgements, readers of finished and live streams,
resuming writers, file URLs, ``$streams`` rows and permissions."""

from __future__ import annotations

import asyncio
import errno
import threading
import uuid
from typing import Any

import httpx

from instantdb_local.live._stream_store import PART_LIMIT, StreamStore
from tests.local.live.harness import WAIT, Session, client, eventually, query


async def start(writer: Session, client_id: str, token: str, **extra: Any) -> dict[str, Any]:
    await writer.send("start-stream", **{"client-id": client_id, "reconnect-token": token}, **extra)
    return await writer.next()


async def append(
    writer: Session, stream_id: str, chunks: list[str], offset: int, **extra: Any
) -> str:
    fields = {"stream-id": stream_id, "chunks": chunks, "offset": offset, "done": False, **extra}
    return await writer.send("append-stream", **fields)


def test_vector_three_chunks_then_read_from_byte_5(server):
    app = server.new_app()
    token = str(uuid.uuid4())

    async def main() -> None:
        async with client() as http:
            async with Session(server.base_url, http, app) as writer:
                started = await writer.send(
                    "start-stream", **{"client-id": "c1", "reconnect-token": token}
                )
                ok = await writer.next_op("start-stream-ok")
                stream_id = ok["stream-id"]
                assert ok == {
                    "op": "start-stream-ok",
                    "client-event-id": started,
                    "client-id": "c1",
                    "stream-id": stream_id,
                    "offset": 0,
                }
                for chunks, offset, end in ((["Hello"], 0, 5), ([" wor"], 5, 9), (["ld!"], 9, 12)):
                    await append(writer, stream_id, chunks, offset)
                    # Every append is on disk before it is acknowledged.
                    assert await writer.next_op("stream-flushed") == {
                        "op": "stream-flushed",
                        "stream-id": stream_id,
                        "offset": end,
                        "done": False,
                    }

                replay = await append(writer, stream_id, [" wor"], 5)
                error = await writer.next_op("error")
                assert error["status"] == 400
                assert error["client-event-id"] == replay
                assert error["type"] == "validation-failed"
                assert error["message"] == (
                    "Validation failed for append-stream: Invalid offset for stream."
                )
                assert error["hint"]["expected-offset"] == 12
                assert error["hint"]["offset"] == 5
                assert error["original-event"]["op"] == "append-stream"

                await writer.send(
                    "append-stream",
                    **{"stream-id": stream_id, "chunks": [], "offset": 12, "done": True},
                )
                assert await writer.next_op("stream-flushed") == {
                    "op": "stream-flushed",
                    "stream-id": stream_id,
                    "offset": 12,
                    "done": True,
                }

            rows = await query(
                http, server.base_url, app, {"$streams": {"$": {"where": {"clientId": "c1"}}}}
            )
            [row] = rows["$streams"]
            assert row["id"] == stream_id
            assert row["done"] is True
            assert row["size"] == 12
            assert row["clientId"] == "c1"
            assert row["machineId"] == writer.init["machine-id"]
            assert len(row["hashedReconnectToken"]) == 64

            async with Session(server.base_url, http, app) as reader:
                read = await reader.send("subscribe-stream", **{"client-id": "c1", "offset": 5})
                reply = await reader.next_op("stream-append")
                [file] = reply.pop("files")
                assert reply == {
                    "op": "stream-append",
                    "client-event-id": read,
                    "stream-id": stream_id,
                    "client-id": "c1",
                    "offset": 0,
                    "done": True,
                    "abort-reason": None,
                }
                assert file["size"] == 12
                assert uuid.UUID(file["id"])
                # A plain GET with no credentials: the URL is the credential.
                async with httpx.AsyncClient() as anonymous:
                    fetched = await anonymous.get(file["url"])
                assert fetched.status_code == 200
                assert fetched.content == b"Hello world!"
                assert fetched.content[5 - reply["offset"] :] == b" world!"

                await reader.send("unsubscribe-stream", **{"subscribe-event-id": read})
                missing = await reader.next_op("error")
                assert missing["message"] == (
                    "Validation failed for unsubscribe-stream: Stream subscription is missing."
                )

    asyncio.run(main())


def test_live_reader_gets_a_snapshot_then_appends_then_completion(server):
    app = server.new_app()

    async def main() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as writer,
            Session(server.base_url, http, app) as reader,
        ):
            stream_id = (await start(writer, "c1", str(uuid.uuid4())))["stream-id"]
            for chunks, offset in ((["Hello"], 0), ([" wor"], 5), (["ld!"], 9)):
                await append(writer, stream_id, chunks, offset)
                await writer.next_op("stream-flushed")

            by_id = await reader.send("subscribe-stream", **{"stream-id": stream_id, "offset": 5})
            # "Hello" ends at 5, so it is skipped whole.
            assert await reader.next_op("stream-append") == {
                "op": "stream-append",
                "client-event-id": by_id,
                "stream-id": stream_id,
                "client-id": "c1",
                "offset": 5,
                "files": [],
                "content": " world!",
            }
            from_six = await reader.send("subscribe-stream", **{"client-id": "c1", "offset": 6})
            # Byte 6 is inside " wor": the chunk is not split, the reader discards.
            snapshot = await reader.next_op("stream-append")
            assert (snapshot["client-event-id"], snapshot["offset"]) == (from_six, 5)
            assert snapshot["content"] == " world!"

            await append(writer, stream_id, ["?"], 12)
            for subscribe_id in (by_id, from_six):
                assert await reader.next_op("stream-append") == {
                    "op": "stream-append",
                    "client-event-id": subscribe_id,
                    "stream-id": stream_id,
                    "client-id": "c1",
                    "offset": 12,
                    "content": "?",
                }
            await reader.send("unsubscribe-stream", **{"subscribe-event-id": from_six})
            await writer.send(
                "append-stream",
                **{"stream-id": stream_id, "chunks": [], "offset": 13, "done": True},
            )
            assert await reader.next_op("stream-append") == {
                "op": "stream-append",
                "client-event-id": by_id,
                "stream-id": stream_id,
                "client-id": "c1",
                "done": True,
            }
            await reader.stream.expect_quiet(0.3)

    asyncio.run(main())


def test_writer_errors(server):
    app = server.new_app()
    token = str(uuid.uuid4())

    async def main() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as writer,
            Session(server.base_url, http, app) as other,
        ):

            async def error_of(session: Session, op: str, **fields: Any) -> dict[str, Any]:
                event_id = await session.send(op, **fields)
                event = await session.next_op("error")
                assert event["client-event-id"] == event_id
                assert event["original-event"]["op"] == op
                assert event["status"] == 400
                return event

            for fields, text in (
                ({"client-id": " ", "reconnect-token": token}, "client-id must be"),
                ({"client-id": "c", "reconnect-token": "secret-ish"}, "reconnect-token must be"),
                ({"client-id": "c", "reconnect-token": token, "rule-params": 1}, "rule-params"),
            ):
                error = await error_of(writer, "start-stream", **fields)
                assert error["message"].startswith("Validation failed for start-stream: " + text)
            # The reconnect token is a credential: not echoed back.
            assert "secret-ish" not in str(error)

            stream_id = (await start(writer, "c", token))["stream-id"]
            wrong = await error_of(
                other, "start-stream", **{"client-id": "c", "reconnect-token": str(uuid.uuid4())}
            )
            assert wrong["message"] == (
                "Validation failed for start-stream: A stream with that clientId already "
                "exists. Reconnect token is invalid."
            )
            not_mine = await error_of(
                other, "append-stream", **{"stream-id": stream_id, "chunks": ["x"], "offset": 0}
            )
            assert not_mine["message"] == "Validation failed for append-stream: Stream is missing."
            unknown = await error_of(
                writer, "append-stream", **{"stream-id": "nope", "chunks": [], "offset": 0}
            )
            assert unknown["message"].endswith("Stream is missing.")
            for fields, text in (
                ({"chunks": "x", "offset": 0}, "chunks must be a list of strings."),
                ({"chunks": [1], "offset": 0}, "chunks must be a list of strings."),
                ({"chunks": [], "offset": -1}, "offset must be a non-negative integer."),
                ({"chunks": [], "offset": True}, "offset must be a non-negative integer."),
                ({"chunks": [], "offset": 0, "done": "yes"}, "done must be true or false."),
            ):
                error = await error_of(
                    writer, "append-stream", **{"stream-id": stream_id, **fields}
                )
                assert text in error["message"]
            # A lone surrogate is no text: the whole push is malformed JSON (as on every
            # route), before any message of it runs.
            refused = await writer.push(
                {"op": "append-stream", "stream-id": stream_id, "chunks": ["\ud800"], "offset": 0}
            )
            assert (refused.status_code, refused.text) == (400, "Malformed JSON in request body.")

            await writer.send(
                "append-stream",
                **{"stream-id": stream_id, "chunks": ["ab"], "offset": 0, "done": True},
            )
            assert (await writer.next_op("stream-flushed"))["done"] is True
            completed = await error_of(
                writer, "append-stream", **{"stream-id": stream_id, "chunks": ["c"], "offset": 2}
            )
            assert (
                completed["message"] == "Validation failed for append-stream: Stream is completed."
            )
            closed = await error_of(
                other, "start-stream", **{"client-id": "c", "reconnect-token": token}
            )
            assert closed["message"] == "Validation failed for start-stream: Stream is closed."

    asyncio.run(main())


def test_reader_errors(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as reader:
            cases = [
                ({}, "Must provide either a stream-id or a client-id"),
                ({"client-id": "never-written"}, "Stream is missing."),
                ({"stream-id": str(uuid.uuid4())}, "Stream is missing."),
                ({"stream-id": "not-a-uuid"}, "Stream is missing."),
                ({"client-id": "c", "offset": -3}, "offset must be a non-negative integer."),
            ]
            for fields, text in cases:
                event_id = await reader.send("subscribe-stream", **fields)
                error = await reader.next_op("error")
                assert error["client-event-id"] == event_id
                assert error["original-event"]["op"] == "subscribe-stream"
                assert error["message"] == f"Validation failed for subscribe-stream: {text}"
            await reader.send("unsubscribe-stream", **{"subscribe-event-id": "nothing"})
            error = await reader.next_op("error")
            assert error["message"].endswith("Stream subscription is missing.")

    asyncio.run(main())


def test_a_storage_failure_is_reported_and_nothing_is_acknowledged(server, monkeypatch):
    app = server.new_app()
    writer_token = str(uuid.uuid4())

    async def run() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as writer,
            Session(server.base_url, http, app) as reader,
        ):
            stream_id = (await start(writer, "c", writer_token))["stream-id"]
            await reader.send("subscribe-stream", **{"stream-id": stream_id})
            assert (await reader.next_op("stream-append"))["content"] == ""

            def broken(*args: Any) -> None:
                raise OSError(errno.EIO, "Input/output error")

            with monkeypatch.context() as patch:
                patch.setattr(StreamStore, "append", broken)
                await append(writer, stream_id, ["lost"], 0)
                assert await writer.next_op("append-failed") == {
                    "op": "append-failed",
                    "stream-id": stream_id,
                }
            await reader.stream.expect_quiet(0.2)
            # Nothing was accepted: resuming reports offset 0, and the append is retried.
            assert (await start(writer, "c", writer_token))["offset"] == 0
            await append(writer, stream_id, ["kept"], 0)
            assert (await writer.next_op("stream-flushed"))["offset"] == 4
            assert (await reader.next_op("stream-append"))["content"] == "kept"
            rows = await query(http, server.base_url, app, {"$streams": {}})
            assert rows["$streams"][0].get("done") is None

    asyncio.run(run())


def test_abort_reason_and_streams_rows_reach_live_queries(server):
    app = server.new_app()

    async def main() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as writer,
            Session(server.base_url, http, app) as watcher,
        ):
            await watcher.send("add-query", q={"$streams": {}})
            assert (await watcher.next_op("add-query-ok"))["result"] == {"$streams": []}

            stream_id = (await start(writer, "job-1", str(uuid.uuid4())))["stream-id"]
            [created] = (await watcher.next_op("refresh-ok"))["computations"][0]["instaql-result"][
                "$streams"
            ]
            assert created["clientId"] == "job-1"
            assert "done" not in created or created["done"] is None
            assert created.get("size") is None

            await append(writer, stream_id, ["partial"], 0, done=True, **{"abort-reason": "boom"})
            assert (await writer.next_op("stream-flushed"))["done"] is True
            [finished] = (await watcher.next_op("refresh-ok"))["computations"][0]["instaql-result"][
                "$streams"
            ]
            assert finished["done"] is True
            assert finished["size"] == 7
            assert finished["abortReason"] == "boom"

            await watcher.send("subscribe-stream", **{"client-id": "job-1"})
            reply = await watcher.next_op("stream-append")
            assert reply["done"] is True
            assert reply["abort-reason"] == "boom"
            assert reply["offset"] == 0

    asyncio.run(main())


def test_readers_stay_attached_while_the_writer_reconnects(server):
    app = server.new_app()
    token = str(uuid.uuid4())

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as reader:
            async with Session(server.base_url, http, app) as first:
                stream_id = (await start(first, "resumable", token))["stream-id"]
                await append(first, stream_id, ["abc"], 0)
                await first.next_op("stream-flushed")
                read = await reader.send("subscribe-stream", **{"client-id": "resumable"})
                assert (await reader.next_op("stream-append"))["content"] == "abc"
            # The writer's connection is gone; the reader hears nothing and stays.
            await reader.stream.expect_quiet(0.3)

            async with Session(server.base_url, http, app) as second:
                resumed = await start(second, "resumable", token)
                assert resumed["op"] == "start-stream-ok"
                assert (resumed["stream-id"], resumed["offset"]) == (stream_id, 3)
                await append(second, stream_id, ["def"], 3)
                await second.next_op("stream-flushed")
                assert await reader.next_op("stream-append") == {
                    "op": "stream-append",
                    "client-event-id": read,
                    "stream-id": stream_id,
                    "client-id": "resumable",
                    "offset": 3,
                    "content": "def",
                }

                # A third writer with the token takes the stream over from the second.
                async with Session(server.base_url, http, app) as third:
                    assert (await start(third, "resumable", token))["offset"] == 6
                    await append(second, stream_id, ["late"], 6)
                    stale = await second.next_op("error")
                    assert stale["message"].endswith("Stream is missing.")
                    await append(third, stream_id, [], 6, done=True)
                    assert (await third.next_op("stream-flushed"))["offset"] == 6
                    assert (await reader.next_op("stream-append"))["done"] is True

            # A reader of the finished stream gets all six bytes back.
            await reader.send("subscribe-stream", **{"stream-id": stream_id})
            files = (await reader.next_op("stream-append"))["files"]
            content = b""
            for file in files:
                content += (await http.get(file["url"])).content
            assert content == b"abcdef"

    asyncio.run(main())


def test_large_streams_split_into_parts_without_splitting_chunks(server):
    app = server.new_app()
    size = 600 * 1024  # two chunks fill a part past the 1 MiB limit
    chunks = [letter * size for letter in "xyz"]

    async def main() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as writer,
            Session(server.base_url, http, app) as reader,
        ):
            stream_id = (await start(writer, "big", str(uuid.uuid4())))["stream-id"]
            for n, chunk in enumerate(chunks):
                await append(writer, stream_id, [chunk], n * size)
                await writer.next_op("stream-flushed")

            # While live: the full first part as a file, the open part's chunk inline.
            await reader.send("subscribe-stream", **{"stream-id": stream_id, "offset": 700_000})
            live = await reader.next_op("stream-append")
            assert live["offset"] == 0
            assert [f["size"] for f in live["files"]] == [2 * size]
            assert live["content"] == chunks[2]
            assert 2 * size >= PART_LIMIT

            await append(writer, stream_id, [], 3 * size, done=True)
            await writer.next_op("stream-flushed")
            assert (await reader.next_op("stream-append"))["done"] is True

            await reader.send("subscribe-stream", **{"stream-id": stream_id, "offset": 1_300_000})
            done = await reader.next_op("stream-append")
            assert done["offset"] == 2 * size  # the part holding byte 1_300_000 starts there
            [file] = done["files"]
            assert (await http.get(file["url"])).content == chunks[2].encode()

            await reader.send("subscribe-stream", **{"stream-id": stream_id})
            everything = await reader.next_op("stream-append")
            fetched = [(await http.get(f["url"])).content for f in everything["files"]]
            assert b"".join(fetched) == "".join(chunks).encode()

    asyncio.run(main())


def test_stream_file_urls_need_their_key(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as writer:
            stream_id = (await start(writer, "f", str(uuid.uuid4())))["stream-id"]
            await append(writer, stream_id, ["data"], 0, done=True)
            await writer.next_op("stream-flushed")
            await writer.send("subscribe-stream", **{"stream-id": stream_id})
            url = (await writer.next_op("stream-append"))["files"][0]["url"]
            assert (await http.get(url)).content == b"data"

            prefix, key, sid, index = url.rsplit("/", 3)
            forged = [
                f"{prefix}/{'0' * len(key)}/{sid}/{index}",
                f"{prefix}/{key}/{sid}/1",
                f"{prefix}/{key}/{sid}/x",
                f"{prefix.rsplit('/', 1)[0]}/{uuid.uuid4()}/{key}/{sid}/{index}",
            ]
            for bad in forged:
                response = await http.get(bad)
                assert response.status_code == 404, bad
                assert "data" not in response.text

    asyncio.run(main())


STREAM_RULES = {
    "$streams": {
        "allow": {
            "create": "ruleParams.secret == 'open sesame'",
            "view": "data.clientId == ruleParams.mine",
        }
    }
}


def test_impersonated_sessions_obey_the_streams_rules(server):
    app = server.new_app(rules=STREAM_RULES)
    no_rules = server.new_app()
    token = str(uuid.uuid4())

    async def main() -> None:
        guest = {"as-guest": "true"}
        async with (
            client() as http,
            Session(server.base_url, http, app, {"app-id": app.id, **guest}) as writer,
            Session(server.base_url, http, no_rules, {"app-id": no_rules.id, **guest}) as denied,
        ):
            refused = await start(writer, "g1", token)
            assert refused["op"] == "error"
            assert refused["type"] == "permission-denied"
            assert refused["original-event"]["op"] == "start-stream"
            ok = await start(writer, "g1", token, **{"rule-params": {"secret": "open sesame"}})
            assert ok["op"] == "start-stream-ok"
            await append(writer, ok["stream-id"], ["hi"], 0)
            await writer.next_op("stream-flushed")

            await writer.send("subscribe-stream", **{"client-id": "g1"})
            assert (await writer.next_op("error"))["type"] == "permission-denied"
            await writer.send(
                "subscribe-stream", **{"client-id": "g1", "rule-params": {"mine": "g1"}}
            )
            assert (await writer.next_op("stream-append"))["content"] == "hi"

            # With no rules at all, `$streams` is closed to non-admins.
            assert (await start(denied, "g2", token))["type"] == "permission-denied"

    asyncio.run(main())


def test_an_append_in_flight_when_its_writer_disconnects_is_kept_in_step(server, monkeypatch):
    app = server.new_app()
    token = str(uuid.uuid4())
    real_append = StreamStore.append
    entered = threading.Event()
    release = threading.Event()

    def slow_append(self: StreamStore, *args: Any) -> None:
        entered.set()
        assert release.wait(WAIT), "the test never released the write"
        real_append(self, *args)

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as reader:
            async with Session(server.base_url, http, app) as writer:
                stream_id = (await start(writer, "slow", token))["stream-id"]
                await reader.send("subscribe-stream", **{"stream-id": stream_id})
                await reader.next_op("stream-append")
                monkeypatch.setattr(StreamStore, "append", slow_append)
                await append(writer, stream_id, ["kept"], 0)
                await eventually(entered.is_set)
            # The writer is gone while its bytes are being written; they still count.
            await eventually(lambda: writer.id not in {s.id for s in server.hub.sessions.all()})
            release.set()
            assert (await reader.next_op("stream-append"))["content"] == "kept"
            monkeypatch.setattr(StreamStore, "append", real_append)
            async with Session(server.base_url, http, app) as resumed:
                assert (await start(resumed, "slow", token))["offset"] == 4

    asyncio.run(main())
