"""Which namespaces a live query depends on (so unrelated commits skip it), and the
engine hooks the live side uses: `Commit.etypes`, `last_tx_id` and `check_rule`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instantdb_local.engine import Actor, AppEngine, Commit
from instantdb_local.live._dependencies import query_namespaces

SCHEMA = {
    "attrs": {"goals": {"title": {"type": "string"}}, "todos": {"text": {"type": "string"}}},
    "links": {
        "goalTodos": {
            "forward": {"on": "goals", "label": "todos", "has": "many"},
            "reverse": {"on": "todos", "label": "goal", "has": "one"},
        },
        "todoOwner": {
            "forward": {"on": "todos", "label": "owner", "has": "one"},
            "reverse": {"on": "people", "label": "todos", "has": "many"},
        },
    },
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AppEngine]:
    opened = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    opened.apply_schema(SCHEMA)
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"goals": {}}, {"goals"}),
        ({"goals": {}, "notes": {}}, {"goals", "notes"}),
        ({"goals": {"todos": {}}}, {"goals", "todos"}),
        ({"todos": {"goal": {}, "owner": {}}}, {"todos", "goals", "people"}),
        ({"goals": {"$": {"where": {"title": "x"}}}}, {"goals"}),
        ({"goals": {"$": {"where": {"todos.owner.name": "x"}}}}, {"goals", "todos", "people"}),
        ({"goals": {"$": {"where": {"todos": "some-id"}}}}, {"goals", "todos"}),
        (
            {"goals": {"$": {"where": {"or": [{"title": "a"}, {"todos.text": "b"}]}}}},
            {"goals", "todos"},
        ),
        ({"goals": {}, "$$ruleParams": {"k": 1}}, {"goals"}),
        # Whatever cannot be told for sure depends on everything.
        ({"goals": {"nope": {}}}, None),
        ({"goals": {"$": {"where": {"nope.title": "x"}}}}, None),
        ({"goals": {"$": {"where": {"or": "not a list"}}}}, None),
        ({"goals": []}, None),
        (["goals"], None),
    ],
)
def test_query_namespaces(engine: AppEngine, query: Any, expected: set[str] | None):
    found = query_namespaces(engine.catalog, query)
    assert found == (frozenset(expected) if expected is not None else None)


def _commits(engine: AppEngine) -> list[Commit]:
    seen: list[Commit] = []
    engine.add_commit_listener(seen.append)
    return seen


def test_commits_name_the_namespaces_they_may_have_changed(engine: AppEngine):
    seen = _commits(engine)
    goal, todo, person, note = (str(uuid.uuid4()) for _ in range(4))
    admin = Actor.admin()

    engine.transact([["update", "goals", goal, {"title": "g"}]], admin)
    assert seen[-1].etypes == {"goals"}
    engine.transact([["update", "notes", note, {}]], admin)  # an entity with no values
    assert seen[-1].etypes == {"notes"}
    engine.transact([["link", "todos", todo, {"owner": person}]], admin)
    assert seen[-1].etypes == {"todos", "people"}
    engine.transact([["link", "goals", goal, {"todos": todo}]], admin)
    assert seen[-1].etypes == {"goals", "todos"}
    # Deleting a todo changes the link fields of goals and people pointing at it.
    engine.transact([["delete", "todos", todo]], admin)
    assert {"todos", "goals", "people"} <= set(seen[-1].etypes or ())
    # Editing attributes may change any query.
    attr = {
        "id": str(uuid.uuid4()),
        "forward-identity": [str(uuid.uuid4()), "goals", "extra"],
        "value-type": "blob",
        "cardinality": "one",
    }
    engine.transact([["add-attr", attr]], admin)
    assert seen[-1].etypes is None
    assert [c.tx_id for c in seen] == sorted(c.tx_id for c in seen)
    assert engine.last_tx_id() == seen[-1].tx_id


def test_last_tx_id_starts_at_zero(tmp_path: Path):
    fresh = AppEngine(tmp_path / "fresh.sqlite3", app_id=str(uuid.uuid4()))
    try:
        assert fresh.last_tx_id() == 0
    finally:
        fresh.close()


def test_check_rule(engine: AppEngine):
    guest = Actor.guest()
    data = {"clientId": "mine"}
    assert engine.check_rule("$streams", "create", data, Actor.admin())
    # System namespaces deny by default; user namespaces allow when no rule applies.
    assert not engine.check_rule("$streams", "create", data, guest)
    assert engine.check_rule("goals", "view", {"id": "x"}, guest)

    engine.set_rules(
        {"$streams": {"allow": {"create": "data.clientId == ruleParams.id && auth.id == null"}}}
    )
    assert engine.check_rule("$streams", "create", data, guest, rule_params={"id": "mine"})
    assert not engine.check_rule("$streams", "create", data, guest, rule_params={"id": "x"})
    user = Actor.for_user({"id": str(uuid.uuid4()), "email": "u@example.com"})
    assert not engine.check_rule("$streams", "create", data, user, rule_params={"id": "mine"})
