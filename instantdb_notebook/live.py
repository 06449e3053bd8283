"""Live queries and streams as blocking-friendly handles, run on the portal.

::

    live = live_query(db, {"goals": {}})       # starts at once; shows a widget when displayed
    live.latest                                 # the newest result as a DataFrame
    live.wait_for(lambda df: len(df) >= 3, timeout=10)
    live.stop()

    stream = read_stream(db, client_id="story") # appends text as it arrives
    stream.wait_for(lambda text: text.endswith("."), timeout=10)

``db`` is any ``Instant`` or ``AsyncInstant`` (an ``as_user`` clone included): the
portal builds its own ``AsyncInstant`` with the same app, token, API URI and
impersonation, and shares no connection pool with ``db``.

Threads: payloads are received and widgets are mutated on the portal thread only. Other
threads read immutable snapshots (`LiveState`) swapped under a lock, and wait on a
condition. Widget renders are coalesced: at most one per ``render_interval`` seconds,
always of the newest state.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from instantdb import InstantError

from ._cells import cell_handles
from ._connections import ClientSpec
from ._results import Frames, frames_of
from .portal import Portal, PortalFuture, get_portal

if TYPE_CHECKING:
    from instantdb import AsyncInstant, Instant

    from .widgets import LiveQueryWidget, StreamWidget

__all__ = [
    "LiveQuery",
    "LiveState",
    "LiveStream",
    "StreamState",
    "live_query",
    "portal_client",
    "read_stream",
    "submit_async",
]

Status = Literal["connecting", "connected", "reconnecting", "error", "stopped", "done"]
"""``done`` only for streams: the writer finished."""

DEFAULT_RENDER_INTERVAL = 0.25
DEFAULT_DISPLAY_LIMIT = 20
# How often the subscription's connection state is looked at between payloads, so the
# status line says "reconnecting" while a dropped connection is being re-opened.
_STATE_POLL_SECONDS = 0.5
_STOP_TIMEOUT_SECONDS = 5.0

StateT = TypeVar("StateT", bound="_BaseState")
T = TypeVar("T")


# -- clients on the portal ------------------------------------------------------------------

_portal_clients: weakref.WeakKeyDictionary[Portal, dict[ClientSpec, AsyncInstant]] = (
    weakref.WeakKeyDictionary()
)


def portal_client(portal: Portal, spec: ClientSpec) -> AsyncInstant:
    """The portal's ``AsyncInstant`` for ``spec``, built on first use.

    Call it on the portal thread only: the client's pool belongs to the portal's loop.
    The root client is closed when the portal closes.
    """
    if not portal.in_portal_thread():
        raise RuntimeError("portal_client() must be called on the portal's thread")
    clients = _portal_clients.setdefault(portal, {})
    client = clients.get(spec)
    if client is None:
        root, client = spec.async_client()
        clients[spec] = client
        portal.add_cleanup(root.aclose)
    return client


def _spec_of(db: Instant | AsyncInstant | ClientSpec) -> ClientSpec:
    return db if isinstance(db, ClientSpec) else ClientSpec.of(db)


def submit_async(
    db: Instant | AsyncInstant | ClientSpec,
    function: Callable[[AsyncInstant], Awaitable[T]],
    *,
    portal: Portal | None = None,
) -> PortalFuture[T]:
    """Run ``await function(async_db)`` on the portal, with an ``AsyncInstant`` for ``db``.

    Returns at once; ``.result(timeout)`` waits. For writers in notebooks::

        async def write(adb):
            async with adb.streams.write(client_id="story") as writer:
                await writer.write("Once upon a time")

        submit_async(db, write).result(timeout=30)
    """
    spec = _spec_of(db)
    portal = portal or get_portal()

    async def run() -> T:
        return await function(portal_client(portal, spec))

    name = getattr(function, "__name__", "function")
    return portal.submit(run(), description=f"submit_async({name})")


# -- states -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BaseState:
    status: Status = "connecting"
    updates: int = 0
    """Payloads (queries) or chunks (streams) received."""
    last_change: datetime | None = None
    error: BaseException | None = None
    """The last error: an error payload's exception, or what ended the work."""


