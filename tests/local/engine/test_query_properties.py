"""Property test: the engine's SQL answers equal a plain-Python reference evaluator.

Random small data sets (entities, values, has-one and many-to-many links, creation
order across transactions) and random ``where``/``order``/``limit``/``offset`` queries.
The reference below reads Instant's semantics straight from the spec, sharing no code
with the engine.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from instantdb_local.engine import Actor, AppEngine

SCHEMA = {
    "attrs": {
        "items": {
            "s": {"type": "string", "indexed": True},
            "n": {"type": "number", "indexed": True},
            "b": {"type": "boolean"},
            "j": {"type": "any"},
        },
        "people": {"age": {"type": "number", "indexed": True}},
        "tags": {"name": {"type": "string"}},
    },
    "links": {
        "itemOwner": {
            "forward": {"on": "items", "label": "owner", "has": "one"},
            "reverse": {"on": "people", "label": "items", "has": "many"},
        },
        "itemTags": {
            "forward": {"on": "items", "label": "tags", "has": "many"},
            "reverse": {"on": "tags", "label": "items", "has": "many"},
        },
    },
}

S_VALUES = ["a", "b", "ab", "B"]
N_VALUES = [0, 1, 1.0, 2, -3.5]
J_VALUES = [1, "1", True, None, {"k": 1}]
MISSING = object()


def item_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def person_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{100 + i:012d}"


def tag_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{200 + i:012d}"


@dataclass
class Item:
    id: str
    values: dict[str, Any]
    owner: str | None
    tags: list[str]
    batch: int


@dataclass
class World:
    items: list[Item]
    ages: dict[str, Any]  # person id -> age (MISSING when unset)
    tag_names: dict[str, Any]
    created: dict[str, tuple[int, str]] = field(default_factory=dict)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    people = draw(st.integers(0, 3))
    tags = draw(st.integers(0, 3))
    # Many-valued paths are where existential semantics differ from set complements.
    ages = {person_id(i): draw(st.sampled_from([MISSING, 20, 30, 30.0])) for i in range(people)}
    names = {tag_id(i): draw(st.sampled_from([MISSING, "red", "blue"])) for i in range(tags)}
    items = []
    for i in range(draw(st.integers(0, 8))):
        values = {}
        for label, domain in (
            ("s", S_VALUES),
            ("n", N_VALUES),
            ("b", [True, False]),
            ("j", J_VALUES),
        ):
            choice = draw(st.sampled_from([MISSING, None, *domain]))
            if choice is not MISSING:
                values[label] = choice
        owner = draw(st.sampled_from([None, *ages])) if ages else None
        linked = draw(st.lists(st.sampled_from(sorted(names)), unique=True)) if names else []
        items.append(Item(item_id(i), values, owner, linked, draw(st.integers(0, 2))))
    return World(items, ages, names)


# -- queries ------------------------------------------------------------------------

PATHS = {
    "s": "string",
    "n": "number",
    "b": "boolean",
    "j": "any",
    "owner.age": "number",
    "tags.name": "string-unindexed",
    "owner": "link",
    "id": "id",
}


def value_for(kind: str) -> st.SearchStrategy[Any]:
    if kind == "string":
        return st.sampled_from(S_VALUES)
    if kind == "string-unindexed":
        return st.sampled_from(["red", "blue", "green"])
    if kind == "number":
        return st.sampled_from([0, 1, 1.0, 2, 20, 30, -3.5])
    if kind == "boolean":
        return st.booleans()
    if kind == "any":
        return st.sampled_from([1, "1", True, 1.0])
    if kind == "link":
        return st.sampled_from([person_id(i) for i in range(3)])
    return st.sampled_from([item_id(i) for i in range(9)])


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(sorted(PATHS)))
    kind = PATHS[path]
    ops = ["eq", "$ne", "$isNull", "$in"]
    if kind in ("string", "number"):
        ops += ["$gt", "$gte", "$lt", "$lte"]
    if kind == "string":
        ops += ["$like", "$ilike"]
    op = draw(st.sampled_from(ops))
    if op == "eq":
        return {path: draw(value_for(kind))}
    if op == "$isNull":
        return {path: {"$isNull": draw(st.booleans())}}
    if op == "$in":
        return {path: {"$in": draw(st.lists(value_for(kind), max_size=3))}}
    if op in ("$like", "$ilike"):
        return {path: {op: draw(st.sampled_from(["a%", "%b", "_", "%", "A_"]))}}
    return {path: {op: draw(value_for(kind))}}


wheres = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=4,
)


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        options["where"] = draw(wheres)
    field_name = draw(st.sampled_from(["serverCreatedAt", "n", "s"]))
    options["order"] = {field_name: draw(st.sampled_from(["asc", "desc"]))}
    if draw(st.booleans()):
        options["limit"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        options["offset"] = draw(st.integers(0, 4))
    return options


# -- the reference evaluator ------------------------------------------------------------


def same(stored: Any, wanted: Any) -> bool:
    """JSON equality with numeric equality; booleans are not numbers."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(stored, (int, float)) and isinstance(wanted, (int, float)):
        return float(stored) == float(wanted)
    return type(stored) is type(wanted) and stored == wanted


