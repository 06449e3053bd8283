"""Regression: an ordered query (``order`` on an indexed attribute) cost time quadratic in
the size of the namespace, which the load test found (a ``limit: 1`` read on 3,000 rows
took 1.4 s). Measured here in SQLite VM instructions, which do not depend on the
machine: four times the rows must cost well under sixteen times the work. (The ordered
index walk makes these reads cost the same at any size; tests/local/engine/
test_order_scaling.py pins that.)"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from instantdb_local import store
from instantdb_local.engine import Actor, AppEngine

SCHEMA = {"attrs": {"items": {"seq": {"type": "number", "indexed": True}}}, "links": {}}
ADMIN = Actor.admin()
STEP = 1  # the progress handler runs on every instruction: an index walk is short


class InstructionCounter:
    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> int:
        self.ticks += 1
        return 0  # 0: carry on


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> InstructionCounter:
    counting = InstructionCounter()
    configure = store._configure

    def configure_and_count(conn: sqlite3.Connection) -> None:
        configure(conn)
        conn.set_progress_handler(counting.tick, STEP)

    monkeypatch.setattr(store, "_configure", configure_and_count)
    return counting


def _cost(engine: AppEngine, counter: InstructionCounter, query: dict[str, Any]) -> int:
    counter.ticks = 0
    engine.query(query, ADMIN)
    return counter.ticks


@pytest.mark.parametrize(
    "query",
    [
        {"items": {"$": {"order": {"seq": "desc"}, "limit": 1}}},
        {"items": {"$": {"where": {"seq": {"$gte": 0}}, "order": {"seq": "asc"}, "limit": 1}}},
        {"items": {"$": {"order": {"seq": "desc"}, "first": 1}}},  # with page-info
    ],
    ids=["order-limit", "where-order-limit", "order-first"],
)
def test_ordered_queries_scale_linearly(
    tmp_path: Path, counter: InstructionCounter, query: dict[str, Any]
) -> None:
    engine = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    try:
        engine.apply_schema(SCHEMA)
        costs = []
        for size in (300, 1200):
            have = len(engine.query({"items": {}}, ADMIN)["items"])
            engine.transact(
                [["update", "items", str(uuid.uuid4()), {"seq": n}] for n in range(have, size)],
                ADMIN,
            )
            costs.append(_cost(engine, counter, query))
        small, large = costs
        assert small > 0
        # Linear (plus a sort) is about 4x; the quadratic plan was about 16x.
        assert large / small < 8, costs
    finally:
        engine.close()