@dataclass(frozen=True)
class LiveState(_BaseState):
    """A snapshot of a live query. ``payload`` is the newest ``ok`` payload."""

    payload: Mapping[str, Any] | None = None
    errors: int = 0


@dataclass(frozen=True)
class StreamState(_BaseState):
    """A snapshot of a stream being read. ``text`` is everything received so far."""

    text: str = ""
    byte_offset: int = 0
    """The position after the last byte received (where a resumed read would start)."""
    start_offset: int = 0


# -- the shared machinery --------------------------------------------------------------------


class _LiveHandle(Generic[StateT]):
    """Runs one long-lived coroutine on the portal and publishes its state."""

    _widget: Any

    def __init__(
        self,
        state: StateT,
        *,
        portal: Portal | None,
        description: str,
        render_interval: float,
        display_limit: int,
    ) -> None:
        if render_interval < 0:
            raise ValueError(f"render_interval must be >= 0 seconds, got {render_interval!r}")
        self._state = state
        self._portal = portal or get_portal()
        self._description = description
        self._render_interval = render_interval
        self.display_limit = display_limit
        self._changed = threading.Condition()
        self._finished = threading.Event()
        self._widget = None
        self._shown: Any = None  # the widget renders draw (set on the portal thread)
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._wakeup: asyncio.Future[None] | None = None
        self._stop_requested = False
        # A new run of the cell that made a live handle stops the old one (see _cells).
        cell_handles.replace(self, _stop_replaced)
        self._future = self._portal.submit(self._main(), description=description)

    # -- what users read ----------------------------------------------------------------

    @property
    def state(self) -> StateT:
        """The newest snapshot (immutable)."""
        return self._state

    @property
    def status(self) -> Status:
        return self._state.status

    @property
    def updates(self) -> int:
        return self._state.updates

    @property
    def last_change(self) -> datetime | None:
        return self._state.last_change

    @property
    def error(self) -> BaseException | None:
        return self._state.error

    @property
    def running(self) -> bool:
        return not self._finished.is_set()

    def stop(self, timeout: float | None = _STOP_TIMEOUT_SECONDS) -> None:
        """Stop receiving and close the connection; waits up to ``timeout`` seconds."""
        self._request_stop()
        if timeout is None or timeout > 0:
            if self._portal.in_portal_thread():
                return  # cannot wait for ourselves; the task ends shortly
            self._finished.wait(timeout)

    def _request_stop(self) -> None:
        self._stop_requested = True
        if self._finished.is_set() or self._portal.closed:
            return
        self._portal.call_soon(self._cancel_task)

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until(
        self,
        accept: Callable[[StateT], T | None],
        timeout: float | None,
        waiting_for: str,
    ) -> T:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                state = self._state
                found = accept(state)
                if found is not None:
                    return found
                if self._finished.is_set():
                    raise self._ended_error(state, waiting_for)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{self._description}: no {waiting_for} within {timeout:g} s "
                        f"({state.updates} update{'' if state.updates == 1 else 's'} so far, "
                        f"status {state.status})"
                    )
                self._changed.wait(remaining)

    def _ended_error(self, state: StateT, waiting_for: str) -> Exception:
        cause = f": {state.error}" if state.error is not None else ""
        error = LiveEndedError(
            f"{self._description} ended ({state.status}) before {waiting_for}{cause}"
        )
        error.__cause__ = state.error
        return error

    # -- the portal side ----------------------------------------------------------------

    def _publish(self, **changes: Any) -> None:
        """Swap in a new state (portal thread) and wake waiters and the renderer."""
        with self._changed:
            self._state = replace(self._state, **changes)
            self._changed.notify_all()
        # Only the portal thread publishes, so the flag and the future need no lock.
        self._dirty = True
        if self._wakeup is not None:
            _resolve(self._wakeup)

    async def _main(self) -> None:
        self._task = asyncio.current_task()
        renderer = asyncio.get_running_loop().create_task(self._render_loop())
        try:
            if self._stop_requested:  # stopped before it started
                raise asyncio.CancelledError
            await self._receive()
            if self._state.status not in ("error", "done"):
                self._publish(status="stopped")
        except asyncio.CancelledError:
            if self._state.status not in ("error", "done"):
                self._publish(status="stopped")
        except Exception as exc:
            self._publish(status="error", error=exc)
        finally:
            renderer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renderer
            self._render()
            with self._changed:
                self._finished.set()
                self._changed.notify_all()

    async def _receive(self) -> None:
        raise NotImplementedError

    def _poll(self) -> None:
        """Called between renders on the portal thread; may publish a new status."""

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._dirty:
                # Sleep until _publish wakes us, or until it is time to poll.
                wakeup = loop.create_future()
                self._wakeup = wakeup
                timer = loop.call_later(_STATE_POLL_SECONDS, _resolve, wakeup)
                try:
                    await wakeup
                finally:
                    timer.cancel()
                    self._wakeup = None
                if not self._dirty:
                    self._poll()
                    continue
            self._dirty = False
            self._render()
            # Coalesce: whatever arrives meanwhile is drawn once, at the next turn.
            await asyncio.sleep(self._render_interval)

    def _render(self) -> None:
        if self._shown is not None:
            self._shown.render(self)

    def _attach(self, widget: Any) -> Any:
        """Remember ``widget`` (built in the caller's thread) and draw it from the portal."""
        self._widget = widget
        if self._portal.closed:
            self._first_render()  # nothing runs on the portal any more
        else:
            self._portal.call_soon(self._first_render)
        return widget

    def _first_render(self) -> None:
        # On the portal thread: from now on renders draw this widget.
        self._shown = self._widget
        self._render()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)  # type: ignore[no-any-return]

    @property
    def widget(self) -> Any:
        raise NotImplementedError


