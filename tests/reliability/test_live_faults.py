"""Subscriptions and streams across faults, with both clients: event streams cut in the
middle of an event (through `FaultProxy`), and the server killed with SIGKILL and
restarted (`ServerProcess`).

What must hold (docs/reliability.md, On reconnect):

* a subscription resumes and its newest payload is the fresh result (no lost final
  state), and it never yields a payload equal to the one before it;
* a stream reader delivers every byte once: the SHA-256 of the whole text, multi-byte
  characters split across writes included, is that of what was written;
* a writer resumes and every byte it wrote is in the stream once;
* a writer that cannot reach the server ends in a clear `InstantError`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from instantdb import Instant, InstantTimeoutError, id
from instantdb_local.instance import AppCredentials
from tests.reliability._clients import KINDS, admin_client
from tests.reliability._faults import CutResponse, FaultProxy, ResetAfterForward, Respond
from tests.reliability._live import (
    WAIT,
    Subscriber,
    digest,
    read_stream,
    repeated_payloads,
    write_stream,
)
from tests.reliability._process import ServerProcess, integrity_problems

GOALS = {"goals": {"$": {"order": {"serverCreatedAt": "asc"}}}}

# Text whose characters take 1 to 4 bytes; parts are cut at byte offsets that split
# characters, so the reader must put them back together.
TEXT = "".join(f"{n:05d} héllo wörld ✓ 中文 🎉\n" for n in range(400))
_RAW = TEXT.encode()
PARTS: list[bytes] = [_RAW[i : i + 997] for i in range(0, len(_RAW), 997)]


def _fresh(creds: AppCredentials) -> Any:
    with admin_client(creds) as db:
        return db.query(GOALS)


def _add_goal(creds: AppCredentials, title: str) -> None:
    with admin_client(creds) as db:
        db.transact(db.tx.goals[id()].update({"title": title}))


def _check_subscriber(subscriber: Subscriber, creds: AppCredentials) -> None:
    fresh = _fresh(creds)
    assert subscriber.wait_for_data(fresh), (subscriber.ok_data()[-1:], fresh)
    assert repeated_payloads(subscriber.payloads) == []
    assert [p for p in subscriber.payloads if p["type"] == "error"] == []


# -- subscriptions ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_subscription_cut_mid_event_resumes_with_the_fresh_result(
    kind: str, app: AppCredentials, proxy: FaultProxy
) -> None:
    # The first connection is cut inside its first event, the second after a few
    # results, inside a later one.
    proxy.plan(
        CutResponse(body_bytes=40), CutResponse(body_bytes=700), path="/admin/subscribe-query"
    )
    with Subscriber(kind, app, GOALS, api_uri=proxy.url) as subscriber:
        for n in range(6):
            _add_goal(app, f"goal {n} ✓")
            _check_subscriber(subscriber, app)
    cut = [e for e in proxy.to("/admin/subscribe-query") if e.fault == "CutResponse"]
    assert len(cut) == 2
    assert len(proxy.to("/admin/subscribe-query")) == 3  # resumed after each cut


@pytest.mark.parametrize("kind", KINDS)
def test_a_subscription_answered_503_then_429_reconnects_and_delivers(
    kind: str, app: AppCredentials, proxy: FaultProxy
) -> None:
    # A gateway in trouble, then a rate limiter asking for a second: both are transient,
    # so the subscription keeps trying (after the wait asked for) and then delivers.
    rate_limited = b'{"type": "rate-limited", "message": "slow down"}'
    proxy.plan(
        Respond(503, b"upstream unavailable", (("content-type", "text/plain"),)),
        Respond(429, rate_limited, (("content-type", "application/json"), ("retry-after", "1"))),
        path="/admin/subscribe-query",
    )
    _add_goal(app, "before")
    with Subscriber(kind, app, GOALS, api_uri=proxy.url) as subscriber:
        assert subscriber.wait_for_data(_fresh(app))
        _add_goal(app, "after")
        assert subscriber.wait_for_data(_fresh(app))
    answered = [e.fault for e in proxy.to("/admin/subscribe-query")]
    assert answered[:2] == ["Respond", "Respond"]
    assert len(answered) == 3  # the third attempt got through and stayed open
    assert subscriber.error is None
    assert repeated_payloads(subscriber.payloads) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_subscription_dropped_between_events_repeats_no_payload(
    kind: str, app: AppCredentials, proxy: FaultProxy
) -> None:
    # Nothing changes while it is away: the fresh result equals the last one delivered,
    # which the subscriber must not see twice.
    _add_goal(app, "only")
    with Subscriber(kind, app, GOALS, api_uri=proxy.url) as subscriber:
        _check_subscriber(subscriber, app)
        for _ in range(2):
            proxy.pause()  # drops the established event stream too
            proxy.resume()
            assert _wait_for_connections(proxy, "/admin/subscribe-query", 1 + _ + 1)
        _add_goal(app, "after")
        _check_subscriber(subscriber, app)
    assert len(subscriber.ok_data()) == 2


def _wait_for_connections(proxy: FaultProxy, path: str, count: int) -> bool:
    """Until ``count`` requests to ``path`` have been answered (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if sum(e.status is not None for e in proxy.to(path)) >= count:
            time.sleep(0.2)  # time for the answer's first events to arrive
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def killable(tmp_path: Path) -> Any:
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize("kind", KINDS)
def test_a_subscription_resumes_after_the_server_is_killed(
    kind: str, killable: ServerProcess
) -> None:
    creds = killable.credentials
    assert creds is not None
    with Subscriber(kind, creds, GOALS) as subscriber:
        _add_goal(creds, "before")
        _check_subscriber(subscriber, creds)
        # Acknowledged just before the kill: the subscriber may not have seen it yet.
        _add_goal(creds, "acknowledged, then killed")
        killable.kill()
        killable.start()
        _check_subscriber(subscriber, creds)  # the final state is not lost
        _add_goal(creds, "after the restart")
        _check_subscriber(subscriber, creds)
    titles = [g["title"] for g in subscriber.ok_data()[-1]["goals"]]
    assert titles == ["before", "acknowledged, then killed", "after the restart"]


# -- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_cut_mid_event_loses_and_repeats_no_byte(
    kind: str, app: AppCredentials, proxy: FaultProxy
) -> None:
    # The writer's session is cut twice mid-event and one push loses its answer; then the
    # reader's session is cut twice. Sessions and pushes resume where they were.
    proxy.plan(CutResponse(body_bytes=30), CutResponse(body_bytes=900), path="/admin/sse")
    proxy.plan(ResetAfterForward(), path="/admin/sse/push")
    counts = write_stream(kind, app, "cut", PARTS, api_uri=proxy.url)
    assert counts == {"written": len(_RAW), "flushed": len(_RAW)}
    proxy.plan(CutResponse(body_bytes=30), CutResponse(body_bytes=5000), path="/admin/sse")
    text = read_stream(kind, app, "cut", api_uri=proxy.url)
    assert digest(text) == digest(TEXT)
    assert read_stream(kind, app, "cut") == TEXT  # and directly, without the proxy


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_written_across_a_server_kill_is_whole(kind: str, killable: ServerProcess) -> None:
    creds = killable.credentials
    assert creds is not None

    def kill_midway(part: int) -> None:
        if part == len(PARTS) // 2:
            killable.kill()
            killable.start()

    counts = write_stream(kind, creds, "killed", PARTS, between=kill_midway)
    assert counts == {"written": len(_RAW), "flushed": len(_RAW)}
    assert digest(read_stream(kind, creds, "killed")) == digest(TEXT)
    with admin_client(creds) as db:
        (row,) = db.query({"$streams": {"$": {"where": {"clientId": "killed"}}}})["$streams"]
    assert row["size"] == len(_RAW)
    assert row["done"] is True


