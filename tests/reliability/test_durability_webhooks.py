"""Webhook events survive the server being killed: every committed transaction that a
webhook matches is delivered after a restart, including one killed between the app's
commit and the recording of its events (the window the engine's outbox covers).

The server is ``instantdb-local serve`` in a child process (`ServerProcess`); deliveries
go to a `Receiver` on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from instantdb import Instant, InstantError, InstantNetworkError, id
from instantdb_local.instance import AppCredentials
from tests.local.webhooks.receiver import Delivery, Receiver
from tests.reliability._crash_serve import CRASH_BEFORE_EVENT
from tests.reliability._process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
FAST_RETRIES = {"INSTANTDB_LOCAL_WEBHOOK_RETRY_SCHEDULE": "0.05,0.1,0.2", "PYTHONPATH": str(REPO)}
DELIVERY_WAIT = 30.0  # a bound on waiting for deliveries; a healthy run needs far less
WRITERS = 2
ACKS_BEFORE_KILL = 40


def _client(creds: AppCredentials) -> Instant:
    return Instant(
        app_id=creds.app_id,
        admin_token=creds.admin_token,
        api_uri=creds.api_uri,
        retry=False,
        timeout=httpx.Timeout(15.0),
    )


def _isn(delivery: Delivery) -> str:
    url = json.loads(delivery.body)["payloadUrl"]
    return str(url.split("/webhooks/payload/")[1].split("/", 2)[2])


def _delivered(receiver: Receiver, wanted: set[str]) -> set[str]:
    """The ISNs delivered once all of ``wanted`` have been (or the wait ran out)."""
    deadline = time.monotonic() + DELIVERY_WAIT
    while True:
        seen = {_isn(d) for d in list(receiver.deliveries)}
        if wanted <= seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def _committed_tx_ids(creds: AppCredentials, namespace: str) -> dict[str, int]:
    """Key -> the tx that created it, for every ``namespace`` row the server holds."""
    with _client(creds) as db:
        rows = db.query({namespace: {}})[namespace]
    return {row["key"]: row["tx"] for row in rows}


def _watch_goals(creds: AppCredentials, receiver: Receiver) -> None:
    with _client(creds) as db:
        db.transact(db.tx.goals[id()].update({"key": "before-the-webhook", "tx": 0}))
        db.webhooks.manager.create(url=receiver.url, namespaces=["goals"], actions=["create"])


def test_a_crash_between_commit_and_event_loses_no_event(tmp_path: Path) -> None:
    with Receiver() as receiver:
        # The third matching transaction kills the server after its commit.
        server = ServerProcess(tmp_path / "data", env={**FAST_RETRIES, CRASH_BEFORE_EVENT: "3"})
        server.entry = "tests.reliability._crash_serve"
        creds = server.start()
        try:
            _watch_goals(creds, receiver)
            acked: dict[str, int] = {}
            with _client(creds) as db:
                for n in range(2):
                    key = f"g{n}"
                    acked[key] = db.transact(db.tx.goals[id()].update({"key": key}))["tx-id"]
                with pytest.raises(InstantNetworkError) as died:
                    db.transact(db.tx.goals[id()].update({"key": "g2"}))
            assert died.value.may_have_been_sent  # the server died before answering
            assert sorted(acked) == ["g0", "g1"]
            server.kill()  # already dead: reaps it
            server.env.pop(CRASH_BEFORE_EVENT)
            assert server.start() == creds
            with _client(creds) as db:
                stored = {row["key"] for row in db.query({"goals": {}})["goals"]}
            # The third transaction committed before the crash, so it has an event too.
            assert stored == {"before-the-webhook", "g0", "g1", "g2"}
            with _client(creds) as db:
                hook = db.webhooks.manager.list()[0]
                events = db.webhooks.manager.list_events(hook["id"])["events"]
            assert len(events) == 3
            delivered = _delivered(receiver, {e["isn"] for e in events})
            assert delivered == {e["isn"] for e in events}
            assert {f"0/0/{tx:X}" for tx in acked.values()} <= delivered
        finally:
            server.kill()
        assert "Traceback" not in server.log()


def _writer(creds: AppCredentials, acked: dict[str, int], name: str, stop: threading.Event) -> None:
    with _client(creds) as db:
        n = 0
        while not stop.is_set():
            key = f"{name}-{n}"
            n += 1
            try:
                tx = db.transact(db.tx.goals[id()].update({"key": key}))["tx-id"]
            except InstantError:
                return  # the server is gone
            acked[key] = tx


def test_events_of_acknowledged_transactions_are_delivered_after_sigkill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Receiver() as receiver:
        server = ServerProcess(tmp_path / "data", env=FAST_RETRIES)
        creds = server.start()
        try:
            _watch_goals(creds, receiver)
            # Deliveries wait at the receiver, so the kill finds events pending and in
            # flight, not only delivered ones.
            receiver.hold.clear()
            acked: dict[str, int] = {}
            stop = threading.Event()
            threads = [
                threading.Thread(target=_writer, args=(creds, acked, f"w{w}", stop))
                for w in range(WRITERS)
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + DELIVERY_WAIT
            while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
                time.sleep(0.005)
            server.kill()
            stop.set()
            for thread in threads:
                thread.join(DELIVERY_WAIT)
            assert len(acked) >= ACKS_BEFORE_KILL, "the writers stalled before the kill"
            receiver.hold.set()
            assert server.start() == creds
            with _client(creds) as db:
                stored = {row["key"] for row in db.query({"goals": {}})["goals"]}
            wanted = {f"0/0/{tx:X}" for tx in acked.values()}
            delivered = _delivered(receiver, wanted)
            assert wanted - delivered == set()
            # Nothing is delivered for a transaction that is not there: one event per
            # stored row (the first one predates the webhook).
            assert len(delivered) == len(stored) - 1
        finally:
            server.kill()
        assert "Traceback" not in server.log()
    with capsys.disabled():
        print(
            f"\nwebhook durability: SIGKILL under {WRITERS} writers with deliveries in "
            f"flight: {len(acked)} acknowledged transactions, all {len(wanted)} events "
            f"delivered after restart ({len(receiver.deliveries)} deliveries in all)"
        )
