"""SIGKILL the local server during a burst of transactions from several threads; after a
restart every transaction whose answer reached a client is there, whole, and nothing
else is, and the data dir's databases pass SQLite's integrity check.

Each transaction writes two entities (an ``items`` row and a ``pairs`` row linked to it;
an unknown link label names the target namespace, so the label is ``items``) under one
key, so a torn transaction would show as a key with one half or the link missing.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from instantdb import Instant, InstantError, InstantNetworkError, id
from instantdb_local.instance import AppCredentials, Instance
from tests.reliability._process import ServerProcess, integrity_problems

WRITERS = 4
ROUNDS = 3
ACKS_BEFORE_KILL = 100  # per round
BURST_LIMIT_SECONDS = 20.0  # a safety bound; a healthy run kills long before


@dataclass
class Ledger:
    """What the clients know about each transaction they sent."""

    acked: dict[str, int] = field(default_factory=dict)  # key -> tx-id
    unknown: set[str] = field(default_factory=set)  # the answer never came
    never_sent: set[str] = field(default_factory=set)  # provably not applied
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_acked(self) -> int:
        with self.lock:
            return len(self.acked)


def _writer(creds: AppCredentials, ledger: Ledger, name: str, stop: threading.Event) -> None:
    # retry=False: every outcome is the first attempt's, so the ledger is exact.
    with Instant(
        app_id=creds.app_id,
        admin_token=creds.admin_token,
        api_uri=creds.api_uri,
        retry=False,
        timeout=httpx.Timeout(15.0),
    ) as db:
        n = 0
        while not stop.is_set():
            key = f"{name}-{n}"
            n += 1
            item, pair = id(), id()
            try:
                result = db.transact(
                    [
                        db.tx.items[item].update({"key": key}),
                        db.tx.pairs[pair].update({"key": key}).link({"items": item}),
                    ]
                )
            except InstantNetworkError as error:
                with ledger.lock:
                    (ledger.unknown if error.may_have_been_sent else ledger.never_sent).add(key)
                return  # the server is gone
            except InstantError:
                with ledger.lock:
                    ledger.unknown.add(key)
                return
            with ledger.lock:
                ledger.acked[key] = result["tx-id"]


def _burst_then_kill(server: ServerProcess, ledger: Ledger, round_number: int) -> None:
    creds = server.credentials
    assert creds is not None
    target = ledger.count_acked() + ACKS_BEFORE_KILL
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(creds, ledger, f"r{round_number}w{w}", stop))
        for w in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + BURST_LIMIT_SECONDS
    while ledger.count_acked() < target and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        assert ledger.count_acked() >= target, "the writers stalled before the kill"
        server.kill()  # while every writer is mid-burst
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


def _stored_keys(creds: AppCredentials) -> tuple[Counter[str], Counter[str], int]:
    """Keys of ``items``, keys of ``pairs``, and how many pairs link to an item of their key."""
    with Instant(
        app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri, retry=False
    ) as db:
        result = db.query({"items": {}, "pairs": {"items": {}}})
    items = Counter(row["key"] for row in result["items"])
    pairs = Counter(row["key"] for row in result["pairs"])
    linked = sum(
        1 for row in result["pairs"] if [linked["key"] for linked in row["items"]] == [row["key"]]
    )
    return items, pairs, linked


def test_acknowledged_transactions_survive_sigkill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    ledger = Ledger()
    creds = server.start()
    try:
        for round_number in range(ROUNDS):
            _burst_then_kill(server, ledger, round_number)
            assert server.start() == creds  # same data dir, same port, same credentials
            items, pairs, linked = _stored_keys(creds)
            with ledger.lock:
                acked, unknown = set(ledger.acked), set(ledger.unknown)
                never_sent = set(ledger.never_sent)
            # Every acknowledged transaction is there ...
            assert acked - set(items) == set()
            # ... whole: both halves, linked, once ...
            assert set(items) == set(pairs)
            assert max(items.values()) == max(pairs.values()) == 1
            assert linked == len(pairs)
            # ... and nothing is there that no client sent or that never left.
            assert set(items) <= acked | unknown
            assert set(items) & never_sent == set()
            applied_unacked = len(set(items) & unknown)
    finally:
        server.kill()

    # Transaction numbers never went back after a crash: each acknowledged one is unique.
    tx_ids = list(ledger.acked.values())
    assert len(set(tx_ids)) == len(tx_ids)

    app_db = data / "apps" / creds.app_id / "app.sqlite3"
    assert integrity_problems(app_db) == []
    assert integrity_problems(data / "instance.sqlite3") == []
    with Instance.open(data) as instance:  # the data dir opens cleanly
        assert instance.default_app.id == creds.app_id
    env = subprocess.run(
        [sys.executable, "-m", "instantdb_local", "env", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert f"export INSTANT_APP_ADMIN_TOKEN={creds.admin_token}" in env.stdout
    assert "Traceback" not in server.log()
    with capsys.disabled():
        print(
            f"\ndurability: {ROUNDS} SIGKILLs under {WRITERS} writers: "
            f"{len(ledger.acked)} acknowledged transactions all present after restart; "
            f"{len(ledger.unknown)} cut mid-flight ({applied_unacked} of them committed), "
            f"{len(ledger.never_sent)} refused"
        )
