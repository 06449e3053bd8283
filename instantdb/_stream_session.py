"""The session transport of streams (wire protocol §7.1), sync and async.

A session reads ``POST /admin/sse`` in the background (a named daemon thread, or a
task) and feeds a writer or reader machine (the *handler*) every message. A second
thread (or task), the *pusher*, sends what there is to say with ``POST /admin/sse/push``,
one push at a time: the control messages queued meanwhile and whatever the handler has
to send (`Handler.take`) go together in the next push, as the JS SDK batches. Callers
never wait for a push: they change the handler and wake the pusher. Messages queued for
a session that has since been replaced are dropped; the handler regenerates what is
needed when the new session opens.

A dropped session is reopened with `ReconnectSchedule`; a failed push drops the session
at once (the next one resynchronises); a terminal failure (or `MAX_PUSH_FAILURES`
failed pushes in a row) fails the handler. A session that sends no ``sse-init`` within
`SSE_INIT_TIMEOUT` seconds is dropped and reopened.
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
"""Bytes of text one push carries at most (the rest goes in the next)."""
STOP_TIMEOUT = 5.0
"""Seconds `stop` waits for queued messages to go out, and for its workers to end."""

Message = dict[str, Any]
T = TypeVar("T")


class Handler(Protocol):
    """What a session drives: `WriterMachine` or `ReaderMachine`."""

    @property
    def finished(self) -> bool: ...

    @property
    def has_unsent(self) -> bool: ...

    def on_session_open(self) -> list[Message]: ...

    def on_session_lost(self) -> None: ...

    def on_message(self, message: Any) -> list[Message]: ...

    def take(self, budget: int) -> list[Message]: ...

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


def _push_error() -> TransientError:
    return TransientError("a push to the stream session failed; reopening it")


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
        self._pushing = False
        self._push_failures = 0
        self._attempts = 0

    def _enqueue(self, messages: list[Message] | None) -> None:
        if messages:
            self._outbox.extend((self._generation, message) for message in messages)

    @property
    def _has_work(self) -> bool:
        """Whether the pusher has something to send on the current session."""
        if self._ids is None:
            return False
        current = self._generation
        return self.handler.has_unsent or any(gen == current for gen, _ in self._outbox)

    @property
    def _idle(self) -> bool:
        return not self._pushing and not self._has_work

    def _take_batch(self) -> tuple[list[Message], SessionIds | None]:
        """The next push: the queued messages of the current session, then what the
        handler has to send, up to `PUSH_LIMIT` bytes of text."""
        current = self._generation
        batch = [message for generation, message in self._outbox if generation == current]
        self._outbox = []
        if self._ids is None:
            return [], None
        batch.extend(self.handler.take(PUSH_LIMIT))
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

    def _current(self, generation: int) -> bool:
        """Whether the session opened as ``generation`` is still the live one (a failed
        push drops it before its event stream ends)."""
        return self._ids is not None and self._generation == generation

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

    def _push_failed(self, error: InstantError, ids: SessionIds) -> bool:
        """Count a failed push; drop its session (True) if it is still the live one."""
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
        if self._ids is not ids:
            return False
        # What the server got of this session is unknown: the next one resynchronises.
        self._lost()
        return True

    @property
    def _done(self) -> bool:
        return self._stopping or self.handler.finished


class SyncSession(_SessionBase):
    """A session read by a background thread and pushed by another; `act` and
    `wait_for` from any thread."""

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
        self._wake = threading.Event()
        self._source: SyncEventSource | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._pusher = threading.Thread(target=self._push_loop, name=f"{name}-push", daemon=True)
        self._started = False

    def start(self) -> None:
        with self._cond:
            if self._started:
                return
            self._started = True
        self._thread.start()
        self._pusher.start()

    def act(self, action: Callable[[], list[Message] | None]) -> None:
        """Run a handler action under the session's lock; the pusher sends the result
        (and anything the action gave the handler to send)."""
        with self._cond:
            self._enqueue(action())
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` (checked under the lock) holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate() or self._stopping, timeout)

    def read(self, view: Callable[..., T], *args: Any) -> T:
        """``view(*args)`` under the session's lock (the handler is shared with its thread)."""
        with self._cond:
            return view(*args)

    def stop(self) -> None:
        """Send what is queued (bounded), end the session and join its threads."""
        with self._cond:
            if self._started and not self._stopping:
                self._log.info("[sse][close]")
                # An unsubscribe queued just before still goes out.
                self._cond.wait_for(lambda: self._idle, STOP_TIMEOUT)
            self._stopping = True
            source = self._source
            self._cond.notify_all()
        self._wake.set()
        if source is not None:
            source.abort()
        if self._started:
            deadline = time.monotonic() + STOP_TIMEOUT
            for thread in (self._thread, self._pusher):
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))

    def _push_loop(self) -> None:
        try:
            self._push_all()
        except BaseException as exc:  # a bug must surface in the caller, not vanish
            with self._cond:
                self.handler.fail(InstantError(f"the stream session failed: {exc!r}"))
                self._cond.notify_all()
            raise

    def _push_all(self) -> None:
        while True:
            with self._cond:
                batch, ids = self._take_batch()
                while not batch or ids is None:
                    if self._stopping:
                        return
                    self._cond.wait()
                    batch, ids = self._take_batch()
                self._pushing = True
            # Only the call holds the push's text now, and its body lets each piece go
            # once sent (see `PushBody`): nothing of a push waits here for the next one.
            call, batch = _push_call(self._settings, ids, batch), []
            try:
                self._transport.run(call)
            except InstantError as error:
                with self._cond:
                    self._pushing = False
                    dropped = self._push_failed(error, ids)
                    source = self._source if dropped else None
                    self._cond.notify_all()
                if source is not None:
                    source.abort()  # its reader reopens the session
                continue
            with self._cond:
                self._pushing = False
                self._push_failures = 0
                self._cond.notify_all()

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
        generation: int | None = None
        failure: InstantError
        try:
            for message in source.messages():
                with self._cond:
                    if self._done:
                        return None
                    if generation is None:
                        timer.cancel()
                        self._hinted(source.retry_ms)
                        self._opened(message)
                        generation = self._generation
                    elif not self._current(generation):
                        raise _push_error()
                    else:
                        self._enqueue(self.handler.on_message(message))
                    self._cond.notify_all()
            failure = TransientError("the stream session ended")  # pragma: no cover
        except InstantError as error:
            if generation is None and not timer.is_alive():
                failure = _init_error()
            else:
                failure = error
        finally:
            timer.cancel()
            timer.join()  # a cancelled timer's thread ends at once; none outlives the session
            with self._cond:
                self._source = None
                if generation is not None and self._current(generation):
                    self._lost()
                self._cond.notify_all()
            source.close()
        with self._cond:
            return self._retry_delay(failure)


