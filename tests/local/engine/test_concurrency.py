"""Thread safety: concurrent writers are serialised, readers see committed snapshots."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from instantdb_local.engine import AppEngine
from tests.local.engine.helpers import ADMIN, error_of, uid


def test_concurrent_writers_and_readers(engine: AppEngine) -> None:
    writers, per_writer = 4, 15
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(worker: int) -> list[int]:
        txs = []
        for i in range(per_writer):
            eid = uid(worker * 1000 + i)
            # Each writer also adds its own new attribute, racing catalog updates.
            txs.append(engine.transact([["update", "items", eid, {f"w{worker}": i}]], ADMIN))
        return txs

    def read() -> None:
        while not stop.is_set():
            try:
                rows = engine.query({"items": {}}, ADMIN)["items"]
                assert all("id" in row for row in rows)
            except BaseException as error:  # collected and re-raised below
                errors.append(error)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        with ThreadPoolExecutor(max_workers=writers) as pool:
            results = list(pool.map(write, range(writers)))
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    assert not errors
    all_txs = [tx for txs in results for tx in txs]
    assert len(set(all_txs)) == writers * per_writer
    rows = engine.query({"items": {}}, ADMIN)["items"]
    assert len(rows) == writers * per_writer
    labels = engine.schema_json()["schema"]["blobs"]["items"]
    assert {f"w{w}" for w in range(writers)} <= set(labels)


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    first = AppEngine(path, app_id="a")
    first.transact([["update", "goals", uid(1), {"title": "kept"}]], ADMIN)
    first.close()
    second = AppEngine(path, app_id="a")
    try:
        assert second.query({"goals": {}}, ADMIN) == {"goals": [{"id": uid(1), "title": "kept"}]}
        later = second.transact([["update", "goals", uid(2), {"title": "later"}]], ADMIN)
        rows = second.query({"goals": {}}, ADMIN)["goals"]
        assert [r["title"] for r in rows] == ["kept", "later"]
        assert later > 1
    finally:
        second.close()


def test_closed_engine_says_so(tmp_path: Path) -> None:
    engine = AppEngine(tmp_path / "app.sqlite3", app_id="a")
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.query({"goals": {}}, ADMIN)


def test_failed_queries_do_not_leak_connections(engine: AppEngine) -> None:
    for _ in range(50):
        error_of(lambda: engine.query({"goals": {"$": {"limit": 0}}}, ADMIN))
    assert engine.query({"goals": {}}, ADMIN) == {"goals": []}