def _stop_replaced(handle: _LiveHandle[Any]) -> None:
    handle.stop()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LiveEndedError(InstantError, RuntimeError):
    """The live query or stream ended before what was waited for happened."""


# -- live queries ---------------------------------------------------------------------------


Opener = Callable[[], Any]
"""Returns an async iterator of payloads, or an async context manager yielding one."""


class LiveQuery(_LiveHandle[LiveState]):
    """A query kept up to date by a subscription. Build it with `live_query`.

    ``latest`` is the newest result as a DataFrame (a dict of them for several
    namespaces), ``data`` the raw result; ``status`` is ``connecting``, ``connected``,
    ``reconnecting``, ``error`` or ``stopped``. Displaying it shows a `LiveQueryWidget`.
    """

    def __init__(
        self,
        open_subscription: Opener,
        *,
        description: str = "live query",
        portal: Portal | None = None,
        frame_options: Mapping[str, Any] | None = None,
        render_interval: float = DEFAULT_RENDER_INTERVAL,
        display_limit: int = DEFAULT_DISPLAY_LIMIT,
    ) -> None:
        self._open = open_subscription
        self._frame_options = dict(frame_options or {})
        self._frames_lock = threading.Lock()
        self._frames_for: tuple[Mapping[str, Any], Frames] | None = None
        self._subscription: Any = None
        self._was_connected = False
        super().__init__(
            LiveState(),
            portal=portal,
            description=description,
            render_interval=render_interval,
            display_limit=display_limit,
        )

    @property
    def data(self) -> Mapping[str, Any] | None:
        """The newest result (``{namespace: [entities]}``), or None before the first."""
        payload = self._state.payload
        return payload.get("data") if payload is not None else None

    @property
    def latest(self) -> Frames | None:
        """The newest result as a DataFrame (or a dict of them); None before the first."""
        return self._frames(self._state.payload)

    def _frames(self, payload: Mapping[str, Any] | None) -> Frames | None:
        if payload is None:
            return None
        with self._frames_lock:
            cached = self._frames_for
            if cached is not None and cached[0] is payload:
                return cached[1]
        frames = frames_of(payload, **self._frame_options)
        with self._frames_lock:
            self._frames_for = (payload, frames)
        return frames

    def wait_for(
        self,
        predicate: Callable[[Frames], object] | None = None,
        *,
        updates: int | None = None,
        timeout: float | None = 10.0,
    ) -> Frames:
        """Block until ``predicate(latest)`` is true (or ``updates`` payloads arrived).

        With neither, waits for the first result. Returns that result's DataFrame.
        Raises ``TimeoutError`` after ``timeout`` seconds, and `LiveEndedError` if the
        subscription ends first (its error is the ``__cause__``).
        """

        def accept(state: LiveState) -> Frames | None:
            if state.payload is None or (updates is not None and state.updates < updates):
                return None
            frames = self._frames(state.payload)
            if frames is None or (predicate is not None and not predicate(frames)):
                return None
            return frames

        if updates is not None:
            what = f"{updates} update{'' if updates == 1 else 's'}"
        else:
            what = "result matching the predicate" if predicate is not None else "result"
        # mypy cannot solve the type variable through the Frames union on its own.
        return cast("Frames", self._wait_until(accept, timeout, what))

    async def _receive(self) -> None:
        opened = self._open()
        if hasattr(opened, "__aenter__"):
            async with opened as subscription:
                await self._consume(subscription)
        else:
            await self._consume(opened)

    async def _consume(self, subscription: AsyncIterator[Mapping[str, Any]]) -> None:
        self._subscription = subscription
        try:
            async for payload in subscription:
                self._on_payload(payload)
        finally:
            self._subscription = None

    def _on_payload(self, payload: Mapping[str, Any]) -> None:
        now = datetime.now().astimezone()
        state = self._state
        if payload.get("type") == "ok":
            self._was_connected = True
            self._publish(
                status="connected", payload=payload, updates=state.updates + 1, last_change=now
            )
            return
        error = payload.get("error")
        if not isinstance(error, BaseException):
            error = RuntimeError(f"subscription error: {error!r}")
        if payload.get("is_closed"):
            status: Status = "error"
        elif payload.get("ready_state") == "connecting":
            status = "reconnecting"
        else:
            status = "connected" if self._was_connected else "error"
        self._publish(status=status, error=error, errors=state.errors + 1)

    def _poll(self) -> None:
        # SDK subscriptions reconnect silently; their ready_state tells it.
        ready = getattr(self._subscription, "ready_state", None)
        status = self._state.status
        if ready == "connecting" and status == "connected":
            self._publish(status="reconnecting")
        elif ready == "open" and status == "reconnecting":
            self._publish(status="connected")

    @property
    def widget(self) -> LiveQueryWidget:
        """The widget showing this query (built on first use, in the calling thread)."""
        if self._widget is None:
            from .widgets import LiveQueryWidget

            self._attach(LiveQueryWidget(self))
        return self._widget  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        state = self._state
        return f"<LiveQuery {self._description}: {state.status}, {state.updates} updates>"