class AsyncSession(_SessionBase):
    """A session read by a background task and pushed by another; everything else in
    the same event loop."""

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
        self._changed = asyncio.Event()
        self._push_wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._crash: BaseException | None = None

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=self._name)
            self._pusher = loop.create_task(self._push_loop(), name=f"{self._name}-push")

    async def act(self, action: Callable[[], list[Message] | None]) -> None:
        """Run a handler action; the pusher sends the result. Yields once when the
        pusher was idle, so it starts the push before the caller carries on."""
        idle = not self._pushing
        self._enqueue(action())
        self._notify()
        if idle and self._has_work:
            await asyncio.sleep(0)

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
        """Send what is queued (bounded), then end the session's tasks."""
        if self._task is not None and not self._stopping:
            self._log.info("[sse][close]")
            # An unsubscribe queued just before still goes out.
            await self.wait_for(lambda: self._idle, STOP_TIMEOUT)
        self._stopping = True
        self._notify()
        tasks = {task for task in (self._task, self._pusher) if task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)

    def _notify(self) -> None:
        self._changed.set()
        self._push_wanted.set()

    async def _push_loop(self) -> None:
        try:
            while not self._stopping:
                batch, ids = self._take_batch()
                if not batch or ids is None:
                    self._push_wanted.clear()
                    await self._push_wanted.wait()
                    continue
                self._pushing = True
                call, batch = _push_call(self._settings, ids, batch), []  # as in SyncSession
                try:
                    await self._transport.run(call)
                except InstantError as error:
                    if self._push_failed(error, ids):
                        self._reopen_session()
                else:
                    self._push_failures = 0
                finally:
                    self._pushing = False
                    self._notify()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug must surface in the caller, not vanish
            self._crashed(exc)

    def _reopen_session(self) -> None:
        # The reading task may be waiting for the next event of a session that is
        # already dead: it is replaced by one that opens a new session.
        if self._task is None or self._task.done() or self._done:
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
            self._crashed(exc)
        finally:
            self._notify()

    def _crashed(self, exc: BaseException) -> None:
        self._crash = exc
        self.handler.fail(InstantError(f"the stream session failed: {exc!r}"))
        self._notify()

    async def _session_once(self) -> float | None:
        try:
            source = await AsyncEventSource.open(self._transport, self._request, self._log)
        except InstantError as error:
            return self._retry_delay(error)
        generation: int | None = None
        failure: InstantError
        try:
            messages = source.messages()
            while True:
                if generation is None:
                    try:
                        message = await asyncio.wait_for(anext(messages), SSE_INIT_TIMEOUT)
                    except asyncio.TimeoutError:
                        raise _init_error() from None
                    self._hinted(source.retry_ms)
                    self._opened(message)
                    generation = self._generation
                else:
                    message = await anext(messages)
                    if not self._current(generation):
                        raise _push_error()
                    self._enqueue(self.handler.on_message(message))
                self._notify()
                if self._done:
                    return None
        except InstantError as error:
            failure = error
        finally:
            if generation is not None and self._current(generation):
                self._lost()
            self._notify()
            await source.aclose()
        return self._retry_delay(failure)
