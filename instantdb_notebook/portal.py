"""The portal: a private asyncio event loop in a background thread, owned by this package.

Subscriptions and streams are asyncio-only, but notebook code is synchronous and the
kernel's own loop is starved whenever a cell blocks (``time.sleep``, a long pandas step,
a ``.result()`` wait). So live work runs on a loop of our own, in a daemon thread, and
keeps running while cells block. Everything async that the notebook layer creates (its
``AsyncInstant`` clients, their ``httpx.AsyncClient`` pools, subscription tasks) lives on
that one loop and is only touched from its thread: an httpx pool must never be shared
across loops.

::

    portal = get_portal()                     # the process-wide portal, started on first use
    future = portal.submit(db.query({...}))   # a PortalFuture
    future.result(timeout=10)                 # blocks; Ctrl-C cancels the coroutine

`get_portal` registers an ``atexit`` hook, so the loop's tasks are cancelled and its
clients closed when the kernel shuts down. No ``nest_asyncio``: nothing here patches the
kernel's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from instantdb import InstantError

__all__ = ["Portal", "PortalClosedError", "PortalFuture", "get_portal"]

logger = logging.getLogger("instantdb_notebook")

T = TypeVar("T")

_START_TIMEOUT_SECONDS = 10.0
_CLOSE_TIMEOUT_SECONDS = 5.0
_LAST_CHANCE_SECONDS = 1.0


class PortalClosedError(InstantError, RuntimeError):
    """Work was handed to a portal that has been closed."""


class PortalFuture(Generic[T]):
    """The blocking side of a coroutine running on the portal.

    ``result(timeout)`` waits for it. If the wait is interrupted (Ctrl-C in a notebook,
    which raises ``KeyboardInterrupt`` in the waiting thread), the coroutine is cancelled
    on the portal loop before the interrupt propagates, so nothing keeps running
    unseen. In an async cell, ``await future`` works too.
    """

    def __init__(self, future: concurrent.futures.Future[T], description: str) -> None:
        self._future = future
        self._description = description

    def result(self, timeout: float | None = None) -> T:
        """The coroutine's result; raises what it raised.

        ``TimeoutError`` if it has not finished within ``timeout`` seconds (it keeps
        running: call `cancel` to stop it).
        """
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            if self._future.done():  # it finished just now; report its real outcome
                return self._future.result()
            raise TimeoutError(
                f"{self._description} did not finish within {timeout:g} s; it is still "
                "running on the portal (call .cancel() to stop it)"
            ) from None
        except KeyboardInterrupt:
            self._future.cancel()
            raise

    def cancel(self) -> bool:
        """Cancel the coroutine on the portal loop; False if it had already finished."""
        return self._future.cancel()

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<PortalFuture {self._description} {state}>"


class Portal:
    """A private event loop running forever in a daemon thread.

    Start it with `start` (or use `get_portal`). Hand it coroutines with `submit` /
    `call`, plain callables with `call_soon`. `add_cleanup` registers an async closer
    (a client's ``aclose``) that `close` awaits before stopping the loop.
    """

    def __init__(self, name: str = "instantdb-portal") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._cleanups: list[Callable[[], Awaitable[None]]] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Portal:
        """Start the loop thread; returns once the loop runs. Starting twice is a no-op."""
        with self._lock:
            if self._closed:
                raise PortalClosedError(f"the portal {self._name!r} has been closed")
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            running = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(loop, running), name=self._name, daemon=True
            )
            thread.start()
            if not running.wait(_START_TIMEOUT_SECONDS):  # pragma: no cover - a broken host
                raise RuntimeError(f"the portal thread {self._name!r} did not start")
            self._loop, self._thread = loop, thread
        return self

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, running: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        try:
            loop.run_forever()
        finally:
            try:
                # Tasks that outlived close()'s wait get one more bounded chance to
                # finish their cleanup while the loop can still run it.
                leftover = asyncio.all_tasks(loop)
                for task in leftover:
                    task.cancel()
                if leftover:
                    loop.run_until_complete(asyncio.wait(leftover, timeout=_LAST_CHANCE_SECONDS))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def close(self, timeout: float = _CLOSE_TIMEOUT_SECONDS) -> None:
        """Run the cleanups, cancel every task, stop the loop and join the thread.

        Bounded by ``timeout`` seconds in all; safe to call twice and from ``atexit``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("a portal cannot be closed from its own thread")
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(timeout), loop).result(timeout + 1)
        except Exception:
            logger.warning("The notebook portal did not shut down cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():  # pragma: no cover - a task that ignores cancellation
            logger.warning("The notebook portal thread did not stop within %s s", timeout)

    async def _shutdown(self, timeout: float) -> None:
        cleanups, self._cleanups = self._cleanups, []
        if cleanups:
            try:
                results = await asyncio.wait_for(
                    asyncio.gather(*(cleanup() for cleanup in cleanups), return_exceptions=True),
                    timeout / 2,
                )
            except asyncio.TimeoutError:
                logger.warning("The notebook portal's cleanups did not finish in time")
                results = []
            for result in results:
                if isinstance(result, BaseException):
                    logger.warning("A portal cleanup failed: %r", result)
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout / 2)

    def __enter__(self) -> Portal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._thread else "not started"
        return f"<Portal {self._name!r} {state}>"

    # -- handing work over ----------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's loop (starting the portal if needed)."""
        if self._loop is None:
            self.start()
        assert self._loop is not None
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def in_portal_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(
        self, coroutine: Coroutine[Any, Any, T], description: str | None = None
    ) -> PortalFuture[T]:
        """Schedule ``coroutine`` on the portal loop; returns at once."""
        loop = self._running_loop(coroutine)
        name = description or str(getattr(coroutine, "__qualname__", "a coroutine"))
        return PortalFuture(asyncio.run_coroutine_threadsafe(coroutine, loop), name)

    def call(
        self,
        coroutine: Coroutine[Any, Any, T],
        timeout: float | None = None,
        description: str | None = None,
    ) -> T:
        """Run ``coroutine`` on the portal and wait for its result (see `PortalFuture`)."""
        if self.in_portal_thread():
            coroutine.close()
            raise RuntimeError(
                "Portal.call() was used from the portal's own thread, which would wait "
                "forever; await the coroutine instead"
            )
        return self.submit(coroutine, description).result(timeout)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback(*args)`` on the portal thread, soon; returns at once."""
        self._running_loop().call_soon_threadsafe(callback, *args)

    def add_cleanup(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Await ``cleanup()`` on the portal loop when the portal closes."""
        with self._lock:
            if self._closed:
                raise PortalClosedError(f"the portal {self._name!r} has been closed")
            self._cleanups.append(cleanup)

    def remove_cleanup(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        with self._lock:
            if cleanup in self._cleanups:
                self._cleanups.remove(cleanup)

    def _running_loop(self, coroutine: Coroutine[Any, Any, Any] | None = None) -> Any:
        if self._closed:
            if coroutine is not None:
                coroutine.close()  # never awaited: close it so Python does not warn
            raise PortalClosedError(
                f"the portal {self._name!r} has been closed (the kernel is shutting down, "
                "or close() was called); restart the kernel to run live work again"
            )
        return self.loop


_default: Portal | None = None
_default_lock = threading.Lock()


def get_portal() -> Portal:
    """The process-wide portal, started on first use and closed at interpreter exit."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Portal().start()
            atexit.register(_default.close)
        return _default
