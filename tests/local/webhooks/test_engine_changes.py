"""The engine's per-entity change records, which webhook events are made from."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instantdb_local.engine import Actor, AppEngine, Commit, EntityChange
from tests.local.engine.helpers import ADMIN, uid

SCHEMA = {
    "attrs": {
        "goals": {"title": {"type": "string"}, "done": {"type": "boolean"}},
        "todos": {"title": {"type": "string"}},
    },
    "links": {
        "goalTodos": {
            "forward": {"on": "goals", "label": "todos", "has": "many"},
            "reverse": {"on": "todos", "label": "goal", "has": "one", "onDelete": "cascade"},
        }
    },
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AppEngine]:
    app = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    app.apply_schema(SCHEMA)
    try:
        yield app
    finally:
        app.close()


class Recorder:
    def __init__(self, engine: AppEngine, *, wanted: bool = True) -> None:
        self.commits: list[Commit] = []
        self.wanted = wanted
        engine.add_commit_listener(self.commits.append, wants_changes=lambda: self.wanted)

    def last(self) -> list[tuple[str, str, str, Any, Any]]:
        return [(c.namespace, c.id, c.action, c.before, c.after) for c in self.commits[-1].changes]


def test_create_update_delete_records_with_scalar_values_only(engine: AppEngine) -> None:
    seen = Recorder(engine)
    engine.transact(
        [
            ["update", "goals", uid(1), {"title": "Run", "done": False}],
            ["update", "todos", uid(2), {"title": "Shoes"}],
            ["link", "goals", uid(1), {"todos": uid(2)}],
        ],
        ADMIN,
    )
    assert seen.last() == [
        ("goals", uid(1), "create", None, {"id": uid(1), "title": "Run", "done": False}),
        ("todos", uid(2), "create", None, {"id": uid(2), "title": "Shoes"}),
    ]
    engine.transact([["update", "goals", uid(1), {"done": True}]], ADMIN)
    assert seen.last() == [
        (
            "goals",
            uid(1),
            "update",
            {"id": uid(1), "title": "Run", "done": False},
            {"id": uid(1), "title": "Run", "done": True},
        )
    ]
    # The todo's has-one link to its goal is a ref: never in a record.
    engine.transact([["delete", "todos", uid(2), {}]], ADMIN)
    assert seen.last() == [("todos", uid(2), "delete", {"id": uid(2), "title": "Shoes"}, None)]


def test_a_link_only_update_reports_nothing(engine: AppEngine) -> None:
    seen = Recorder(engine)
    engine.transact(
        [["update", "goals", uid(1), {"title": "a"}], ["update", "todos", uid(2), {"title": "b"}]],
        ADMIN,
    )
    engine.transact([["link", "goals", uid(1), {"todos": uid(2)}]], ADMIN)
    assert seen.commits[-1].changes == ()


def test_cascaded_deletes_carry_their_last_state(engine: AppEngine) -> None:
    engine.transact(
        [
            ["update", "goals", uid(1), {"title": "g"}],
            ["update", "todos", uid(2), {"title": "t"}],
            ["link", "goals", uid(1), {"todos": uid(2)}],
        ],
        ADMIN,
    )
    seen = Recorder(engine)
    engine.transact([["delete", "goals", uid(1), {}]], ADMIN)
    assert seen.last() == [
        ("goals", uid(1), "delete", {"id": uid(1), "title": "g"}, None),
        ("todos", uid(2), "delete", {"id": uid(2), "title": "t"}, None),
    ]
    # The cascade really happened once, not twice or never.
    assert engine.query({"todos": {}}, ADMIN) == {"todos": []}


def test_changes_are_recorded_only_while_wanted(engine: AppEngine) -> None:
    seen = Recorder(engine, wanted=False)
    engine.transact([["update", "goals", uid(1), {"title": "a"}]], ADMIN)
    assert seen.commits[-1].changes == ()
    seen.wanted = True
    engine.transact([["update", "goals", uid(1), {"title": "b"}]], ADMIN)
    assert [c.action for c in seen.commits[-1].changes] == ["update"]


def test_user_transactions_under_rules_report_changes_too(engine: AppEngine) -> None:
    engine.set_rules({"goals": {"allow": {"create": "true", "update": "true"}}})
    seen = Recorder(engine)
    engine.transact([["update", "goals", uid(1), {"title": "mine"}]], Actor.guest())
    assert seen.commits[-1].changes == (
        EntityChange("goals", uid(1), "create", None, {"id": uid(1), "title": "mine"}),
    )


def test_internal_namespaces_are_never_reported(engine: AppEngine) -> None:
    seen = Recorder(engine)
    engine.create_refresh_token(email="a@b.c")
    namespaces = {c.namespace for c in seen.commits[-1].changes}
    assert namespaces == {"$users"}