def live_query(
    db: Instant | AsyncInstant | ClientSpec,
    q: Mapping[str, Any],
    *,
    rule_params: Mapping[str, Any] | None = None,
    portal: Portal | None = None,
    render_interval: float = DEFAULT_RENDER_INTERVAL,
    display_limit: int = DEFAULT_DISPLAY_LIMIT,
    **frame_options: Any,
) -> LiveQuery:
    """Subscribe to ``q`` on the portal; returns a `LiveQuery` at once.

    ``frame_options`` go to `to_dataframe` for ``latest`` (``links``, ``schema`` ...).
    """
    if not isinstance(q, Mapping):
        raise TypeError(f"q must be a dict (an InstaQL query), got {type(q).__name__}")
    spec = _spec_of(db)
    portal = portal or get_portal()

    def open_subscription() -> Any:
        client = portal_client(portal, spec)
        return client.subscribe_query(q, rule_params=rule_params)

    names = ", ".join(str(key) for key in q) or "nothing"
    return LiveQuery(
        open_subscription,
        description=f"live query of {names}",
        portal=portal,
        frame_options=frame_options,
        render_interval=render_interval,
        display_limit=display_limit,
    )


# -- streams --------------------------------------------------------------------------------


class LiveStream(_LiveHandle[StreamState]):
    """A stream read as it is written. Build it with `read_stream`.

    ``text`` is everything received, ``byte_offset`` where a resumed read would start;
    ``status`` is ``connecting``, ``connected``, ``done`` (the writer finished),
    ``error`` or ``stopped``. Displaying it shows a `StreamWidget`.
    """

    def __init__(
        self,
        open_reader: Opener,
        *,
        byte_offset: int = 0,
        description: str = "stream",
        portal: Portal | None = None,
        render_interval: float = DEFAULT_RENDER_INTERVAL,
    ) -> None:
        self._open = open_reader
        # Text not yet shown by the widget (portal thread only). Kept only once a widget
        # exists, so an undisplayed stream holds its text once, in its state.
        self._unrendered: list[str] = []
        super().__init__(
            StreamState(byte_offset=byte_offset, start_offset=byte_offset),
            portal=portal,
            description=description,
            render_interval=render_interval,
            display_limit=0,
        )

    @property
    def text(self) -> str:
        return self._state.text

    @property
    def byte_offset(self) -> int:
        return self._state.byte_offset

    def wait_for(
        self,
        predicate: Callable[[str], object] | None = None,
        *,
        timeout: float | None = 10.0,
    ) -> str:
        """Block until ``predicate(text)`` is true, or (without one) the stream is done.

        Returns the text. ``TimeoutError`` after ``timeout`` seconds; `LiveEndedError` if
        the read ends first without the predicate holding.
        """

        def accept(state: StreamState) -> str | None:
            if predicate is None:
                return state.text if state.status == "done" else None
            return state.text if predicate(state.text) else None

        return self._wait_until(accept, timeout, "end" if predicate is None else "matching text")

    async def _receive(self) -> None:
        opened = self._open()
        if hasattr(opened, "__aenter__"):
            async with opened as reader:
                await self._consume(reader)
        else:
            await self._consume(opened)
        self._publish(status="done")

    async def _consume(self, reader: AsyncIterator[str]) -> None:
        async for chunk in reader:
            state = self._state
            if self._shown is not None:
                self._unrendered.append(chunk)
            self._publish(
                status="connected",
                text=state.text + chunk,
                byte_offset=state.byte_offset + len(chunk.encode("utf-8")),
                updates=state.updates + 1,
                last_change=datetime.now().astimezone(),
            )

    def _first_render(self) -> None:
        # Everything received before the widget was shown, then what follows.
        self._unrendered = [self._state.text]
        super()._first_render()

    def _take_unrendered(self) -> str:
        """The text received since the last call (portal thread only)."""
        chunks, self._unrendered = self._unrendered, []
        return "".join(chunks)

    @property
    def widget(self) -> StreamWidget:
        """The widget showing this stream (built on first use, in the calling thread)."""
        if self._widget is None:
            from .widgets import StreamWidget

            # The widget starts with nothing and is sent all text by the portal.
            self._attach(StreamWidget(self))
        return self._widget  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        state = self._state
        return f"<LiveStream {self._description}: {state.status}, byte offset {state.byte_offset}>"


def read_stream(
    db: Instant | AsyncInstant | ClientSpec,
    *,
    stream_id: str | None = None,
    client_id: str | None = None,
    byte_offset: int = 0,
    portal: Portal | None = None,
    render_interval: float = DEFAULT_RENDER_INTERVAL,
) -> LiveStream:
    """Read a stream on the portal as it is written; returns a `LiveStream` at once."""
    if (stream_id is None) == (client_id is None):
        raise ValueError("read_stream() takes exactly one of stream_id=... or client_id=...")
    if isinstance(byte_offset, bool) or not isinstance(byte_offset, int) or byte_offset < 0:
        raise ValueError(f"byte_offset must be a non-negative int, got {byte_offset!r}")
    spec = _spec_of(db)
    portal = portal or get_portal()

    def open_reader() -> Any:
        client = portal_client(portal, spec)
        key = {"stream_id": stream_id} if stream_id is not None else {"client_id": client_id}
        return client.streams.read(**key, byte_offset=byte_offset)

    name = f"stream {stream_id}" if stream_id is not None else f"stream of client {client_id}"
    return LiveStream(
        open_reader,
        byte_offset=byte_offset,
        description=name,
        portal=portal,
        render_interval=render_interval,
    )
