"""SSE framing byte for byte (live-protocol section 0): headers, ``retry:500``,
``data:<compact json>\\n\\n`` events, ``:`` keepalives at the configured interval."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx_sse
import pytest

from instantdb_local.live import KEEPALIVE, RETRY, encode_event
from instantdb_local.live._sse import Outbox
from tests.local.live.harness import (
    KEEPALIVE_SECONDS,
    EventStream,
    admin_headers,
    client,
    eventually,
)


def test_an_event_is_one_data_line_of_compact_json():
    frame = encode_event({"op": "x", "text": "a\nb\r\nc", "n": [1, 2], "é": "✓"})
    assert frame.startswith(b"data:{")
    assert frame.endswith(b"}\n\n")
    body = frame[len(b"data:") : -2]
    assert b"\n" not in body
    assert b"\r" not in body
    assert b", " not in body
    assert b": " not in body
    assert json.loads(body) == {"op": "x", "text": "a\nb\r\nc", "n": [1, 2], "é": "✓"}
    assert "✓".encode() in body  # UTF-8, not \u escapes


def test_non_finite_numbers_are_refused_rather_than_sent_as_invalid_json():
    with pytest.raises(ValueError):
        encode_event({"op": "x", "n": float("nan")})


def test_an_error_event_always_encodes_what_it_echoes():
    # An error echoes the client's message; whatever that holds, the event goes out,
    # with the values JSON cannot carry as text.
    event = {
        "op": "error",
        "original-event": {"n": float("inf"), "m": float("-inf"), "s": "\ud800", "t": (1,)},
        "hint": {"nan": float("nan")},
    }
    frame = encode_event(event)
    assert frame.startswith(b"data:")
    assert frame.endswith(b"\n\n")
    assert json.loads(frame[len(b"data:") : -2]) == {
        "op": "error",
        "original-event": {"n": "Infinity", "m": "-Infinity", "s": "\ud800", "t": [1]},
        "hint": {"nan": "NaN"},
    }


def test_the_outbox_keeps_order_flushes_on_close_and_times_out_to_a_keepalive():
    async def main() -> None:
        outbox = Outbox()
        assert await outbox.next(0.01) == KEEPALIVE
        outbox.put(b"1")
        outbox.put(b"2")
        outbox.close()
        outbox.put(b"after close")  # dropped: nobody reads a closed stream
        assert [await outbox.next(1), await outbox.next(1), await outbox.next(1)] == [
            b"1",
            b"2",
            None,
        ]

    asyncio.run(main())


def test_stream_bytes_headers_and_keepalives(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            stream = EventStream(
                http, server.base_url + "/admin/sse", headers=admin_headers(app), body={}
            )
            async with stream:
                assert stream.response is not None
                assert stream.response.status_code == 200
                headers = stream.response.headers
                assert headers["content-type"] == "text/event-stream;charset=UTF-8"
                assert headers["cache-control"] == "nocache"
                init = await stream.next_op("sse-init")
                # Enough time for several keepalives at the test interval.
                await eventually(lambda: stream.keepalives >= 3)
        raw = bytes(stream.raw)
        assert raw.startswith(RETRY)
        first_event = raw[len(RETRY) :].split(b"\n\n", 1)[0] + b"\n\n"
        assert first_event == encode_event(init)
        assert list(init) == ["op", "machine-id", "session-id", "sse-token"]
        # After the init, only keepalive comment lines (one newline each, no blank line).
        rest = raw[len(RETRY) + len(first_event) :]
        assert rest
        assert rest == KEEPALIVE * (len(rest) // len(KEEPALIVE))

    asyncio.run(main())


def test_keepalives_come_about_once_per_interval(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            stream = EventStream(
                http, server.base_url + "/admin/sse", headers=admin_headers(app), body={}
            )
            async with stream:
                await stream.next_op("sse-init")
                loop = asyncio.get_running_loop()
                started = loop.time()
                await eventually(lambda: stream.keepalives >= 5)
                elapsed = loop.time() - started
        # Five intervals cannot pass in much less than five intervals (generous bounds:
        # the point is "periodic", not a timing benchmark).
        assert elapsed >= 4 * KEEPALIVE_SECONDS * 0.5

    asyncio.run(main())


def test_httpx_sse_reads_the_stream_as_the_python_sdk_does(server):
    app = server.new_app()

    async def main() -> None:
        async with (
            client() as http,
            httpx_sse.aconnect_sse(
                http,
                "POST",
                server.base_url + "/admin/subscribe-query",
                headers=admin_headers(app),
                json={"query": {"goals": {}}, "inference?": False},
            ) as source,
        ):
            events = source.aiter_sse()
            # `retry:500` comes as a block of its own, as the real server sends it.
            hint = await anext(events)
            assert (hint.retry, hint.data) == (500, "")
            init = await anext(events)
            assert init.event == "message"  # unnamed events
            assert json.loads(init.data)["op"] == "sse-init"
            added = await anext(events)
            assert json.loads(added.data)["result"] == {"goals": []}
            # Keepalive comments are not events: the next one is a real change.
            await asyncio.sleep(3 * KEEPALIVE_SECONDS)
            await http.post(
                server.base_url + "/admin/transact",
                headers=admin_headers(app),
                json={"steps": [["update", "goals", str(uuid.uuid4()), {"t": 1}]]},
            )
            refresh = json.loads((await anext(events)).data)
            assert refresh["op"] == "refresh-ok"

    asyncio.run(main())
