"""Blocking, bounded handles on the SDK's live objects, for one test body per client kind.

A test gets a subscription, a stream writer or a stream reader from an `Instant` or an
`AsyncInstant` and wraps it here; each handle then reads with blocking calls that give
up after a timeout with a clear assertion, whatever the kind:

* an `Instant` subscription or reader is read in the test's thread; a watchdog closes
  it from another thread when the wait runs out (the SDK wakes a blocked read at once);
* an `AsyncInstant` one is awaited on the test's event loop (``Clients.loop``) under
  ``asyncio.wait_for``. The loop runs only inside these calls, which is enough: every
  background task of the SDK runs while the test waits for something.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

WAIT = 10.0
"""Seconds any single expected event may take (generous: CI machines are slow)."""

Payload = dict[str, Any]


def run(loop: asyncio.AbstractEventLoop | None, value: Any) -> Any:
    """``value``, awaited on ``loop`` first if it is awaitable."""
    if inspect.isawaitable(value):
        assert loop is not None, "a sync client returned an awaitable"
        return loop.run_until_complete(_awaited(value))
    return value


async def _awaited(value: Any) -> Any:
    return await value


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` did not happen in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.02)


class _Iterated:
    """Takes items one at a time from a sync or async iterator, with a deadline."""

    def __init__(self, iterable: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._iterable = iterable
        self._iterator: Any = None

    def _close(self) -> None:
        raise NotImplementedError

    def next(self, timeout: float = WAIT) -> Any | None:
        """The next item, or None once the iteration ended; fails after ``timeout``."""
        if self._loop is None:
            return self._next_sync(timeout)
        if self._iterator is None:
            self._iterator = self._iterable.__aiter__()
        try:
            return self._loop.run_until_complete(
                asyncio.wait_for(self._iterator.__anext__(), timeout)
            )
        except StopAsyncIteration:
            return None
        except asyncio.TimeoutError:
            raise AssertionError(f"nothing arrived within {timeout:g} s") from None

    def _next_sync(self, timeout: float) -> Any | None:
        if self._iterator is None:
            self._iterator = iter(self._iterable)
        watchdog = threading.Timer(timeout, self._close)
        watchdog.daemon = True
        watchdog.start()
        try:
            return next(self._iterator)
        except StopIteration:
            assert watchdog.is_alive(), f"nothing arrived within {timeout:g} s"
            return None
        finally:
            watchdog.cancel()


class LiveSubscription(_Iterated):
    """A `Subscription` or `AsyncSubscription`, read with bounded waits.

    ``received`` keeps every payload handed out, in order.
    """

    def __init__(self, subscription: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        super().__init__(subscription, loop)
        self.subscription = subscription
        self.received: list[Payload] = []

    def _close(self) -> None:
        self.subscription.close()

    def next(self, timeout: float = WAIT) -> Payload | None:
        payload = super().next(timeout)
        if payload is not None:
            self.received.append(payload)
        return payload

    def until(self, predicate: Callable[[Payload], bool], timeout: float = WAIT) -> Payload:
        """Read until a payload satisfies ``predicate``; fail if the iteration ends first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching payload within {timeout:g} s: {self.received!r}"
            payload = self.next(remaining)
            assert payload is not None, f"the subscription ended early: {self.received!r}"
            if predicate(payload):
                return payload

    def close(self) -> None:
        run(self._loop, self.subscription.aclose() if self._loop else self.subscription.close())


def ok_data(payload: Payload) -> Any:
    """The result an ``ok`` payload carries (fails on an error payload)."""
    assert payload["type"] == "ok", f"expected an ok payload, got {payload!r}"
    return payload["data"]


def titles(payload: Payload, namespace: str = "goals") -> list[str]:
    """The sorted titles of ``namespace`` in an ``ok`` payload."""
    return sorted(row["title"] for row in ok_data(payload)[namespace])


class LiveReader(_Iterated):
    """A `StreamReader` or `AsyncStreamReader`, read with bounded waits."""

    def __init__(self, reader: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        super().__init__(reader, loop)
        self.reader = reader
        self.chunks: list[Any] = []

    def _close(self) -> None:
        self.reader.close()

    def next(self, timeout: float = WAIT) -> Any | None:
        chunk = super().next(timeout)
        if chunk is not None:
            self.chunks.append(chunk)
        return chunk

    def read_all(self, timeout: float = WAIT) -> Any:
        """Everything up to the stream's end, joined (str, or bytes with ``as_bytes``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the stream did not end within {timeout:g} s"
            if self.next(remaining) is None:
                break
        return self.text()

    def read_until(self, size: int, timeout: float = WAIT) -> Any:
        """Read until at least ``size`` characters (or bytes) arrived; fail on the end."""
        deadline = time.monotonic() + timeout
        while len(self.text()) < size:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(self.text())} of {size} arrived in time"
            assert self.next(remaining) is not None, "the stream ended early"
        return self.text()

    def text(self) -> Any:
        empty: Any = b"" if self.chunks and isinstance(self.chunks[0], bytes) else ""
        return empty.join(self.chunks)

    def close(self) -> None:
        run(self._loop, self.reader.aclose() if self._loop else self.reader.close())


def write_block(
    writer: Any,
    loop: asyncio.AbstractEventLoop | None,
    chunks: Iterable[str | bytes],
    *,
    error: BaseException | None = None,
) -> Any:
    """Write ``chunks`` inside the writer's (async) ``with`` block, raising ``error`` at
    its end if given (which then propagates); returns the writer."""
    if loop is None:
        with writer as entered:
            for chunk in chunks:
                entered.write(chunk)
            if error is not None:
                raise error
        return writer

    async def body() -> None:
        async with writer as entered:
            for chunk in chunks:
                await entered.write(chunk)
            if error is not None:
                raise error

    loop.run_until_complete(body())
    return writer


class LiveWriter:
    """A `StreamWriter` or `AsyncStreamWriter`, driven step by step with blocking calls."""

    def __init__(self, writer: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.writer = writer
        self._loop = loop

    def enter(self) -> LiveWriter:
        run(self._loop, self.writer.__aenter__() if self._loop else self.writer.__enter__())
        return self

    @property
    def stream_id(self) -> str:
        return str(run(self._loop, self.writer.wait_stream_id()))

    def write(self, data: str | bytes) -> None:
        run(self._loop, self.writer.write(data))

    def flush(self, timeout: float | None = None) -> None:
        run(self._loop, self.writer.flush(timeout))

    def close(self) -> None:
        run(self._loop, self.writer.close())
