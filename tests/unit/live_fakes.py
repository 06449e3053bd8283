"""Fakes for the live features' shells: SSE bodies that httpx.MockTransport can stream
to both clients, and drivers that run a sync or async subscription with one test body."""

from __future__ import annotations

import asyncio
import json
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

EVENT_STREAM = {"content-type": "text/event-stream"}


def event(message: Any) -> bytes:
    return b"data:" + json.dumps(message).encode() + b"\n\n"


class ScriptedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body of fixed chunks, then the server closes (both client kinds)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class QueueBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body fed by a queue while open: bytes are sent, None closes it (server side)."""

    def __init__(self, source: queue.Queue[bytes | None], *, wait: float = 10.0) -> None:
        self.source = source
        self.wait = wait

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                item = self.source.get(timeout=self.wait)
            except queue.Empty:
                return
            if item is None:
                return
            yield item

    async def __aiter__(self) -> AsyncIterator[bytes]:
        waited = 0.0
        while waited < self.wait:
            try:
                item = self.source.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.005)
                waited += 0.005
                continue
            if item is None:
                return
            waited = 0.0
            yield item

    def close(self) -> None:
        self.source.put(None)

    async def aclose(self) -> None:
        self.source.put(None)


def sse_response(body: httpx.SyncByteStream) -> httpx.Response:
    return httpx.Response(200, headers=EVENT_STREAM, stream=body)