def test_flushed_stream_bytes_survive_sigkill(killable: ServerProcess) -> None:
    """The durability promise: every byte a ``stream-flushed`` acknowledged is there after
    a SIGKILL, and nothing beyond what was sent."""
    creds = killable.credentials
    assert creds is not None
    db = Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri)
    writer = db.streams.write(client_id="durable", timeout=2)
    sent = 0
    parts = iter(PARTS)
    for part in parts:
        writer.write(part)
        sent += len(part)
        # A checkpoint at a whole character: ending the stream mid-character is refused.
        if sent >= len(_RAW) // 3 and _whole_text(_RAW[:sent]):
            break
    writer.flush()  # writes return once buffered: wait for the server's confirmation
    checkpoint = writer.bytes_flushed
    assert checkpoint == sent
    # The rest goes out as fast as the writer takes it, and the server is killed with
    # pushes in flight: what was acknowledged by then must survive, whatever it is.
    for part in parts:
        writer.write(part)
        sent += len(part)
    flushed = writer.bytes_flushed
    assert checkpoint <= flushed <= sent
    killable.kill()
    with pytest.raises(InstantTimeoutError):
        writer.close()  # the server is gone: the end is never confirmed
    db.close()
    killable.start()
    stored = _read_unfinished(creds, "durable", at_least=flushed)
    assert flushed <= len(stored) <= sent
    assert stored == _RAW[: len(stored)]
    # The bytes live in part files (streams/<id>/<n>); none holds more than was sent.
    files = [
        p for p in killable.data_dir.rglob("*") if p.is_file() and p.parent.parent.name == "streams"
    ]
    assert files
    assert sum(p.stat().st_size for p in files) <= sent
    # The data dir opens cleanly: every database in it passes SQLite's checks.
    databases = sorted(killable.data_dir.rglob("*.sqlite3"))
    assert databases
    for database in databases:
        assert integrity_problems(database) == [], database


