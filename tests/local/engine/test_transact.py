"""InstaML through the engine: grouping, lookups, cascades, validation, atomicity."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from instantdb_local.engine import AppEngine
from tests.local.engine.helpers import ADMIN, error_of, ids, tx, uid

TODO_GOAL = {
    "attrs": {
        "goals": {"title": {"type": "string"}},
        "todos": {"title": {"type": "string"}},
    },
    "links": {
        "todoGoal": {
            "forward": {"on": "todos", "label": "goal", "has": "one"},
            "reverse": {"on": "goals", "label": "todos", "has": "many"},
        }
    },
}


def q(engine: AppEngine, query: dict[str, Any]) -> dict[str, Any]:
    return engine.query(query, ADMIN)


def test_tx_ids_increase_and_empty_transactions_succeed(engine: AppEngine) -> None:
    first = tx(engine)
    second = tx(engine, ["update", "goals", uid(1), {"title": "a"}])
    assert second > first


def test_failed_transaction_writes_nothing_not_even_new_attrs(engine: AppEngine) -> None:
    tx(engine, ["update", "goals", uid(1), {"title": "a"}])
    error = error_of(
        lambda: tx(
            engine,
            ["update", "goals", uid(2), {"brandNew": 1}],
            ["create", "goals", uid(1), {"title": "again"}],
        )
    )
    assert error.type == "validation-failed"
    assert "Creating entities that exist" in error.message
    assert q(engine, {"goals": {}}) == {"goals": [{"id": uid(1), "title": "a"}]}
    assert "brandNew" not in engine.schema_json()["schema"]["blobs"]["goals"]


def test_cascades_recurse_through_several_links(engine: AppEngine) -> None:
    engine.apply_schema(
        {
            "attrs": {"a": {}, "b": {}, "c": {}},
            "links": {
                "ab": {
                    "forward": {"on": "b", "label": "a", "has": "one", "onDelete": "cascade"},
                    "reverse": {"on": "a", "label": "bs", "has": "many"},
                },
                "bc": {
                    "forward": {"on": "b", "label": "cs", "has": "many"},
                    "reverse": {"on": "c", "label": "b", "has": "one", "onDelete": "cascade"},
                },
            },
        }
    )
    tx(
        engine,
        ["update", "a", uid(1), {}],
        ["update", "b", uid(2), {}],
        ["update", "c", uid(3), {}],
        ["update", "c", uid(4), {}],
        ["link", "b", uid(2), {"a": uid(1), "cs": [uid(3)]}],
    )
    tx(engine, ["delete", "a", uid(1)])
    assert q(engine, {"a": {}, "b": {}, "c": {}}) == {"a": [], "b": [], "c": [{"id": uid(4)}]}


def test_delete_leaves_the_same_id_in_other_namespaces(engine: AppEngine) -> None:
    tx(engine, ["update", "goals", uid(1), {"t": 1}], ["update", "todos", uid(1), {"t": 2}])
    tx(engine, ["delete", "goals", uid(1)])
    assert q(engine, {"goals": {}, "todos": {}}) == {
        "goals": [],
        "todos": [{"id": uid(1), "t": 2}],
    }


def test_dotted_lookup_through_a_has_one_link(engine: AppEngine) -> None:
    # No schema: the link's target namespace is named after the label ("owner").
    tx(engine, ["update", "owner", uid(400), {"name": "o"}])
    tx(engine, ["update", "profiles", ["owner.id", uid(400)], {"bio": "first"}])
    tx(engine, ["update", "profiles", ["owner.id", uid(400)], {"bio": "second"}])
    rows = q(engine, {"profiles": {"owner": {}}})["profiles"]
    assert len(rows) == 1
    assert rows[0]["bio"] == "second"
    assert ids(rows[0]["owner"]) == [uid(400)]
    # Correction 2: the link made through the lookup is one-to-one.
    error = error_of(lambda: tx(engine, ["link", "profiles", uid(9), {"owner": uid(400)}]))
    assert error.type == "record-not-unique"


def test_lookup_strings_as_link_targets_and_ids(engine: AppEngine) -> None:
    engine.apply_schema(
        {"attrs": {"tags": {"name": {"type": "string", "unique": True}}}, "links": {}}
    )
    tx(engine, ["update", "tags", uid(1), {"name": "red"}])
    tx(engine, ["link", "posts", uid(2), {"tags": 'lookup__name__"red"'}])
    assert q(engine, {"posts": {"tags": {}}})["posts"][0]["tags"] == [{"id": uid(1), "name": "red"}]
    tx(engine, ["update", "tags", 'lookup__name__"red"', {"name": "crimson"}])
    assert q(engine, {"tags": {}})["tags"] == [{"id": uid(1), "name": "crimson"}]


def test_lookup_created_in_the_same_transaction_can_be_a_link_target(engine: AppEngine) -> None:
    tx(
        engine,
        ["link", "posts", uid(2), {"tags": {"slug": "new"}}],
        ["update", "tags", ["slug", "new"], {"n": 1}],
    )
    rows = q(engine, {"posts": {"tags": {}}})["posts"]
    assert rows[0]["tags"][0]["slug"] == "new"


def test_unique_values_clash_but_nulls_do_not(engine: AppEngine) -> None:
    engine.apply_schema(
        {
            "attrs": {"people": {"handle": {"type": "string", "unique": True, "indexed": True}}},
            "links": {},
        }
    )
    tx(engine, ["update", "people", uid(1), {"handle": None}], ["update", "people", uid(2), {}])
    tx(engine, ["update", "people", uid(3), {"handle": "x"}])
    error = error_of(lambda: tx(engine, ["update", "people", uid(4), {"handle": "x"}]))
    assert error.type == "record-not-unique"
    assert error.hint is not None
    assert error.hint["value"] == "x"
    # Re-writing one's own value is not a clash.
    tx(engine, ["update", "people", uid(3), {"handle": "x"}])


def test_values_too_large_for_an_index_are_refused(engine: AppEngine) -> None:
    engine.apply_schema(
        {
            "attrs": {
                "docs": {
                    "key": {"type": "string", "unique": True},
                    "tag": {"type": "string", "indexed": True},
                    "body": {"type": "string"},
                }
            },
            "links": {},
        }
    )
    big = "x" * 5000
    tx(engine, ["update", "docs", uid(1), {"body": big}])
    unique = error_of(lambda: tx(engine, ["update", "docs", uid(2), {"key": big}]))
    assert "Value is too large for a unique attribute." in unique.message
    indexed = error_of(lambda: tx(engine, ["update", "docs", uid(2), {"tag": big}]))
    assert "Value is too large for an indexed attribute." in indexed.message


def test_nul_characters_and_nan_are_refused(engine: AppEngine) -> None:
    nul = error_of(lambda: tx(engine, ["update", "docs", uid(1), {"body": "a\x00b"}]))
    assert nul.status == 400
    assert "NUL" in nul.message
    nan = error_of(lambda: tx(engine, ["update", "docs", uid(1), {"n": float("nan")}]))
    assert nan.status == 400


def test_update_through_a_link_label_writes_links(engine: AppEngine) -> None:
    engine.apply_schema(TODO_GOAL)
    tx(engine, ["update", "goals", uid(1), {"title": "g"}])
    tx(engine, ["update", "todos", uid(2), {"title": "t", "goal": uid(1)}])
    assert q(engine, {"todos": {}})["todos"] == [{"id": uid(2), "title": "t", "goal": uid(1)}]
    error = error_of(lambda: tx(engine, ["merge", "todos", uid(2), {"goal": uid(1)}]))
    assert error.type == "sql-raise"


def test_required_links_are_checked(engine: AppEngine) -> None:
    schema = dict(TODO_GOAL)
    schema["links"] = {
        "todoGoal": {
            "forward": {"on": "todos", "label": "goal", "has": "one", "required": True},
            "reverse": {"on": "goals", "label": "todos", "has": "many"},
        }
    }
    engine.apply_schema(schema)
    error = error_of(lambda: tx(engine, ["update", "todos", uid(2), {"title": "t"}]))
    assert "Missing required attribute `todos/goal`" in error.message
    tx(
        engine,
        ["update", "todos", uid(2), {"title": "t"}],
        ["link", "todos", uid(2), {"goal": uid(1)}],
    )


def test_add_attr_steps_and_duplicate_names(engine: AppEngine) -> None:
    record = {
        "id": "5d3e1d0a-6a53-4f55-9d1a-3f0c5f7c8a01",
        "forward-identity": ["f1", "todos", "createdAt"],
        "value-type": "blob",
        "cardinality": "one",
        "unique?": False,
        "index?": True,
        "checked-data-type": "date",
    }
    tx(engine, ["add-attr", record])
    blobs = engine.schema_json()["schema"]["blobs"]
    assert blobs["todos"]["createdAt"]["checked-data-type"] == "date"
    again = dict(record, id="5d3e1d0a-6a53-4f55-9d1a-3f0c5f7c8a02")
    error = error_of(lambda: tx(engine, ["add-attr", again]))
    assert error.type == "record-not-unique"
    assert error.message == "`createdAt` already exists on `todos`"


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        ("not a list", "Validation failed for steps"),
        ([["update", "goals"]], "Validation failed for steps"),
        (
            [["update", 5, "00000000-0000-4000-8000-000000000001", {}]],
            "Validation failed for steps",
        ),
        ([["update", "goals", ["a"], {}]], "Invalid entity ID"),
        (
            [["link", "goals", "00000000-0000-4000-8000-000000000001", {"x": 5}]],
            "Validation failed for steps",
        ),
        (
            [["update", "goals", "00000000-0000-4000-8000-000000000001", {}, "opts"]],
            "Validation failed for steps",
        ),
    ],
)
def test_step_spec_errors(engine: AppEngine, steps: Any, fragment: str) -> None:
    error = error_of(lambda: engine.transact(steps, ADMIN))
    assert error.type == "validation-failed"
    assert fragment in error.message


def test_system_namespaces_are_guarded(engine: AppEngine) -> None:
    reserved = error_of(lambda: tx(engine, ["update", "$things", uid(1), {"a": 1}]))
    assert "$ is reserved for system tables. You can't create $things" in reserved.message
    files = error_of(lambda: tx(engine, ["update", "$files", uid(1), {"size": 3}]))
    assert "$files.size is a system column" in files.message
    # Custom attributes on $users are fine, and admins may write its system columns.
    tx(engine, ["update", "$users", uid(1), {"email": "a@b.co", "nickname": "a"}])
    rows = q(engine, {"$users": {}})["$users"]
    assert rows == [{"id": uid(1), "email": "a@b.co", "nickname": "a"}]


def test_indexed_attrs_are_null_filled_and_backfilled(engine: AppEngine) -> None:
    tx(engine, ["update", "tasks", uid(1), {"title": "a"}])
    engine.apply_schema(
        {"attrs": {"tasks": {"priority": {"type": "number", "indexed": True}}}, "links": {}}
    )
    assert q(engine, {"tasks": {}})["tasks"] == [{"id": uid(1), "title": "a", "priority": None}]
    rows = q(engine, {"tasks": {"$": {"order": {"priority": "asc"}}}})["tasks"]
    assert ids(rows) == [uid(1)]


def test_schema_evolution_is_idempotent_and_flips_flags(engine: AppEngine) -> None:
    engine.apply_schema(TODO_GOAL)
    before = engine.schema_json()
    engine.apply_schema(TODO_GOAL)
    assert engine.schema_json() == before
    evolved = {
        "attrs": {"goals": {"title": {"type": "string", "indexed": True, "unique": True}}},
        "links": {},
    }
    engine.apply_schema(evolved)
    title = engine.schema_json()["schema"]["blobs"]["goals"]["title"]
    assert title["index?"] is True
    assert title["unique?"] is True
    assert title["id"] == before["schema"]["blobs"]["goals"]["title"]["id"]
    ref = engine.schema_json()["schema"]["refs"]["todos-goal-goals-todos"]
    assert ref["cardinality"] == "one"
    assert ref["reverse-identity"][1:] == ["goals", "todos"]


def test_bad_schema_documents_are_rejected_before_writing(engine: AppEngine) -> None:
    error = error_of(
        lambda: engine.apply_schema({"attrs": {"goals": {"t": {"type": "text"}}}, "links": {}})
    )
    assert "unknown type" in error.message
    assert "goals" not in engine.schema_json()["schema"]["blobs"]


def test_durable_settings(engine: AppEngine) -> None:
    conn = sqlite3.connect(engine.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_commit_listeners_hear_committed_transactions_only(engine: AppEngine) -> None:
    heard: list[Any] = []
    remove = engine.add_commit_listener(heard.append)
    engine.transact(
        [["update", "$files", uid(1), {"path": "a", "size": 1, "location-id": "L1"}]],
        ADMIN,
        system_writes=True,
    )
    error_of(lambda: tx(engine, ["create", "$files", uid(1), {"path": "b"}]))
    deleted = tx(engine, ["delete", "$files", ["path", "a"]])
    assert [c.tx_id for c in heard][-1] == deleted
    assert len(heard) == 2
    assert [f["location-id"] for f in heard[-1].deleted_files] == ["L1"]

    def broken(_: Any) -> None:
        raise RuntimeError("listener bug")

    engine.add_commit_listener(broken)
    remove()
    tx(engine, ["update", "goals", uid(2), {}])  # a failing listener never fails the write
    assert len(heard) == 2
