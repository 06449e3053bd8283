"""Ordered pagination against a plain-Python reference, for every query plan.

The engine answers an ordered, limited query by walking an index (`ordered_walk`),
testing a ``where`` per row, or by sorting the matches; which one depends on
`instaql.WalkPolicy`. Each property runs under policies that force each plan (and the
walk's give-up path), so all of them must agree with the reference: Instant's order
(nulls and missing values first ascending, last descending, ties by id in the same
direction, dates as instants), ``limit``/``offset`` windows, ``first``/``after`` and
``last``/``before`` pages across boundaries, inclusive cursors and page info.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb_local import instaql
from instantdb_local.engine import AppEngine
from instantdb_local.instaql import WalkPolicy
from instantdb_local.values import parse_date_ms
from tests.local.engine.helpers import ADMIN, uid

SCHEMA = {
    "attrs": {
        "items": {
            "n": {"type": "number", "indexed": True},
            "s": {"type": "string", "indexed": True},
            "d": {"type": "date", "indexed": True},
            "tag": {"type": "string"},
        },
        "people": {"name": {"type": "string"}},
    },
    "links": {
        "itemOwner": {
            "forward": {"on": "items", "label": "owner", "has": "one"},
            "reverse": {"on": "people", "label": "items", "has": "many"},
        }
    },
}

POLICIES = {
    "auto": WalkPolicy(),
    "always-walk": WalkPolicy(small_match_set=0, budget_base=10**9),
    "walk-gives-up": WalkPolicy(small_match_set=0, budget_base=1, budget_per_row=0),
    "always-sort": WalkPolicy(small_match_set=10**9),
}

N_VALUES = [-1, 0, 0.5, 1, 1.0, 2]
S_VALUES = ["", "a", "B", "a ", "é", "b"]
D_VALUES = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:00:00+01:00",  # the same instant as above: a tie
    1704067200000,  # and again, as epoch ms
    "2023-12-31",
    0,
    "2024-06-01T12:30:00.5Z",
]
WHERES: list[dict[str, Any] | None] = [
    None,
    {"tag": "x"},
    {"n": {"$gte": 0.5}},
    {"s": {"$isNull": True}},
    {"or": [{"tag": "y"}, {"n": {"$lt": 1}}]},
    {"owner.name": "ann"},
    {"tag": {"$ne": "x"}},
    # Comparisons on the order attribute also bound the walk.
    {"n": {"$gt": 0}},
    {"n": {"$gte": 0.5, "$lte": 1}},
    {"s": {"$gte": "a", "$lt": "b"}},
    {"d": {"$lte": "2024-01-01T00:00:00Z"}},
    {"d": {"$gt": 0, "$isNull": False}},
]


@dataclass
class Item:
    id: str
    values: dict[str, Any]  # absent keys were never written
    tag: str | None
    owner: str | None
    created: int = 0
    how: str = "update"  # "update", "empty" (update with no values) or "link"


@dataclass
class World:
    items: list[Item]
    deleted: set[str] = field(default_factory=set)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    items = []
    for i in range(draw(st.integers(0, 14))):
        how = draw(st.sampled_from(["update", "update", "update", "empty", "link"]))
        values: dict[str, Any] = {}
        if how == "update":
            for label, domain in (("n", N_VALUES), ("s", S_VALUES), ("d", D_VALUES)):
                choice = draw(st.sampled_from(["absent", None, *domain]))
                if choice != "absent":
                    values[label] = choice
        tag = draw(st.sampled_from([None, "x", "y"])) if how == "update" else None
        owner = draw(st.sampled_from([None, uid(900), uid(901)]))
        if how == "link" and owner is None:
            owner = uid(900)
        items.append(Item(uid(i + 1), values, tag, owner, how=how))
    world = World(items)
    world.deleted = set(draw(st.lists(st.sampled_from([i.id for i in items] or [""]))))
    return world


def load(engine: AppEngine, world: World) -> None:
    engine.apply_schema(SCHEMA)
    engine.transact(
        [
            ["update", "people", uid(900), {"name": "ann"}],
            ["update", "people", uid(901), {"name": "bob"}],
        ],
        ADMIN,
    )
    # A few transactions, so creation order has ties broken by id.
    for batch in range(3):
        steps: list[list[Any]] = []
        members = world.items[batch::3]
        for item in members:
            if item.how == "link":
                steps.append(["link", "items", item.id, {"owner": item.owner}])
                continue
            values = dict(item.values)
            if item.tag is not None:
                values["tag"] = item.tag
            steps.append(["update", "items", item.id, values])
            if item.owner is not None:
                steps.append(["link", "items", item.id, {"owner": item.owner}])
        if steps:
            tx = engine.transact(steps, ADMIN)
            for item in members:
                item.created = tx
    doomed = [["delete", "items", eid] for eid in sorted(world.deleted) if eid]
    if doomed:
        engine.transact(doomed, ADMIN)


# -- the reference ------------------------------------------------------------------------


def _stored(item: Item, label: str) -> Any:
    # Indexed app attributes read back as null once the entity was written with values.
    return item.values.get(label)


def matches(world: World, item: Item, where: dict[str, Any] | None) -> bool:
    if where is None:
        return True
    ((key, cond),) = where.items()
    if key == "or":
        return any(matches(world, item, c) for c in cond)
    if key == "tag":
        if isinstance(cond, dict):  # $ne: differs, or missing
            return item.tag != cond["$ne"]
        return item.tag == cond
    if key in ("n", "s", "d"):
        value = item.values.get(key)
        if key == "d" and value is not None:
            value = parse_date_ms(value)
        for op, bound in cond.items():
            if op == "$isNull":
                if (value is None) != bound:
                    return False
                continue
            if value is None:
                return False
            if key == "d":
                bound = parse_date_ms(bound)
            ok = {
                "$gt": value > bound,
                "$gte": value >= bound,
                "$lt": value < bound,
                "$lte": value <= bound,
            }[op]
            if not ok:
                return False
        return True
    if key == "owner.name":
        return item.owner == uid(900)
    raise AssertionError(key)


def sort_key(item: Item, field_name: str) -> tuple[Any, ...]:
    if field_name == "serverCreatedAt":
        return (item.created, item.id)
    value = _stored(item, field_name)
    if field_name == "d" and value is not None:
        value = parse_date_ms(value)
    return (0, 0, item.id) if value is None else (1, value, item.id)


def expected(world: World, where: dict[str, Any] | None, field_name: str, desc: bool) -> list[str]:
    live = [i for i in world.items if i.id not in world.deleted]
    rows = [i for i in live if matches(world, i, where)]
    rows.sort(key=lambda i: sort_key(i, field_name), reverse=desc)
    return [i.id for i in rows]


# -- running the engine -----------------------------------------------------------------


@contextlib.contextmanager
def using(policy: str) -> Iterator[None]:
    """Run queries under one of `POLICIES` (a plain context manager: Hypothesis tests
    cannot use function-scoped fixtures)."""
    saved = instaql.DEFAULT_WALK_POLICY
    instaql.DEFAULT_WALK_POLICY = POLICIES[policy]
    try:
        yield
    finally:
        instaql.DEFAULT_WALK_POLICY = saved


each_policy = pytest.mark.parametrize("policy", sorted(POLICIES))


def fresh_engine(directory: str) -> AppEngine:
    return AppEngine(Path(directory) / "app.sqlite3", app_id=str(uuid.uuid4()))


def page(engine: AppEngine, options: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    result, meta = engine.query_with_meta({"items": {"$": options}}, ADMIN)
    return [row["id"] for row in result["items"]], meta["page-info"].get("items", {})


def base_options(where: dict[str, Any] | None, field_name: str, desc: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"order": {field_name: "desc" if desc else "asc"}}
    if where is not None:
        options["where"] = where
    return options


orders = st.tuples(
    st.sampled_from(WHERES),
    st.sampled_from(["serverCreatedAt", "n", "s", "d"]),
    st.booleans(),
)


@each_policy
@given(world=worlds(), order=orders, size=st.integers(1, 4), offset=st.integers(0, 5))
def test_limit_and_offset_windows(
    policy: str, world: World, order: tuple[Any, str, bool], size: int, offset: int
) -> None:
    where, field_name, desc = order
    with tempfile.TemporaryDirectory() as directory, using(policy):
        engine = fresh_engine(directory)
        try:
            load(engine, world)
            want = expected(world, where, field_name, desc)
            options = base_options(where, field_name, desc)
            assert page(engine, options)[0] == want
            got, _ = page(engine, {**options, "limit": size, "offset": offset})
            assert got == want[offset : offset + size]
            got, _ = page(engine, {**options, "last": size})
            assert got == want[-size:]
        finally:
            engine.close()


@each_policy
@given(world=worlds(), order=orders, size=st.integers(1, 4))
def test_cursor_pages_cover_every_row_once(
    policy: str, world: World, order: tuple[Any, str, bool], size: int
) -> None:
    where, field_name, desc = order
    with tempfile.TemporaryDirectory() as directory, using(policy):
        engine = fresh_engine(directory)
        try:
            load(engine, world)
            want = expected(world, where, field_name, desc)
            options = base_options(where, field_name, desc)

            # Forward: first, then after each end cursor.
            seen: list[str] = []
            cursor = None
            for _ in range(len(want) + 2):
                extra = {"after": cursor} if cursor is not None else {}
                rows, info = page(engine, {**options, "first": size, **extra})
                assert rows == want[len(seen) : len(seen) + size]
                seen += rows
                if not rows:
                    assert info["start-cursor"] is None
                    break
                assert info["start-cursor"][0] == rows[0]
                assert info["end-cursor"][0] == rows[-1]
                assert info["has-previous-page?"] == (len(seen) > len(rows))
                assert info["has-next-page?"] == (len(seen) < len(want))
                if not info["has-next-page?"]:
                    break
                cursor = info["end-cursor"]
            assert seen == want

            # Backward: last, then before each start cursor.
            seen = []
            cursor = None
            for _ in range(len(want) + 2):
                extra = {"before": cursor} if cursor is not None else {}
                rows, info = page(engine, {**options, "last": size, **extra})
                end = len(want) - len(seen)
                assert rows == want[max(0, end - size) : end]
                seen = rows + seen
                if not rows:
                    break
                assert info["has-next-page?"] == (len(seen) > len(rows))
                assert info["has-previous-page?"] == (len(seen) < len(want))
                if not info["has-previous-page?"]:
                    break
                cursor = info["start-cursor"]
            assert seen == want
        finally:
            engine.close()


@each_policy
@given(world=worlds(), order=orders, position=st.integers(0, 20), size=st.integers(1, 3))
def test_inclusive_and_two_sided_cursors(
    policy: str, world: World, order: tuple[Any, str, bool], position: int, size: int
) -> None:
    where, field_name, desc = order
    with tempfile.TemporaryDirectory() as directory, using(policy):
        engine = fresh_engine(directory)
        try:
            load(engine, world)
            want = expected(world, where, field_name, desc)
            options = base_options(where, field_name, desc)
            if not want:
                return
            # Cursors of two rows, taken from single-row pages.
            start = position % len(want)
            stop = min(len(want) - 1, start + size)
            _, first_info = page(engine, {**options, "first": 1, "offset": start})
            _, last_info = page(engine, {**options, "first": 1, "offset": stop})
            after = first_info["start-cursor"]
            before = last_info["start-cursor"]
            rows, _ = page(engine, {**options, "after": after, "afterInclusive": True})
            assert rows == want[start:]
            rows, _ = page(engine, {**options, "before": before, "beforeInclusive": True})
            assert rows == want[: stop + 1]
            rows, _ = page(engine, {**options, "after": after, "before": before})
            assert rows == want[start + 1 : stop]
            rows, _ = page(engine, {**options, "after": after, "last": 1})
            assert rows == want[start + 1 :][-1:]
        finally:
            engine.close()


@each_policy
def test_dates_that_stopped_being_dates_sort_with_the_nulls(engine: AppEngine, policy: str) -> None:
    schema: dict[str, Any] = {
        "attrs": {"events": {"when": {"type": "string", "indexed": True}}},
        "links": {},
    }
    engine.apply_schema(schema)
    engine.transact(
        [
            ["update", "events", uid(1), {"when": "2024-05-01"}],
            ["update", "events", uid(2), {"when": "soon"}],
            ["update", "events", uid(3), {"when": "2023-01-01T00:00:00Z"}],
            ["update", "events", uid(4), {}],  # never written: no triple at all
            ["update", "events", uid(5), {"when": None}],
        ],
        ADMIN,
    )
    schema["attrs"]["events"]["when"]["type"] = "date"
    engine.apply_schema(schema)

    def ordered(direction: str, **extra: Any) -> list[str]:
        options = {"order": {"when": direction}, **extra}
        with using(policy):
            result = engine.query({"events": {"$": options}}, ADMIN)
        return [row["id"] for row in result["events"]]

    nulls = [uid(2), uid(4), uid(5)]  # "soon" is no instant: it sorts as null
    assert ordered("asc") == [*nulls, uid(3), uid(1)]
    assert ordered("desc") == [uid(1), uid(3), *reversed(nulls)]
    assert ordered("asc", limit=2, offset=2) == [uid(5), uid(3)]
    assert ordered("desc", last=2) == [uid(4), uid(2)]