def _whole_text(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _read_unfinished(creds: AppCredentials, client_id: str, *, at_least: int) -> bytes:
    """What an unfinished stream holds: read until ``at_least`` bytes came and then no
    more for a moment (an unfinished stream's reader never ends by itself)."""
    db = Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri)
    reader = db.streams.read(client_id=client_id, as_bytes=True)
    data = bytearray()
    grew = threading.Condition()

    def read() -> None:
        for chunk in reader:
            with grew:
                data.extend(chunk)
                grew.notify_all()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    with grew:
        assert grew.wait_for(lambda: len(data) >= at_least, WAIT)
        while grew.wait(0.3):  # until a quiet moment: all that is stored has come
            pass
    reader.close()
    thread.join(WAIT)
    db.close()
    return bytes(data)


@pytest.mark.parametrize("kind", KINDS)
def test_a_writer_that_cannot_reach_the_server_fails_clearly(
    kind: str, app: AppCredentials, proxy: FaultProxy
) -> None:
    proxy.pause()  # connections refused for the whole attempt
    started = time.monotonic()
    with pytest.raises(InstantTimeoutError) as caught:
        write_stream_with_timeout(kind, app, proxy.url)
    assert "stream" in str(caught.value)
    assert time.monotonic() - started < WAIT  # bounded by the writer's own timeout
    proxy.resume()


def write_stream_with_timeout(kind: str, creds: AppCredentials, api_uri: str) -> None:
    import asyncio

    from instantdb import AsyncInstant

    if kind == "sync":
        db = Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=api_uri)
        with db, db.streams.write(client_id="unreachable", timeout=0.5) as writer:
            writer.write("never sent")
        return

    async def run() -> None:
        async with (
            AsyncInstant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=api_uri) as db,
            db.streams.write(client_id="unreachable", timeout=0.5) as writer,
        ):
            await writer.write("never sent")

    asyncio.run(run())
