"""The session transport of streams (wire protocol §7.1), sync and async.

A session reads ``POST /admin/sse`` in the background (a named daemon thread, or a
task) and pushes messages with ``POST /admin/sse/push``. It feeds a writer or reader
machine (the *handler*) and sends whatever the handler returns. Pushes are serialised
and batched: messages queued while a push is in flight go together in the next one.
Messages queued for a session that has since been replaced are dropped; the handler
regenerates what is needed when the new session opens.

A dropped session is reopened with `ReconnectSchedule`; a terminal failure (or
`MAX_PUSH_FAILURES` failed pushes in a row) fails the handler. A session that sends no
``sse-init`` within `SSE_INIT_TIMEOUT` seconds is dropped and reopened.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ._errors import InstantAPIError, InstantError
from ._logging import LiveLog
from ._protocol._call import Call, Request, Response
from ._protocol.reconnect import ReconnectSchedule, TransientError, is_terminal
from ._protocol.streams import (
    APPEND_LIMIT,
    SessionIds,
    message_bytes,
    push_request,
    session_ids,
    session_request,
)
from ._retry import RetrySafety
from ._settings import Settings
from ._sse_client import AsyncEventSource, SyncEventSource, describe
from ._transport import AsyncTransport, SyncTransport

__all__ = ["SSE_INIT_TIMEOUT", "AsyncSession", "Handler", "SyncSession"]

SSE_INIT_TIMEOUT = 10.0
MAX_PUSH_FAILURES = 5
PUSH_LIMIT = 4 * APPEND_LIMIT
"""Bytes of text one push carries at most (messages queued beyond it go in the next)."""
STOP_TIMEOUT = 5.0
"""Seconds `stop` waits for the background reader to end."""

Message = dict[str, Any]
T = TypeVar("T")


class Handler(Protocol):
    """What a session drives: `WriterMachine` or `ReaderMachine`."""

    @property
    def finished(self) -> bool: ...

    def on_session_open(self) -> list[Message]: ...

    def on_session_lost(self) -> None: ...

    def on_message(self, message: Any) -> list[Message]: ...

    def fail(self, error: InstantError) -> None: ...


def _push_call(settings: Settings, ids: SessionIds, messages: list[Message]) -> Call[None]:
    def ignore(response: Response) -> None:
        return None  # the answer only means "queued"; results come on the event stream

    # Never resent blindly: after a failure the session is reopened and the handler
    # resynchronises (a duplicate append would be refused by offset anyway).
    return Call(push_request(settings, ids, messages), ignore, RetrySafety.NEVER)


def _init_error() -> TransientError:
    return TransientError(
        f"the server sent no sse-init within {SSE_INIT_TIMEOUT:g} s of opening the stream session"
    )


class _SessionBase:
    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        log: LiveLog,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._request: Request = session_request(settings)
        self.handler = handler
        self._log = log
        self._clock = clock
        self._schedule = ReconnectSchedule(random=random)
        self._outbox: list[tuple[int, Message]] = []
        self._generation = 0
        self._ids: SessionIds | None = None
        self._stopping = False
        self._push_failures = 0
        self._attempts = 0

    def _enqueue(self, messages: list[Message]) -> None:
        self._outbox.extend((self._generation, message) for message in messages)

    def _take_batch(self) -> tuple[list[Message], SessionIds | None]:
        """The next push: queued messages of the current session, up to `PUSH_LIMIT`
        bytes of text (at least one message); the rest wait for the next push."""
        current = [
            message for generation, message in self._outbox if generation == self._generation
        ]
        batch: list[Message] = []
        size = 0
        for message in current:
            size += message_bytes(message)
            if batch and size > PUSH_LIMIT:
                break
            batch.append(message)
        self._outbox = [(self._generation, message) for message in current[len(batch) :]]
        for message in batch:
            self._log.debug("[send] %s %s", message.get("client-event-id"), message)
        return batch, self._ids

    def _opened(self, message: Message) -> None:
        if message.get("op") != "sse-init":
            raise TransientError(
                f"the stream session began with {message.get('op')!r} instead of sse-init"
            )
        ids = session_ids(message)
        self._log.hide(ids.sse_token)
        self._schedule.opened(self._clock())
        self._attempts = 0
        self._generation += 1
        self._ids = ids
        self._enqueue(self.handler.on_session_open())

    def _hinted(self, retry_ms: int | None) -> None:
        # The server's `retry:` hint (sent before sse-init) is a floor for reconnect
        # waits, as for subscriptions: reconnecting at once would reach a restarting
        # server while it is still shutting down.
        if retry_ms is not None:
            self._schedule.retry_hint = retry_ms / 1000

    def _lost(self) -> None:
        self._ids = None
        self._generation += 1
        self.handler.on_session_lost()

    def _retry_delay(self, error: InstantError) -> float | None:
        """Seconds before reopening, or None when the handler has been failed."""
        if self._stopping or self.handler.finished:
            return None  # the session was closed on purpose: its end is no error
        self._log.error("[error] %s", describe(error))
        if is_terminal(error):
            self.handler.fail(error)
            return None
        self._attempts += 1
        delay = self._schedule.delay_after(error, self._clock())
        self._log.info("[sse][reconnect] attempt=%d delay=%.2f", self._attempts, delay)
        return delay

    def _push_failed(self, error: InstantError) -> None:
        self._push_failures += 1
        self._log.error("[error] push failed: %s", describe(error))
        if isinstance(error, InstantAPIError) and error.status == 413:
            # Resending the same bytes can only be refused again.
            self.handler.fail(
                InstantError(
                    f"the server refused a push to the stream session as too large (413: "
                    f"{error}); it takes less than {PUSH_LIMIT} bytes of text per request"
                )
            )
        elif self._push_failures >= MAX_PUSH_FAILURES:
            self.handler.fail(
                InstantError(
                    f"{MAX_PUSH_FAILURES} pushes to the stream session failed in a row; "
                    f"last error: {error}"
                )
            )

    @property
    def _done(self) -> bool:
        return self._stopping or self.handler.finished


class SyncSession(_SessionBase):
    """A session read by a background thread; `act` and `wait_for` from any thread."""

    def __init__(
        self,
        settings: Settings,
        transport: SyncTransport,
        handler: Handler,
        log: LiveLog,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(settings, handler, log, clock=clock, random=random)
        self._transport = transport
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._source: SyncEventSource | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        with self._cond:
            if self._started:
                return
            self._started = True
        self._thread.start()

    def act(self, action: Callable[[], list[Message]]) -> None:
        """Run a handler action under the session's lock and push what it returns."""
        with self._cond:
            self._enqueue(action())
            self._cond.notify_all()
        self._flush()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` (checked under the lock) holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate() or self._stopping, timeout)

    def read(self, view: Callable[..., T], *args: Any) -> T:
        """``view(*args)`` under the session's lock (the handler is shared with its thread)."""
        with self._cond:
            return view(*args)

    def stop(self) -> None:
        """End the session and join the reader thread (bounded)."""
        with self._cond:
            if self._started and not self._stopping:
                self._log.info("[sse][close]")
            self._stopping = True
            source = self._source
            self._cond.notify_all()
        self._wake.set()
        if source is not None:
            source.abort()
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT)

    def _flush(self) -> None:
        with self._send_lock:
            while True:
                with self._cond:
                    batch, ids = self._take_batch()
                if not batch or ids is None:
                    return
                try:
                    self._transport.run(_push_call(self._settings, ids, batch))
                except InstantError as error:
                    with self._cond:
                        self._push_failed(error)
                        source = self._source if self._ids is ids else None
                        self._cond.notify_all()
                    if source is not None:
                        source.abort()  # reopen: the new session resynchronises
                    return
                with self._cond:
                    self._push_failures = 0

    def _run(self) -> None:
        try:
            while not self._done:
                delay = self._session_once()
                if delay is None:
                    break
                self._wake.wait(delay)
        finally:
            with self._cond:
                self._cond.notify_all()

    def _session_once(self) -> float | None:
        try:
            source = SyncEventSource.open(self._transport, self._request, self._log)
        except InstantError as error:
            with self._cond:
                return self._retry_delay(error)
        with self._cond:
            self._source = source
        timer = threading.Timer(SSE_INIT_TIMEOUT, source.abort)
        timer.name = f"{self._thread.name}-init-timeout"
        timer.daemon = True
        timer.start()
        failure: InstantError
        try:
            for message in source.messages():
                with self._cond:
                    if self._done:
                        return None
                    if self._ids is None:
                        timer.cancel()
                        self._hinted(source.retry_ms)
                        self._opened(message)
                    else:
                        self._enqueue(self.handler.on_message(message))
                    self._cond.notify_all()
                self._flush()
            failure = TransientError("the stream session ended")  # pragma: no cover
        except InstantError as error:
            failure = error if timer.is_alive() or self._ids is not None else _init_error()
        finally:
            timer.cancel()
            with self._cond:
                self._source = None
                if self._ids is not None:
                    self._lost()
                self._cond.notify_all()
            source.close()
        with self._cond:
            return self._retry_delay(failure)


class AsyncSession(_SessionBase):
    """A session read by a background task; everything else in the same event loop."""

    def __init__(
        self,
        settings: Settings,
        transport: AsyncTransport,
        handler: Handler,
        log: LiveLog,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(settings, handler, log, clock=clock, random=random)
        self._transport = transport
        self._name = name
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._crash: BaseException | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def act(self, action: Callable[[], list[Message]]) -> None:
        self._enqueue(action())
        self._notify()
        await self._flush()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        async def until() -> None:
            while not (predicate() or self._stopping):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def read(self, view: Callable[..., T], *args: Any) -> T:
        return view(*args)

    def check_crash(self) -> None:
        if self._crash is not None:
            raise self._crash

    async def stop(self) -> None:
        if self._task is not None and not self._stopping:
            self._log.info("[sse][close]")
        self._stopping = True
        self._notify()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_TIMEOUT)

    def _notify(self) -> None:
        self._changed.set()

    async def _flush(self) -> None:
        async with self._send_lock:
            while True:
                batch, ids = self._take_batch()
                if not batch or ids is None:
                    return
                try:
                    await self._transport.run(_push_call(self._settings, ids, batch))
                except InstantError as error:
                    self._push_failed(error)
                    self._notify()
                    if self._ids is ids:
                        self._reopen_session()
                    return
                self._push_failures = 0

    _reopen = False

    def _reopen_session(self) -> None:
        # The new session resynchronises the handler. From inside the reading task a flag
        # suffices; from outside, the task is replaced, since it may be waiting for the
        # next event of a session that is already dead.
        if self._task is None or self._task.done() or self._done:
            return
        if asyncio.current_task() is self._task:
            self._reopen = True
            return
        old = self._task
        old.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(after=old), name=self._name)

    async def _run(self, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:
            await asyncio.wait({after})
        try:
            while not self._done:
                delay = await self._session_once()
                if delay is None:
                    break
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug must surface in the caller, not vanish
            self._crash = exc
            self.handler.fail(InstantError(f"the stream session failed: {exc!r}"))
        finally:
            self._notify()

    async def _session_once(self) -> float | None:
        try:
            source = await AsyncEventSource.open(self._transport, self._request, self._log)
        except InstantError as error:
            return self._retry_delay(error)
        self._reopen = False
        failure: InstantError
        try:
            messages = source.messages()
            while True:
                if self._ids is None:
                    try:
                        message = await asyncio.wait_for(anext(messages), SSE_INIT_TIMEOUT)
                    except asyncio.TimeoutError:
                        raise _init_error() from None
                    self._hinted(source.retry_ms)
                    self._opened(message)
                else:
                    message = await anext(messages)
                    self._enqueue(self.handler.on_message(message))
                self._notify()
                await self._flush()
                if self._done:
                    return None
                if self._reopen:
                    raise TransientError("a push to the stream session failed; reopening it")
        except InstantError as error:
            failure = error
        finally:
            if self._ids is not None:
                self._lost()
            self._notify()
            await source.aclose()
        return self._retry_delay(failure)
