"""The portal: a private event loop thread with a blocking facade."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from instantdb_notebook.portal import Portal, PortalClosedError


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal(name="test-portal") as p:
        yield p


def test_runs_coroutines_on_its_own_thread(portal: Portal) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert portal.call(where(), timeout=5) == "test-portal"


def test_result_raises_what_the_coroutine_raised(portal: Portal) -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        portal.submit(fail()).result(timeout=5)


def test_a_timeout_says_the_work_is_still_running(portal: Portal) -> None:
    release = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        return 7

    future = portal.submit(slow(), description="slow work")
    with pytest.raises(TimeoutError, match=r"slow work did not finish within 0.05 s"):
        future.result(timeout=0.05)
    assert not future.done()
    portal.call_soon(release.set)
    assert future.result(timeout=5) == 7


def test_keyboard_interrupt_cancels_the_coroutine_on_the_portal(portal: Portal) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = portal.submit(forever())
    assert started.wait(5)
    # A real SIGINT, as Jupyter's Stop button sends, delivered while result() waits.
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            future.result(timeout=10)
    finally:
        timer.join()
    assert cancelled.wait(5)
    assert future.cancelled()


def test_await_from_another_loop(portal: Portal) -> None:
    async def on_portal() -> str:
        return threading.current_thread().name

    async def caller() -> str:
        return await portal.submit(on_portal())

    assert asyncio.run(caller()) == "test-portal"


def test_call_from_the_portal_thread_is_refused(portal: Portal) -> None:
    async def inner() -> None:
        return None

    async def outer() -> None:
        portal.call(inner())

    with pytest.raises(RuntimeError, match="would wait forever"):
        portal.call(outer(), timeout=5)


def test_close_runs_cleanups_cancels_tasks_and_stops_the_thread() -> None:
    portal = Portal(name="closing").start()
    cleaned, cancelled = threading.Event(), threading.Event()

    async def cleanup() -> None:
        cleaned.set()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    portal.add_cleanup(cleanup)
    portal.submit(forever())
    thread = portal._thread
    portal.close(timeout=5)
    assert cleaned.is_set()
    assert cancelled.is_set()
    assert thread is not None
    assert not thread.is_alive()
    portal.close()  # twice is fine


def test_a_closed_portal_refuses_work_and_closes_the_coroutine() -> None:
    portal = Portal().start()
    portal.close()

    async def work() -> None:
        return None

    coroutine = work()
    with pytest.raises(PortalClosedError, match="restart the kernel"):
        portal.submit(coroutine)
    assert coroutine.cr_frame is None  # closed, so Python does not warn it was never awaited
    with pytest.raises(PortalClosedError):
        portal.start()
