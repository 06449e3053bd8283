"""Live widgets with the real SDK against the local server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from instantdb import AsyncInstant, Instant
from instantdb import id as new_id
from instantdb_local import AppCredentials, LocalServer
from instantdb_notebook import LiveQuery, LiveStream, Portal, live_query, read_stream, submit_async

# Without the live routes these are expected to fail: fail fast.
TIMEOUT = 20.0
RULES = {"goals": {"allow": {"view": "data.title != 'private'"}}}


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal(name="sdk-portal") as p:
        yield p


@pytest.fixture
def app(instant_server: LocalServer) -> AppCredentials:
    return instant_server.create_app("live-widgets", rules=RULES)


@pytest.fixture
def db(app: AppCredentials) -> Iterator[Instant]:
    with Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as client:
        yield client


def widget_state(widget: Any) -> str:
    states = [widget.get_state(), *(child.get_state() for child in widget.children)]
    return json.dumps(states, default=str)


def test_a_live_query_follows_transactions(
    db: Instant, portal: Portal, app: AppCredentials
) -> None:
    live = live_query(db, {"goals": {}}, portal=portal, render_interval=0)
    widget = live.widget
    assert live.wait_for(timeout=TIMEOUT).empty
    db.transact(db.tx.goals[new_id()].update({"title": "Ship"}))
    frame = live.wait_for(lambda df: len(df) == 1, timeout=TIMEOUT)
    assert list(frame["title"]) == ["Ship"]
    db.transact(db.tx.goals[new_id()].update({"title": "private"}))
    live.wait_for(lambda df: len(df) == 2, timeout=TIMEOUT)
    assert live.status == "connected"
    live.stop()
    assert live.status == "stopped"
    assert "private" in widget.table.value
    assert app.admin_token not in widget_state(widget)
    assert app.admin_token not in repr(live) + repr(live.state)


def test_a_live_query_as_a_guest_sees_what_the_rules_allow(db: Instant, portal: Portal) -> None:
    db.transact(
        [
            db.tx.goals[new_id()].update({"title": "public"}),
            db.tx.goals[new_id()].update({"title": "private"}),
        ]
    )
    live = live_query(db.as_user(guest=True), {"goals": {}}, portal=portal)
    frame = live.wait_for(timeout=TIMEOUT)
    assert list(frame["title"]) == ["public"]
    live.stop()


def test_an_async_client_works_too_and_bad_queries_end_in_error(
    app: AppCredentials, portal: Portal, db: Instant
) -> None:
    db.transact(db.tx.goals[new_id()].update({"title": "Ship"}))  # title exists, unindexed
    adb = AsyncInstant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri)
    live = live_query(adb, {"goals": {"$": {"where": {"title": {"$gt": 1}}}}}, portal=portal)
    live.widget  # noqa: B018 - built before the error arrives
    with pytest.raises(Exception, match="indexed"):
        live.wait_for(timeout=TIMEOUT)
    assert live.status == "error"
    assert app.admin_token not in widget_state(live.widget)


def test_a_stream_widget_follows_a_writer(db: Instant, portal: Portal, app: AppCredentials) -> None:
    started = threading.Event()
    go_on = threading.Event()

    async def write(adb: AsyncInstant) -> str:
        async with adb.streams.write(client_id="story", timeout=TIMEOUT) as writer:
            stream_id = await writer.stream_id
            started.set()
            await writer.write("héllo ")
            await asyncio.get_running_loop().run_in_executor(None, go_on.wait, TIMEOUT)
            await writer.write("world")
        return stream_id

    writing = submit_async(db, write, portal=portal)
    assert started.wait(TIMEOUT)
    stream = read_stream(db, client_id="story", portal=portal, render_interval=0)
    widget = stream.widget
    assert stream.wait_for(lambda text: text == "héllo ", timeout=TIMEOUT)
    assert stream.status == "connected"
    go_on.set()
    assert stream.wait_for(timeout=TIMEOUT) == "héllo world"
    writing.result(timeout=TIMEOUT)
    assert stream.byte_offset == len("héllo world".encode())
    assert stream.status == "done"
    again = read_stream(db, stream_id=writing.result(), byte_offset=7, portal=portal)
    assert again.wait_for(timeout=TIMEOUT) == "world"
    assert app.admin_token not in widget_state(widget)


# -- through the magic -------------------------------------------------------------------------


def test_live_and_stream_magics(
    shell: InteractiveShell, db: Instant, app: AppCredentials, clean_env: pytest.MonkeyPatch
) -> None:
    for key, value in app.env.items():
        clean_env.setenv(key, value)
    result = shell.run_cell("%instant --live -o live goals")
    assert result.success
    live = shell.user_ns["live"]
    assert isinstance(live, LiveQuery)
    live.wait_for(timeout=TIMEOUT)
    db.transact(db.tx.goals[new_id()].update({"title": "via magic"}))
    assert list(live.wait_for(lambda df: len(df) == 1, timeout=TIMEOUT)["title"]) == ["via magic"]
    live.stop()

    guest = shell.run_cell("%instant --live --guest goals").result
    db.transact(db.tx.goals[new_id()].update({"title": "private"}))
    assert list(guest.wait_for(lambda df: len(df) >= 1, timeout=TIMEOUT)["title"]) == ["via magic"]
    guest.stop()

    with db.streams.write(client_id="log") as stream_writer:
        stream_writer.write("line 1\n")
    stream = shell.run_cell("%instant --stream-client log").result
    assert isinstance(stream, LiveStream)
    assert stream.wait_for(timeout=TIMEOUT) == "line 1\n"
