"""Ordered, limited queries cost the same on 500 rows and on 4,000.

Measured in SQLite VM instructions (a progress handler called on every instruction of
the read connection), which do not depend on the machine: an ordered index walk reads
the page and stops, so eight times the rows must not cost more (a sort of every match
would cost about eight times as much).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instantdb_local import instaql, store
from instantdb_local.engine import AppEngine
from instantdb_local.instaql import WalkPolicy
from tests.local.engine.helpers import ADMIN

SCHEMA = {
    "attrs": {
        "items": {
            "seq": {"type": "number", "indexed": True},
            "writer": {"type": "string", "indexed": True},
            "rare": {"type": "string", "indexed": True},
            "at": {"type": "date", "indexed": True},
        }
    },
    "links": {},
}


class Counter:
    def __init__(self) -> None:
        self.instructions = 0

    def tick(self) -> int:
        self.instructions += 1
        return 0  # 0: carry on


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the instructions of every read the engine makes (writes are not counted)."""
    counting = Counter()
    read = store.Store.read

    @contextlib.contextmanager
    def counted_read(self: store.Store) -> Iterator[sqlite3.Connection]:
        with read(self) as conn:
            conn.set_progress_handler(counting.tick, 1)
            try:
                yield conn
            finally:
                conn.set_progress_handler(None, 1)

    monkeypatch.setattr(store.Store, "read", counted_read)
    return counting


def row_id(n: int) -> str:
    # Ids derived from the row number: the walk's cost depends on where ids fall in the
    # index, so random ids made the instruction counts vary from run to run (by up to a
    # half), enough to fail the bound now and then.
    return str(uuid.UUID(int=random.Random(n).getrandbits(128), version=4))


def fill(engine: AppEngine, start: int, stop: int) -> None:
    steps: list[list[Any]] = []
    for n in range(start, stop):
        values: dict[str, Any] = {"seq": n, "writer": f"w{n % 4}", "at": 1_700_000_000_000 + n}
        if n % 500 == 0:
            values["rare"] = f"r{n}"
        # Every tenth row is made by an empty update: no values at all (an order gap).
        steps.append(["update", "items", row_id(n), {} if n % 10 == 9 else values])
    engine.transact(steps, ADMIN)


def page_cursor(engine: AppEngine, options: dict[str, Any]) -> list[Any]:
    _, meta = engine.query_with_meta({"items": {"$": options}}, ADMIN)
    return list(meta["page-info"]["items"]["end-cursor"])


QUERIES: dict[str, dict[str, Any]] = {
    "order-desc-limit": {"order": {"seq": "desc"}, "limit": 5},
    "order-asc-nulls-first": {"order": {"seq": "asc"}, "limit": 5, "offset": 3},
    "order-date-last": {"order": {"at": "asc"}, "last": 4},
    "created-desc-first": {"order": {"serverCreatedAt": "desc"}, "first": 3},
    "mostly-null-attr": {"order": {"rare": "desc"}, "first": 3},
    "where-dense": {"where": {"writer": "w1"}, "order": {"seq": "desc"}, "limit": 3},
    "where-range-first": {
        "where": {"seq": {"$gte": 100}},
        "order": {"seq": "asc"},
        "first": 3,
    },
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_ordered_limited_queries_cost_no_more_on_eight_times_the_rows(
    tmp_path: Path, counter: Counter, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Few matches are sorted rather than walked; make "few" small enough that these
    # sizes exercise the walk with a where clause.
    monkeypatch.setattr(instaql, "DEFAULT_WALK_POLICY", WalkPolicy(small_match_set=20))
    query = QUERIES[name]
    engine = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    try:
        engine.apply_schema(SCHEMA)
        costs = []
        have = 0
        for size in (500, 4000):
            fill(engine, have, size)
            have = size
            counter.instructions = 0
            result = engine.query({"items": {"$": query}}, ADMIN)
            assert result["items"], "the query should return rows"
            costs.append(counter.instructions)
        small, large = costs
        assert small > 0
        assert large <= small * 1.3, costs
    finally:
        engine.close()


def test_paging_with_a_cursor_costs_no_more_deep_in_the_order(
    tmp_path: Path, counter: Counter
) -> None:
    engine = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    try:
        engine.apply_schema(SCHEMA)
        fill(engine, 0, 4000)
        options: dict[str, Any] = {"order": {"seq": "asc"}, "first": 5}
        costs = []
        for offset in (500, 3500):  # both past the 400 rows without a value (nulls first)
            cursor = page_cursor(engine, {**options, "offset": offset})
            counter.instructions = 0
            engine.query({"items": {"$": {**options, "after": cursor}}}, ADMIN)
            costs.append(counter.instructions)
        shallow, deep = costs
        assert deep <= shallow * 1.3, costs
    finally:
        engine.close()
