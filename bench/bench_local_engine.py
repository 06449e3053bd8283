"""The local server's data engine against hand-written SQLite on the same tables.

(a) Query latency on N entities with an indexed ``where`` (equality, and a range),
    against the equivalent raw SQL over the same triples table: the ratio is the
    engine's overhead (validation, compilation, materialising result objects).
(b) One big transaction (update steps with two attributes each), against raw
    ``executemany`` inserts of the same triples: the ratio is the cost of validation,
    uniqueness/type checks and grouping.
(c) Ordered, limited queries (``order`` + ``limit``, with and without a ``where`` that
    matches an eighth of the rows) at 2k, 20k and 100k entities, against raw SQL
    walking the same index: the curve shows whether the cost depends on the
    namespace's size (it should not).
(d) A nested-links query (10 groups with their 50 tasks each) against raw SQL reading
    the same links and rows.

Full run: 100k entities, a 10k-step transaction, ordered queries at 2k/20k/100k.
``--quick``: 2k entities, 500 steps, ordered queries at 500/2k.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import Result, best_of

from instantdb_local.engine import Actor, AppEngine

SCHEMA = {
    "attrs": {
        "items": {
            "n": {"type": "number", "indexed": True},
            "s": {"type": "string", "indexed": True},
        }
    },
    "links": {},
}
ADMIN = Actor.admin()
BATCH = 10_000


def _eid(i: int) -> str:
    return str(uuid.UUID(int=i + 1, version=4))


def _steps(start: int, stop: int) -> list[list[Any]]:
    return [["update", "items", _eid(i), {"n": i, "s": f"v{i}"}] for i in range(start, stop)]


def _load(engine: AppEngine, count: int) -> None:
    engine.apply_schema(SCHEMA)
    for start in range(0, count, BATCH):
        engine.transact(_steps(start, min(count, start + BATCH)), ADMIN)


def _attr_ids(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT label, id FROM attrs WHERE etype = 'items'").fetchall()
    finally:
        conn.close()
    return dict(rows)


def _raw_query(
    conn: sqlite3.Connection, attrs: dict[str, str], where_sql: str, params: list[Any]
) -> list[dict[str, Any]]:
    """What a hand-written query over the same tables does: match ids, then read rows."""
    ids = [row[0] for row in conn.execute(where_sql, params)]
    rows: dict[str, dict[str, Any]] = {eid: {"id": eid} for eid in ids}
    labels = {v: k for k, v in attrs.items()}
    marks = ",".join("?" * len(ids))
    if ids:
        for entity, attr, value in conn.execute(
            f"SELECT entity, attr, value FROM triples WHERE entity IN ({marks})", ids
        ):
            if attr in labels:
                rows[entity][labels[attr]] = value
    return list(rows.values())


def _query_results(directory: Path, count: int) -> list[Result]:
    path = directory / "query.sqlite3"
    engine = AppEngine(path, app_id="bench")
    try:
        _load(engine, count)
        attrs = _attr_ids(path)
        conn = sqlite3.connect(path)
        try:
            middle = count // 2
            eq_query = {"items": {"$": {"where": {"s": f"v{middle}"}}}}
            assert len(engine.query(eq_query, ADMIN)["items"]) == 1
            eq_engine = best_of(lambda: engine.query(eq_query, ADMIN), repeat=7, number=20)
            eq_raw = best_of(
                lambda: _raw_query(
                    conn,
                    attrs,
                    "SELECT entity FROM triples WHERE attr = ? AND vkey = ? AND vtype = 's'",
                    [attrs["s"], f"v{middle}"],
                ),
                repeat=7,
                number=20,
            )
            width = 100
            range_query = {
                "items": {"$": {"where": {"n": {"$gte": middle, "$lt": middle + width}}}}
            }
            assert len(engine.query(range_query, ADMIN)["items"]) == width
            range_engine = best_of(lambda: engine.query(range_query, ADMIN), repeat=5, number=5)
            range_raw = best_of(
                lambda: _raw_query(
                    conn,
                    attrs,
                    "SELECT e.id FROM triples t CROSS JOIN entities e "
                    "ON e.etype = 'items' AND e.id = t.entity "
                    "WHERE t.attr = ? AND t.vtype = 'n' AND t.vkey >= ? AND t.vkey < ? "
                    "ORDER BY e.created_tx, e.id",
                    [attrs["n"], middle, middle + width],
                ),
                repeat=5,
                number=5,
            )
        finally:
            conn.close()
    finally:
        engine.close()
    return [
        Result(
            f"query indexed equality, {count} entities",
            eq_engine,
            eq_raw,
            note="engine query vs raw SQL match + row read",
        ),
        Result(
            f"query indexed range of {width}, {count} entities",
            range_engine,
            range_raw,
            note="engine query vs raw SQL match + row read",
        ),
    ]


def _raw_insert(path: Path, steps: list[list[Any]], attrs: dict[str, str]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE entities (etype TEXT, id TEXT, created_tx INTEGER, "
            "PRIMARY KEY (etype, id)) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX entities_by_creation ON entities (etype, created_tx, id)")
        conn.execute(
            "CREATE TABLE triples (entity TEXT, attr TEXT, vtype TEXT, vkey, value TEXT, "
            "vdate REAL, created_tx INTEGER)"
        )
        conn.execute("CREATE INDEX triples_by_entity ON triples (entity, attr)")
        conn.execute("CREATE INDEX triples_by_value ON triples (attr, vkey, entity)")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO entities VALUES ('items', ?, 1)", [(step[2],) for step in steps]
        )
        rows = []
        for step in steps:
            args = step[3]
            rows.append((step[2], attrs["n"], "n", args["n"], str(args["n"]), None, 1))
            rows.append((step[2], attrs["s"], "s", args["s"], f'"{args["s"]}"', None, 1))
        conn.executemany("INSERT INTO triples VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def _transact_results(directory: Path, size: int) -> list[Result]:
    path = directory / "tx.sqlite3"
    engine = AppEngine(path, app_id="bench")
    try:
        engine.apply_schema(SCHEMA)
        steps = _steps(0, size)
        started = time.perf_counter()
        engine.transact(steps, ADMIN)
        elapsed = time.perf_counter() - started
        attrs = _attr_ids(path)
    finally:
        engine.close()
    raw = _raw_insert(directory / "raw.sqlite3", steps, attrs)
    return [
        Result(
            f"transact {size} update steps (2 attrs each)",
            elapsed,
            raw,
            note=f"{size / elapsed:,.0f} steps/s vs raw executemany {size / raw:,.0f} steps/s",
        )
    ]


# -- ordered and nested queries ------------------------------------------------------

ORDER_SCHEMA = {
    "attrs": {
        "tasks": {
            "n": {"type": "number", "indexed": True},
            "w": {"type": "string", "indexed": True},
        },
        "groups": {"name": {"type": "string"}},
    },
    "links": {
        "taskGroup": {
            "forward": {"on": "tasks", "label": "group", "has": "one"},
            "reverse": {"on": "groups", "label": "tasks", "has": "many"},
        }
    },
}
TASKS_PER_GROUP = 50


def _group_id(i: int) -> str:
    return str(uuid.UUID(int=(1 << 64) + i, version=4))


def _load_tasks(engine: AppEngine, count: int) -> None:
    engine.apply_schema(ORDER_SCHEMA)
    groups = max(1, count // TASKS_PER_GROUP)
    engine.transact(
        [["update", "groups", _group_id(g), {"name": f"g{g}"}] for g in range(groups)], ADMIN
    )
    for start in range(0, count, BATCH):
        steps: list[list[Any]] = []
        for i in range(start, min(count, start + BATCH)):
            steps.append(["update", "tasks", _eid(i), {"n": i, "w": f"w{i % 8}"}])
            steps.append(["link", "tasks", _eid(i), {"group": _group_id(i % groups)}])
        engine.transact(steps, ADMIN)


def _raw_rows(conn: sqlite3.Connection, ids: list[str]) -> list[dict[str, Any]]:
    """Read entity rows the way a hand-written client would: one query, JSON decoded."""
    rows: dict[str, dict[str, Any]] = {eid: {"id": eid} for eid in ids}
    if ids:
        marks = ",".join("?" * len(ids))
        for entity, label, value in conn.execute(
            f"SELECT t.entity, a.label, t.value FROM triples t JOIN attrs a ON a.id = t.attr "
            f"WHERE t.entity IN ({marks}) AND a.cardinality = 'one'",
            ids,
        ):
            rows[entity][label] = json.loads(value)
    return list(rows.values())


def _ordered_results(directory: Path, count: int) -> list[Result]:
    path = directory / f"ordered-{count}.sqlite3"
    engine = AppEngine(path, app_id="bench")
    try:
        _load_tasks(engine, count)
        conn = sqlite3.connect(path)
        try:
            attrs = dict(conn.execute("SELECT label, id FROM attrs WHERE etype = 'tasks'"))
            limit = 10
            plain = {"tasks": {"$": {"order": {"n": "desc"}, "limit": limit}}}
            filtered = {
                "tasks": {"$": {"where": {"w": "w3"}, "order": {"n": "desc"}, "limit": limit}}
            }
            assert len(engine.query(plain, ADMIN)["tasks"]) == limit
            assert len(engine.query(filtered, ADMIN)["tasks"]) == limit
            plain_engine = best_of(lambda: engine.query(plain, ADMIN), repeat=7, number=20)
            plain_raw = best_of(
                lambda: _raw_rows(
                    conn,
                    [
                        row[0]
                        for row in conn.execute(
                            "SELECT entity FROM triples INDEXED BY triples_by_value "
                            "WHERE attr = ? AND vkey IS NOT NULL "
                            "ORDER BY vkey DESC, entity DESC LIMIT ?",
                            [attrs["n"], limit],
                        )
                    ],
                ),
                repeat=7,
                number=20,
            )
            filtered_engine = best_of(lambda: engine.query(filtered, ADMIN), repeat=7, number=20)
            filtered_raw = best_of(
                lambda: _raw_rows(
                    conn,
                    [
                        row[0]
                        for row in conn.execute(
                            "SELECT t.entity FROM triples t INDEXED BY triples_by_value "
                            "WHERE t.attr = ? AND t.vkey IS NOT NULL AND EXISTS (SELECT 1 "
                            "FROM triples w INDEXED BY triples_by_entity WHERE w.entity = "
                            "t.entity AND w.attr = ? AND w.vkey = ?) "
                            "ORDER BY t.vkey DESC, t.entity DESC LIMIT ?",
                            [attrs["n"], attrs["w"], "w3", limit],
                        )
                    ],
                ),
                repeat=7,
                number=20,
            )
        finally:
            conn.close()
    finally:
        engine.close()
    return [
        Result(
            f"ordered limit {limit}, {count} entities",
            plain_engine,
            plain_raw,
            note="order n desc; raw SQL walking the same index + row read",
        ),
        Result(
            f"ordered limit {limit} where 1/8 match, {count} entities",
            filtered_engine,
            filtered_raw,
            note="where w + order n desc; raw SQL index walk with EXISTS + row read",
        ),
    ]


def _nested_results(directory: Path, count: int) -> list[Result]:
    path = directory / f"ordered-{count}.sqlite3"
    engine = AppEngine(path, app_id="bench")
    try:
        conn = sqlite3.connect(path)
        try:
            attrs = dict(conn.execute("SELECT label, id FROM attrs WHERE etype = 'tasks'"))
            groups = 10
            query = {"groups": {"$": {"limit": groups}, "tasks": {}}}
            result = engine.query(query, ADMIN)["groups"]
            assert sum(len(g["tasks"]) for g in result) == groups * TASKS_PER_GROUP

            def raw() -> list[dict[str, Any]]:
                parents = _raw_rows(
                    conn,
                    [
                        row[0]
                        for row in conn.execute(
                            "SELECT id FROM entities WHERE etype = 'groups' "
                            "ORDER BY created_tx, id LIMIT ?",
                            [groups],
                        )
                    ],
                )
                marks = ",".join("?" * len(parents))
                pairs = conn.execute(
                    f"SELECT vkey, entity FROM triples WHERE attr = ? AND vkey IN ({marks})",
                    [attrs["group"], *(p["id"] for p in parents)],
                ).fetchall()
                children = {row["id"]: row for row in _raw_rows(conn, [c for _, c in pairs])}
                by_parent: dict[str, list[dict[str, Any]]] = {}
                for parent, child in pairs:
                    by_parent.setdefault(parent, []).append(children[child])
                for parent_row in parents:
                    parent_row["tasks"] = by_parent.get(parent_row["id"], [])
                return parents

            nested_engine = best_of(lambda: engine.query(query, ADMIN), repeat=5, number=10)
            nested_raw = best_of(raw, repeat=5, number=10)
        finally:
            conn.close()
    finally:
        engine.close()
    return [
        Result(
            f"nested links: {groups} groups x {TASKS_PER_GROUP} tasks, {count} tasks",
            nested_engine,
            nested_raw,
            note="engine query vs raw SQL parents + links + child rows",
        )
    ]


def run(quick: bool) -> list[Result]:
    count = 2_000 if quick else 100_000
    size = 500 if quick else 10_000
    curve = (500, 2_000) if quick else (2_000, 20_000, 100_000)
    with tempfile.TemporaryDirectory() as directory:
        results = _query_results(Path(directory), count)
        results += _transact_results(Path(directory), size)
        for tasks in curve:
            results += _ordered_results(Path(directory), tasks)
        return results + _nested_results(Path(directory), curve[-1])
