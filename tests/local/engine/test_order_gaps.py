"""The `order_gaps` table keeps its invariant through every kind of write.

After each transaction or schema change the stored gaps must equal the gaps computed
from scratch (`order_gaps.expected_gaps`): creates with and without values, explicit
nulls, entities made by link steps or lookups, deletes with cascades, `$users` without
an email, attributes that become indexed, typed or dates, and rolled-back writes.
"""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb_local import order_gaps
from instantdb_local.engine import AppEngine
from instantdb_local.errors import ServerError
from tests.local.engine.helpers import ADMIN, uid

SCHEMA: dict[str, Any] = {
    "attrs": {
        "items": {
            "n": {"type": "number", "indexed": True},
            "when": {"type": "string", "indexed": True},
            "note": {"type": "string"},
        },
        "people": {"age": {"type": "number", "indexed": True}},
    },
    "links": {
        "itemOwner": {
            "forward": {"on": "items", "label": "owner", "has": "one", "onDelete": "cascade"},
            "reverse": {"on": "people", "label": "items", "has": "many"},
        }
    },
}


def check(engine: AppEngine) -> None:
    conn = sqlite3.connect(engine.path)
    try:
        assert order_gaps.stored_gaps(conn) == order_gaps.expected_gaps(conn, engine.catalog)
    finally:
        conn.close()


ids = st.sampled_from([uid(i) for i in range(1, 7)])
people = st.sampled_from([uid(i) for i in range(50, 53)])
steps = st.one_of(
    st.tuples(st.just("update"), ids, st.sampled_from([{}, {"n": 1}, {"n": None}, {"note": "x"}])),
    st.tuples(st.just("update"), ids, st.just({"when": "2024-01-01"})),
    st.tuples(st.just("update"), ids, st.just({"when": "later"})),
    st.tuples(st.just("link"), ids, people.map(lambda p: {"owner": p})),
    st.tuples(st.just("delete"), ids, st.just({})),
    st.tuples(st.just("person"), people, st.sampled_from([{}, {"age": 3}])),
    st.tuples(st.just("kill"), people, st.just({})),
    st.tuples(
        st.just("user"), st.sampled_from(["x.io", None]), st.sampled_from([{}, {"nick": "n"}])
    ),
    st.tuples(st.just("schema"), st.sampled_from(["date", "index-note", "new-attr"]), st.just({})),
    st.tuples(st.just("bad"), ids, st.just({})),
)


def apply(engine: AppEngine, step: tuple[str, Any, dict[str, Any]], schema: dict[str, Any]) -> None:
    kind, target, args = step
    if kind in ("update", "link"):
        if args.get("when") == "later" and schema["attrs"]["items"]["when"]["type"] == "date":
            with pytest.raises(ServerError):  # no longer a valid value
                engine.transact([[kind, "items", target, args]], ADMIN)
        else:
            engine.transact([[kind, "items", target, args]], ADMIN)
    elif kind == "delete":
        engine.transact([["delete", "items", target]], ADMIN)
    elif kind == "person":
        engine.transact([["update", "people", target, args]], ADMIN)
    elif kind == "kill":
        engine.transact([["delete", "people", target]], ADMIN)  # cascades to its items
    elif kind == "user":
        # A user written with another attribute but no email: null-filling skips
        # system attributes, so the email is a gap.
        values = {"email": f"{uuid.uuid4().hex}@{target}"} if target else dict(args)
        engine.transact([["update", "$users", str(uuid.uuid4()), values]], ADMIN)
    elif kind == "bad":
        # A write that fails after its first step: nothing of it may stay.
        with pytest.raises(ServerError):
            engine.transact(
                [["update", "items", target, {}], ["update", "items", target, {"n": "NaN?"}]],
                ADMIN,
            )
    elif target == "date":
        schema["attrs"]["items"]["when"]["type"] = "date"
        engine.apply_schema(schema)
    elif target == "index-note":
        schema["attrs"]["items"]["note"]["indexed"] = True
        engine.apply_schema(schema)
    else:
        engine.transact(
            [
                [
                    "add-attr",
                    {
                        "id": str(uuid.uuid4()),
                        "forward-identity": [
                            str(uuid.uuid4()),
                            "items",
                            f"x{uuid.uuid4().hex[:6]}",
                        ],
                        "value-type": "blob",
                        "cardinality": "one",
                        "unique?": False,
                        "index?": True,
                        "checked-data-type": "number",
                    },
                ]
            ],
            ADMIN,
        )


@given(st.lists(steps, max_size=12))
def test_gaps_match_their_definition_after_every_write(plan: list[Any]) -> None:
    schema = {
        "attrs": {
            ns: {k: dict(v) for k, v in attrs.items()} for ns, attrs in SCHEMA["attrs"].items()
        },
        "links": SCHEMA["links"],
    }
    with tempfile.TemporaryDirectory() as directory:
        engine = AppEngine(Path(directory) / "app.sqlite3", app_id=str(uuid.uuid4()))
        try:
            engine.apply_schema(schema)
            check(engine)
            for step in plan:
                apply(engine, step, schema)
                check(engine)
        finally:
            engine.close()


def test_an_existing_file_gets_its_gaps_when_opened(tmp_path: Path) -> None:
    """A data file written before the table existed is filled on open (migration)."""
    path = tmp_path / "app.sqlite3"
    engine = AppEngine(path, app_id="a")
    engine.apply_schema(SCHEMA)
    engine.transact([["update", "items", uid(1), {}], ["update", "items", uid(2), {"n": 1}]], ADMIN)
    engine.close()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM order_gaps")
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()

    engine = AppEngine(path, app_id="a")
    try:
        check(engine)
        rows = engine.query({"items": {"$": {"order": {"n": "desc"}, "limit": 5}}}, ADMIN)
        assert [row["id"] for row in rows["items"]] == [uid(2), uid(1)]
    finally:
        engine.close()
