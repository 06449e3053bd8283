"""Live handles and their widgets, driven by scripted payloads (no kernel, no server).

ipywidgets work outside a kernel (their comm is a DummyComm), so trait values and
outputs can be asserted directly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from instantdb import InstantAPIError
from instantdb_notebook import LiveEndedError, LiveQuery, LiveStream, Portal

TIMEOUT = 10.0


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal(name="widget-portal") as p:
        yield p


def ok(*titles: str) -> dict[str, Any]:
    goals = [{"id": f"g{i}", "title": title} for i, title in enumerate(titles)]
    return {"type": "ok", "data": {"goals": goals}, "page_info": None, "session_info": None}


def error(message: str, *, ready_state: str, is_closed: bool) -> dict[str, Any]:
    exc = InstantAPIError(message, status=400, body={"message": message, "hint": {"k": 1}})
    return {"type": "error", "error": exc, "ready_state": ready_state, "is_closed": is_closed}


class Script:
    """An async iterator of payloads that the test feeds from its own thread."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._queue: asyncio.Queue[dict[str, Any] | None] | None = None
        self.ready_state = "open"
        self.closed = threading.Event()

    def __call__(self) -> AsyncIterator[dict[str, Any]]:
        self._queue = asyncio.Queue()
        return self._run()

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        assert self._queue is not None
        try:
            while (payload := await self._queue.get()) is not None:
                yield payload
        finally:
            self.closed.set()

    def send(self, payload: dict[str, Any] | None) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self._queue is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self._queue is not None
        self._portal.call_soon(self._queue.put_nowait, payload)


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_the_table_updates_in_place_and_the_status_counts(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    widget = live.widget
    assert "connecting" in widget.status.value
    script.send(ok("Ship"))
    live.wait_for(updates=1, timeout=TIMEOUT)
    script.send(ok("Ship", "Rest"))
    frame = live.wait_for(lambda df: len(df) == 2, timeout=TIMEOUT)
    assert list(frame["title"]) == ["Ship", "Rest"]
    eventually(lambda: "Rest" in widget.table.value and "2 updates" in widget.status.value)
    assert "connected" in widget.status.value
    assert "last change" in widget.status.value
    assert live.data == ok("Ship", "Rest")["data"]
    live.stop()
    assert live.status == "stopped"
    assert script.closed.is_set()  # the subscription was closed
    eventually(lambda: "stopped" in widget.status.value and widget.stop_button.disabled)


def test_widgets_are_mutated_from_the_portal_thread_only(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    widget = live.widget
    threads: set[str] = set()
    for child in (widget.status, widget.table):
        child.observe(lambda _c: threads.add(threading.current_thread().name), names="value")
    for n in range(5):
        script.send(ok(*[f"t{i}" for i in range(n + 1)]))
    live.wait_for(lambda df: len(df) == 5, timeout=TIMEOUT)
    live.stop()
    assert threads == {"widget-portal"}


def test_renders_are_coalesced_and_show_the_newest_result(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0.3)
    widget = live.widget
    renders: list[str] = []
    widget.table.observe(lambda change: renders.append(change["new"]), names="value")
    for n in range(40):
        script.send(ok(f"v{n}"))
    live.wait_for(updates=40, timeout=TIMEOUT)
    eventually(lambda: "v39" in widget.table.value)
    live.stop()
    assert live.updates == 40
    assert len(renders) < 10  # 40 payloads, a handful of redraws


def test_display_limit_caps_the_table_and_says_so(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0, display_limit=3)
    widget = live.widget
    script.send(ok(*[f"t{i}" for i in range(10)]))
    eventually(lambda: "showing 3 of 10 rows" in widget.table.value)
    assert "t2" in widget.table.value
    assert "t3" not in widget.table.value
    assert len(live.latest) == 10  # the data itself is complete
    live.stop()


def test_error_payloads_set_reconnecting_or_error(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    widget = live.widget
    script.send(ok("Ship"))
    live.wait_for(updates=1, timeout=TIMEOUT)
    script.send(error("server unreachable", ready_state="connecting", is_closed=False))
    eventually(lambda: live.status == "reconnecting")
    eventually(lambda: "reconnecting" in widget.status.value)
    assert "server unreachable" in widget.status.value
    script.send(ok("Ship", "Back"))
    eventually(lambda: live.status == "connected")
    script.send(error("Permission denied", ready_state="closed", is_closed=True))
    script.send(None)
    eventually(lambda: not live.running)
    assert live.status == "error"
    assert isinstance(live.error, InstantAPIError)
    eventually(lambda: "Permission denied" in widget.status.value and "hint" in widget.status.value)
    # The last good result stays visible.
    assert list(live.latest["title"]) == ["Ship", "Back"]


def test_polling_the_subscription_state_shows_silent_reconnects(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    script.send(ok("Ship"))
    live.wait_for(updates=1, timeout=TIMEOUT)
    live._subscription = script  # as an SDK subscription, it has a ready_state
    script.ready_state = "connecting"
    eventually(lambda: live.status == "reconnecting")
    script.ready_state = "open"
    eventually(lambda: live.status == "connected")
    live.stop()


def test_wait_for_times_out_with_what_it_saw(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, description="live query of goals")
    script.send(ok("Ship"))
    with pytest.raises(TimeoutError, match=r"live query of goals: no result matching .* 0.2 s"):
        live.wait_for(lambda df: len(df) > 5, timeout=0.2)
    live.stop()


def test_wait_for_raises_when_the_subscription_ends_first(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal)
    script.send(error("Permission denied", ready_state="closed", is_closed=True))
    script.send(None)
    with pytest.raises(LiveEndedError, match="Permission denied") as info:
        live.wait_for(timeout=TIMEOUT)
    assert isinstance(info.value.__cause__, InstantAPIError)


def test_a_failing_source_is_an_error_status(portal: Portal) -> None:
    def broken() -> Any:
        raise ConnectionRefusedError("no server")

    live = LiveQuery(broken, portal=portal)
    eventually(lambda: not live.running)
    assert live.status == "error"
    assert isinstance(live.error, ConnectionRefusedError)


def test_the_stop_button_stops_the_query(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    widget = live.widget
    script.send(ok("Ship"))
    live.wait_for(updates=1, timeout=TIMEOUT)
    widget.stop_button.click()
    eventually(lambda: not live.running)
    assert live.status == "stopped"
    assert script.closed.wait(TIMEOUT)


def test_mimebundle_carries_the_widget_and_an_html_snapshot(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    script.send(ok("Ship & <b>Rest</b>"))
    live.wait_for(updates=1, timeout=TIMEOUT)
    eventually(lambda: "Ship" in live.widget.table.value)
    bundle = live._repr_mimebundle_()
    assert bundle is not None
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == live.widget.model_id
    assert "Ship &amp; &lt;b&gt;Rest&lt;/b&gt;" in bundle["text/html"]  # escaped
    assert "<table" in bundle["text/html"]
    assert bundle["text/plain"].startswith("<LiveQuery")
    live.stop()


def test_several_namespaces_give_a_dict_of_frames(portal: Portal) -> None:
    script = Script(portal)
    live = LiveQuery(script, portal=portal, render_interval=0)
    widget = live.widget
    payload = {"type": "ok", "data": {"goals": [{"id": "g1"}], "todos": [{"id": "t1"}]}}
    script.send(payload)
    frames = live.wait_for(timeout=TIMEOUT)
    assert sorted(frames) == ["goals", "todos"]
    eventually(lambda: "<h4>todos</h4>" in widget.table.value)
    live.stop()


# -- streams ---------------------------------------------------------------------------------


def chunks(*parts: str, pause: float = 0.0) -> Callable[[], AsyncIterator[str]]:
    async def reader() -> AsyncIterator[str]:
        for part in parts:
            yield part
            await asyncio.sleep(pause)

    return reader


def test_stream_widget_appends_chunks_and_shows_the_byte_offset(portal: Portal) -> None:
    stream = LiveStream(chunks("héllo ", "wörld", "."), portal=portal, render_interval=0)
    widget = stream.widget
    assert stream.wait_for(timeout=TIMEOUT) == "héllo wörld."
    assert stream.byte_offset == len("héllo wörld.".encode())  # 14 bytes, 12 characters
    eventually(lambda: "done" in widget.status.value)
    assert f"byte offset {stream.byte_offset}" in widget.status.value
    text = "".join(output["text"] for output in widget.output.outputs)
    assert text == "héllo wörld."
    assert all(output["name"] == "stdout" for output in widget.output.outputs)


def test_stream_renders_coalesce_chunks(portal: Portal) -> None:
    parts = [f"{i} " for i in range(30)]
    stream = LiveStream(chunks(*parts, pause=0.005), portal=portal, render_interval=0.2)
    widget = stream.widget
    stream.wait_for(timeout=TIMEOUT)
    eventually(lambda: "done" in widget.status.value)
    outputs = widget.output.outputs
    assert "".join(o["text"] for o in outputs) == "".join(parts)
    assert len(outputs) < len(parts)


def test_stream_started_at_an_offset_counts_from_there(portal: Portal) -> None:
    stream = LiveStream(chunks("abc"), byte_offset=10, portal=portal)
    stream.wait_for(timeout=TIMEOUT)
    assert stream.byte_offset == 13
    assert stream.state.start_offset == 10


def test_stream_wait_for_a_predicate_and_stop(portal: Portal) -> None:
    async def endless() -> AsyncIterator[str]:
        n = 0
        while True:
            yield f"{n},"
            n += 1
            await asyncio.sleep(0.01)

    stream = LiveStream(endless, portal=portal)
    text = stream.wait_for(lambda t: "5," in t, timeout=TIMEOUT)
    assert text.startswith("0,1,2,3,4,5,")
    stream.stop()
    assert stream.status == "stopped"
    with pytest.raises(LiveEndedError, match="stopped"):
        stream.wait_for(timeout=TIMEOUT)


def test_stream_snapshot_is_escaped_html(portal: Portal) -> None:
    stream = LiveStream(chunks("<script>x</script>"), portal=portal, render_interval=0)
    stream.wait_for(timeout=TIMEOUT)
    bundle = stream.widget._repr_mimebundle_()
    assert "&lt;script&gt;" in bundle["text/html"]
    assert "<script>" not in bundle["text/html"]


def test_a_stream_widget_made_late_shows_everything_exactly_once(portal: Portal) -> None:
    async def slow() -> AsyncIterator[str]:
        for n in range(40):
            yield f"{n};"
            await asyncio.sleep(0.002)

    stream = LiveStream(slow, portal=portal, render_interval=0)
    stream.wait_for(lambda text: "10;" in text, timeout=TIMEOUT)
    assert stream._unrendered == []  # nothing kept twice while nobody watches
    widget = stream.widget  # made while chunks keep arriving
    stream.wait_for(timeout=TIMEOUT)
    eventually(lambda: "done" in widget.status.value)
    shown = "".join(output["text"] for output in widget.output.outputs)
    assert shown == "".join(f"{n};" for n in range(40))


def test_a_widget_made_after_the_end_shows_the_final_state(portal: Portal) -> None:
    stream = LiveStream(chunks("all ", "of it"), portal=portal, render_interval=0)
    stream.wait_for(timeout=TIMEOUT)
    eventually(lambda: not stream.running)
    widget = stream.widget
    eventually(lambda: "done" in widget.status.value)
    assert "".join(o["text"] for o in widget.output.outputs) == "all of it"


def test_no_token_in_widget_state_or_reprs(portal: Portal, instant_server: Any) -> None:
    # Against the real local server, whatever state the subscription reaches (connected,
    # or an error if the server has no live routes), nothing shows the tokens.
    from instantdb import Instant
    from instantdb_notebook import live_query

    app = instant_server.create_app("widget-secrets")
    with Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as db:
        refresh = db.auth.create_token(email="ann@example.com")
        handles = [
            live_query(db, {"goals": {}}, portal=portal, render_interval=0),
            live_query(db.as_user(token=refresh), {"goals": {}}, portal=portal, render_interval=0),
        ]
        for live in handles:
            widget = live.widget
            eventually(lambda live=live: live.status != "connecting")
            eventually(lambda w=widget: "&#9679; connecting" not in w.status.value)
            states = [widget.get_state(), *(c.get_state() for c in widget.children)]
            shown = repr(states) + repr(live) + repr(live.state) + str(live.error)
            shown += str(live._repr_mimebundle_())
            assert app.admin_token not in shown
            assert refresh not in shown
            live.stop()
