"""``db.subscribe_query(q)``: the blocking and the asyncio shells around
`instantdb._protocol.subscription.SubscriptionMachine`.

`Subscription` (for `Instant`) does its I/O in the thread that iterates: each ``next()``
reads the connection until a payload is ready, and reconnect waits happen there too. No
thread is started. `AsyncSubscription` runs one task per subscription that reads the
connection and fills the machine's bounded backlog; iterating takes from the backlog.

Both start on first use (``with``/``async with`` or the first iteration) and release
their connection on `close`/`aclose`, at the end of the block, or when the iteration ends.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from ._errors import InstantError
from ._logging import LiveLog
from ._protocol.reconnect import TransientError
from ._protocol.subscription import (
    Next,
    ReadyState,
    SubscriptionMachine,
    subscribe_request,
)
from ._settings import Settings
from ._sse_client import AsyncEventSource, SyncEventSource, describe
from ._transport import AsyncTransport, SyncTransport

__all__ = ["SSE_INIT_TIMEOUT", "AsyncSubscription", "Subscription"]

SSE_INIT_TIMEOUT = 10.0
"""Seconds an opened connection may take to send ``sse-init`` before it is reopened."""

STOP_TIMEOUT = 5.0
"""Seconds `aclose` waits for the reading task to finish after cancelling it."""

Payload = dict[str, Any]


def _init_timeout_error() -> TransientError:
    return TransientError(
        f"the server sent no sse-init within {SSE_INIT_TIMEOUT:g} s of opening the subscription"
    )


class _SubscriptionBase:
    """State and properties both shells share."""

    def __init__(
        self,
        settings: Settings,
        q: Mapping[str, Any],
        rule_params: Mapping[str, Any] | None,
        log: LiveLog,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        # Built now, so a bad query or a missing token fails at subscribe_query().
        self._request = subscribe_request(settings, q, rule_params, str(uuid.uuid4()))
        self._machine = SubscriptionMachine(secrets=settings.secrets, random=random)
        self._log = log
        self._clock = clock
        self._attempts = 0

    @property
    def session_info(self) -> dict[str, Any] | None:
        """``{"machine_id", "session_id"}`` of the current connection; None before one."""
        return self._machine.session_info

    @property
    def ready_state(self) -> ReadyState:
        """``"connecting"``, ``"open"`` or ``"closed"``."""
        return self._machine.ready_state

    @property
    def is_closed(self) -> bool:
        return self._machine.is_closed

    @property
    def dropped(self) -> int:
        """Payloads dropped because more than 100 waited undelivered (newest kept)."""
        return self._machine.dropped

    def _failed(self, error: InstantError) -> float | None:
        delay = self._machine.failed(error, self._clock())
        self._log.error("[error] %s", describe(error))
        if delay is not None:
            self._attempts += 1
            self._log.info("[sse][reconnect] attempt=%d delay=%.2f", self._attempts, delay)
        return delay

    def _on_message(self, message: Mapping[str, Any]) -> Next:
        verdict = self._machine.on_message(message, self._clock())
        if message.get("op") == "sse-init":
            self._attempts = 0
        return verdict

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ready_state}>"


class Subscription(_SubscriptionBase):
    """A live query (blocking): ``with db.subscribe_query(q) as sub: for payload in sub``.

    Each payload is ``{"type": "ok", "data", "page_info", "session_info"}`` or
    ``{"type": "error", "error", "ready_state", "is_closed", "session_info"}``. Iterate in
    one thread; `close` may be called from any thread.
    """

    def __init__(
        self,
        settings: Settings,
        transport: SyncTransport,
        q: Mapping[str, Any],
        rule_params: Mapping[str, Any] | None,
        log: LiveLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(settings, q, rule_params, log, clock=clock, random=random)
        self._transport = transport
        self._source: SyncEventSource | None = None
        self._messages: Iterator[dict[str, Any]] | None = None
        self._next_attempt: float | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._init_timer: threading.Timer | None = None
        self._init_expired = False

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Payload]:
        return self

    def __next__(self) -> Payload:
        while True:
            with self._lock:
                payload = self._machine.pop()
                closed = self._machine.is_closed
            if payload is not None:
                return payload
            if closed:
                self._release()
                raise StopIteration
            self._advance()

    def close(self) -> None:
        """Stop receiving; iteration then ends. Idempotent, callable from any thread."""
        with self._lock:
            if not self._machine.is_closed:
                self._log.info("[sse][close]")
            self._machine.close()
            source = self._source
        self._wake.set()
        if source is not None:
            source.abort()  # a read blocked in the iterating thread fails now

    def _advance(self) -> None:
        """One step: wait out a reconnect delay, connect, or read one message."""
        if self._source is None or self._messages is None:
            if self._next_attempt is not None:
                self._wake.wait(max(0.0, self._next_attempt - self._clock()))
                self._next_attempt = None
                return  # look at the machine again: close() may have happened
            self._connect()
            return
        try:
            message = next(self._messages)
        except InstantError as error:
            self._disconnected(_init_timeout_error() if self._init_expired else error)
            return
        with self._lock:
            self._machine.on_retry_hint(self._source.retry_ms)
            verdict = self._on_message(message)
        if self._machine.ready_state == "open":
            self._cancel_init_timer()
        if verdict is Next.RECONNECT:
            assert self._machine.reconnect_reason is not None
            self._disconnected(self._machine.reconnect_reason)
        elif verdict is Next.STOP:
            self._release()

    def _connect(self) -> None:
        with self._lock:
            if self._machine.is_closed:
                return
            self._machine.connecting(self._clock())
        try:
            source = SyncEventSource.open(self._transport, self._request, self._log)
        except InstantError as error:
            self._schedule(error)
            return
        with self._lock:
            self._source = source
            self._messages = source.messages()
        if self._closed_meanwhile():
            self._release()
            return
        self._init_expired = False
        self._init_timer = threading.Timer(SSE_INIT_TIMEOUT, self._init_timed_out, (source,))
        self._init_timer.name = "instantdb-subscription-init-timeout"
        self._init_timer.daemon = True
        self._init_timer.start()

    def _closed_meanwhile(self) -> bool:
        # close() from another thread may have run while the connection was opening.
        with self._lock:
            return self._machine.is_closed

    def _init_timed_out(self, source: SyncEventSource) -> None:
        with self._lock:
            if self._source is not source or self._machine.ready_state == "open":
                return
            self._init_expired = True
        source.abort()

    def _disconnected(self, error: InstantError) -> None:
        self._release()
        self._schedule(error)

    def _schedule(self, error: InstantError) -> None:
        with self._lock:
            delay = self._failed(error)
        if delay is not None:
            self._next_attempt = self._clock() + delay

    def _cancel_init_timer(self) -> None:
        timer, self._init_timer = self._init_timer, None
        if timer is not None:
            timer.cancel()

    def _release(self) -> None:
        self._cancel_init_timer()
        with self._lock:
            source, self._source, self._messages = self._source, None, None
        if source is not None:
            source.close()


class AsyncSubscription(_SubscriptionBase):
    """A live query (asyncio): ``async with db.subscribe_query(q) as sub: async for ...``.

    Payloads as for `Subscription`. One background task reads the connection; at most
    100 payloads wait undelivered (the oldest are dropped first).
    """

    def __init__(
        self,
        settings: Settings,
        transport: AsyncTransport,
        q: Mapping[str, Any],
        rule_params: Mapping[str, Any] | None,
        log: LiveLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(settings, q, rule_params, log, clock=clock, random=random)
        self._transport = transport
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._crash: BaseException | None = None

    async def __aenter__(self) -> AsyncSubscription:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self

    async def __anext__(self) -> Payload:
        self._start()
        while True:
            payload = self._machine.pop()
            if payload is not None:
                return payload
            if self._crash is not None:
                crash, self._crash = self._crash, None
                await self.aclose()
                raise crash
            if self._machine.is_closed:
                await self._stop_task()
                raise StopAsyncIteration
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        """Stop receiving; iteration then ends. Idempotent."""
        if not self._machine.is_closed:
            self._log.info("[sse][close]")
        self._machine.close()
        self._changed.set()
        await self._stop_task()

    def _start(self) -> None:
        if self._task is None and not self._machine.is_closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="instantdb-subscription"
            )

    async def _stop_task(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        # wait(), unlike awaiting the task, leaves a cancellation of our caller intact.
        await asyncio.wait({task}, timeout=STOP_TIMEOUT)

    async def _run(self) -> None:
        try:
            while not self._machine.is_closed:
                self._machine.connecting(self._clock())
                try:
                    await self._connect_and_read()
                except InstantError as error:
                    delay = self._failed(error)
                    self._changed.set()
                    if delay is None:
                        return
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug must surface in the iterating task
            self._crash = exc
            self._machine.close()
        finally:
            self._changed.set()

    async def _connect_and_read(self) -> None:
        source = await AsyncEventSource.open(self._transport, self._request, self._log)
        try:
            messages = source.messages()
            while True:
                if self._machine.ready_state == "open":
                    message = await anext(messages)
                else:
                    message = await self._first(messages)
                self._machine.on_retry_hint(source.retry_ms)
                verdict = self._on_message(message)
                self._changed.set()
                if verdict is Next.RECONNECT:
                    assert self._machine.reconnect_reason is not None
                    raise self._machine.reconnect_reason
                if verdict is Next.STOP:
                    return
        finally:
            await source.aclose()

    @staticmethod
    async def _first(messages: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(anext(messages), SSE_INIT_TIMEOUT)
        except asyncio.TimeoutError:
            raise _init_timeout_error() from None
