"""Server-sent events exactly as the real server frames them (live-protocol section 0).

Every event is one ``data:`` line of compact JSON and a blank line, with no space after
the colon and no ``event:`` or ``id:`` line. The stream opens with ``retry:500`` and,
while nothing else is written, carries a ``:`` comment line every keepalive interval:
its job is to make a dead peer fail a write, and to keep clients' read timeouts quiet.

A session's events go through its `Outbox`, which `EventStream` writes in order, one
ASGI ``send`` (and so one flushed chunk) per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from instantdb_local import errors

from ._wire import dumps

RETRY = b"retry:500\n\n"
KEEPALIVE = b":\n"
CONTENT_TYPE = "text/event-stream;charset=UTF-8"


def encode_event(message: Mapping[str, Any]) -> bytes:
    """One SSE event: ``data:<compact json>\\n\\n``.

    JSON escapes every control character, so the payload never holds a raw newline
    and always fits one ``data:`` line. Text UTF-8 cannot carry (a lone surrogate a
    client sent, echoed back in an error) is sent as JSON ``\\u`` escapes instead.

    Values JSON cannot carry at all (NaN, an infinity) are refused in data, whose type
    must not change on the way, but sent as text in an ``error`` event: an error echoes
    what it was given and must always reach the client.
    """
    try:
        payload = dumps(message).encode("utf-8")
    except UnicodeEncodeError:
        payload = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("ascii")
    except (TypeError, ValueError):
        if message.get("op") != "error":
            raise
        safe = errors.json_safe(message)
        payload = json.dumps(safe, separators=(",", ":"), allow_nan=False).encode("ascii")
    return b"data:" + payload + b"\n\n"


class Outbox:
    """One session's outbound frames, in the order they were put.

    Only touched from the event loop. Closing lets the frames already queued go out
    first, then ends the stream.
    """

    def __init__(self) -> None:
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, frame: bytes) -> None:
        if self.closed:
            return  # the connection is gone; nobody is left to read it
        self._frames.append(frame)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._frames)

    async def next(self, keepalive_seconds: float) -> bytes | None:
        """The next frame; `KEEPALIVE` after ``keepalive_seconds`` idle; None once closed.

        Waits on an event that either a new frame or a timer sets: a timeout can never
        drop a frame (``wait_for`` around ``Queue.get`` may, before Python 3.12), and no
        task is created per wait, which matters with hundreds of idle sessions.
        """
        if not self._frames and not self.closed:
            self._ready.clear()
            timer = asyncio.get_running_loop().call_later(keepalive_seconds, self._ready.set)
            try:
                await self._ready.wait()
            finally:
                timer.cancel()
        if self._frames:
            return self._frames.popleft()
        return None if self.closed else KEEPALIVE


class EventStream(Response):
    """The SSE response of one session: runs until the client leaves or the outbox closes.

    ``on_close`` runs exactly once when the response ends, however it ends, so the
    session's queries, rooms and streams are always released.
    """

    def __init__(
        self, outbox: Outbox, *, keepalive_seconds: float, on_close: Callable[[], None]
    ) -> None:
        if keepalive_seconds <= 0:
            raise ValueError(f"keepalive_seconds must be positive, got {keepalive_seconds}")
        self.status_code = 200
        self.background = None
        self._outbox = outbox
        self._keepalive = keepalive_seconds
        self._on_close = on_close
        self.raw_headers = [
            (b"content-type", CONTENT_TYPE.encode("latin-1")),
            # Sic: the real server sends "nocache".
            (b"cache-control", b"nocache"),
            # Proxies that buffer would hold events back; ask them not to.
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._close_on_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": RETRY, "more_body": True})
            while True:
                frame = await self._outbox.next(self._keepalive)
                if frame is None:
                    break
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # uvicorn cancels the responses still open when its graceful shutdown time
            # runs out. End the body properly so the client sees the stream end (and
            # reconnects) instead of the server logging a crash.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self._outbox.close()
            self._on_close()

    async def _close_on_disconnect(self, receive: Receive) -> None:
        # The request body was read before the stream opened, so the next message is
        # the disconnect.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._outbox.close()
                return