def path_values(world: World, item: Item, path: str) -> list[Any]:
    """Every value reached along the path (None for stored nulls; nothing when missing)."""
    if path == "id":
        return [item.id]
    if path == "owner":
        return [item.owner] if item.owner else []
    if path == "owner.age":
        if item.owner is None or world.ages[item.owner] is MISSING:
            # Indexed attributes are null-filled once the entity is written.
            return [None] if item.owner is not None else []
        return [world.ages[item.owner]]
    if path == "tags.name":
        return [world.tag_names[t] for t in item.tags if world.tag_names[t] is not MISSING]
    if path in item.values:
        return [item.values[path]]
    return [None] if path in ("s", "n") else []


def like(value: Any, pattern: str, ci: bool) -> bool:
    if not isinstance(value, str):
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ci else 0) is not None


def compare(value: Any, op: str, wanted: Any) -> bool:
    if value is None or isinstance(value, bool) or type(value) is not type(wanted):
        if not (isinstance(value, (int, float)) and isinstance(wanted, (int, float))):
            return False
        if isinstance(value, bool):
            return False
    return {
        "$gt": value > wanted,
        "$gte": value >= wanted,
        "$lt": value < wanted,
        "$lte": value <= wanted,
    }[op]


def matches(world: World, item: Item, where: dict[str, Any]) -> bool:
    for key, cond in where.items():
        if key == "or":
            ok = any(matches(world, item, c) for c in cond)
        elif key == "and":
            ok = all(matches(world, item, c) for c in cond)
        else:
            found = path_values(world, item, key)
            present = [v for v in found if v is not None]
            if not isinstance(cond, dict):
                ok = any(same(v, cond) for v in present)
            else:
                ((op, arg),) = cond.items()
                if op == "$isNull":
                    ok = (not present) == arg
                elif op == "$ne":
                    ok = any(not same(v, arg) for v in present) or not present
                elif op == "$in":
                    ok = any(same(v, a) for v in present for a in arg)
                elif op in ("$like", "$ilike"):
                    ok = any(like(v, arg, op == "$ilike") for v in present)
                else:
                    ok = any(compare(v, op, arg) for v in present)
        if not ok:
            return False
    return True


def sort_key(world: World, item: Item, field_name: str) -> tuple[Any, ...]:
    if field_name == "serverCreatedAt":
        return (world.created[item.id],)
    value = item.values.get(field_name)
    return ((0, 0) if value is None else (1, value), item.id)


def expected(world: World, options: dict[str, Any]) -> list[str]:
    rows = [i for i in world.items if matches(world, i, options.get("where", {}))]
    ((field_name, direction),) = options["order"].items()
    rows.sort(key=lambda i: sort_key(world, i, field_name), reverse=direction == "desc")
    start = options.get("offset", 0)
    end = start + options["limit"] if "limit" in options else None
    return [i.id for i in rows[start:end]]


# -- the property ------------------------------------------------------------------------


def load(engine: AppEngine, world: World) -> None:
    admin = Actor.admin()
    engine.apply_schema(SCHEMA)
    setup: list[list[Any]] = []
    for pid, age in world.ages.items():
        setup.append(["update", "people", pid, {} if age is MISSING else {"age": age}])
    for tid, name in world.tag_names.items():
        setup.append(["update", "tags", tid, {} if name is MISSING else {"name": name}])
    engine.transact(setup, admin)
    for batch in range(3):
        members = [i for i in world.items if i.batch == batch]
        steps: list[list[Any]] = [["update", "items", i.id, i.values] for i in members]
        for item in members:
            if item.owner:
                steps.append(["link", "items", item.id, {"owner": item.owner}])
            if item.tags:
                steps.append(["link", "items", item.id, {"tags": item.tags}])
        tx = engine.transact(steps, admin)
        for item in members:
            world.created[item.id] = (tx, item.id)


@given(world=worlds(), options=st.lists(queries(), min_size=1, max_size=6))
def test_sql_answers_match_the_reference(world: World, options: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = AppEngine(Path(directory) / "app.sqlite3", app_id=str(uuid.uuid4()))
        try:
            load(engine, world)
            for option in options:
                got = engine.query({"items": {"$": option}}, Actor.admin())["items"]
                assert [row["id"] for row in got] == expected(world, option), option
        finally:
            engine.close()
