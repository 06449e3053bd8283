"""The SDK's data plane against a real server over HTTP: every transaction action, the
query language, JSON values, the schema, token-less clients and the client lifecycle.

Each test runs twice, once with `Instant` and once with `AsyncInstant` (the ``db`` and
``clients`` fixtures in conftest.py). What the server decides is checked by reading the
data back, never by looking at what the SDK sent.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from instantdb import (
    AsyncInstant,
    InstantAPIError,
    InstantError,
    InstantValidationError,
    id,
    lookup,
)
from tests.integration.conftest import Clients, Driven


def attr(kind: str, *, unique: bool = False, indexed: bool = False) -> dict[str, Any]:
    return {"type": kind, "unique": unique, "indexed": indexed, "required": False}


# goals <-many-- todos (a todo's goal is has-one; deleting a goal deletes its todos),
# goals --one--> profiles (owner; has-one, so linking again replaces it),
# profiles --one--> goals (pinned; unique both ways).
SCHEMA = {
    "attrs": {
        "goals": {
            "title": attr("string", indexed=True),
            "priority": attr("number", indexed=True),
            "due": attr("date", indexed=True),
            "slug": attr("string", unique=True, indexed=True),
            "meta": attr("json"),
        },
        "todos": {"title": attr("string", indexed=True), "done": attr("boolean", indexed=True)},
        "profiles": {"handle": attr("string", unique=True, indexed=True), "name": attr("string")},
    },
    "links": {
        "goalTodos": {
            "forward": {"on": "todos", "label": "goal", "has": "one", "onDelete": "cascade"},
            "reverse": {"on": "goals", "label": "todos", "has": "many"},
        },
        "goalOwner": {
            "forward": {"on": "goals", "label": "owner", "has": "one"},
            "reverse": {"on": "profiles", "label": "goals", "has": "many"},
        },
        "profilePin": {
            "forward": {"on": "profiles", "label": "pinned", "has": "one"},
            "reverse": {"on": "goals", "label": "pinnedBy", "has": "one"},
        },
    },
}

pytestmark = pytest.mark.instant_app(schema=SCHEMA)


def rows(db: Driven, namespace: str, **options: Any) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"$": options} if options else {}
    result: list[dict[str, Any]] = db.query({namespace: query})[namespace]
    return result


def titles(db: Driven, namespace: str = "goals", **options: Any) -> list[str]:
    return [row.get("title") for row in rows(db, namespace, **options)]


def by_id(db: Driven, namespace: str, entity: str) -> dict[str, Any] | None:
    found = rows(db, namespace, where={"id": entity})
    return found[0] if found else None


# -- transact: each action -----------------------------------------------------------


def test_update_upserts_and_keeps_attributes_it_does_not_name(db: Driven) -> None:
    goal = id()
    first = db.transact(db.tx.goals[goal].update({"title": "Get fit", "priority": 2}))
    second = db.transact(db.tx.goals[goal].update({"priority": 3}))
    assert isinstance(first["tx-id"], int)
    assert second["tx-id"] > first["tx-id"]
    stored = by_id(db, "goals", goal)
    assert stored is not None
    assert (stored["title"], stored["priority"]) == ("Get fit", 3)


def test_update_without_upsert_refuses_a_missing_entity(db: Driven) -> None:
    missing = id()
    with pytest.raises(InstantValidationError) as caught:
        db.transact(db.tx.goals[missing].update({"title": "x"}, {"upsert": False}))
    assert caught.value.status == 400
    assert caught.value.type == "validation-failed"
    assert "Updating entities that don't exist" in str(caught.value)
    assert missing in str(caught.value)
    assert caught.value.hint["data-type"] == "tx-step"
    assert rows(db, "goals") == []

    present = id()
    db.transact(db.tx.goals[present].update({"title": "a"}))
    db.transact(db.tx.goals[present].update({"title": "b"}, {"upsert": False}))
    assert titles(db) == ["b"]


def test_merge_deep_merges_and_null_deletes_a_key(db: Driven) -> None:
    goal = id()
    db.transact(db.tx.goals[goal].update({"meta": {"a": {"b": 1, "c": 2}, "keep": [1, 2]}}))
    db.transact(db.tx.goals[goal].merge({"meta": {"a": {"c": None, "d": 3}, "keep": [9]}}))
    stored = by_id(db, "goals", goal)
    assert stored is not None
    assert stored["meta"] == {"a": {"b": 1, "d": 3}, "keep": [9]}
    # Merging into nothing stores the patch, as is.
    fresh = id()
    db.transact(db.tx.goals[fresh].merge({"meta": {"x": 1}}))
    assert (by_id(db, "goals", fresh) or {})["meta"] == {"x": 1}


def test_create_refuses_an_entity_that_exists(db: Driven) -> None:
    goal = id()
    db.transact(db.tx.goals[goal].create({"title": "first"}))
    with pytest.raises(InstantValidationError, match="Creating entities that exist") as caught:
        db.transact(db.tx.goals[goal].create({"title": "second"}))
    assert goal in str(caught.value)
    assert titles(db) == ["first"]


def test_delete_cascades_along_on_delete_links(db: Driven) -> None:
    goal, other = id(), id()
    todo_1, todo_2, loose = id(), id(), id()
    db.transact(
        [
            db.tx.goals[goal].update({"title": "g"}).link({"todos": [todo_1, todo_2]}),
            db.tx.goals[other].update({"title": "other"}),
            db.tx.todos[todo_1].update({"title": "t1"}),
            db.tx.todos[todo_2].update({"title": "t2"}),
            db.tx.todos[loose].update({"title": "loose"}),
        ]
    )
    db.transact(db.tx.goals[goal].delete())
    assert titles(db) == ["other"]
    assert titles(db, "todos") == ["loose"]
    # Deleting what is not there is a no-op, not an error.
    db.transact(db.tx.goals[id()].delete())
    assert titles(db) == ["other"]


def test_link_and_unlink(db: Driven) -> None:
    goal, todo_1, todo_2 = id(), id(), id()
    db.transact(
        [
            db.tx.todos[todo_1].update({"title": "t1"}),
            db.tx.todos[todo_2].update({"title": "t2"}),
            db.tx.goals[goal].update({"title": "g"}).link({"todos": [todo_1, todo_2]}),
        ]
    )
    linked = db.query({"goals": {"todos": {}}})["goals"][0]["todos"]
    assert sorted(t["title"] for t in linked) == ["t1", "t2"]

    db.transact(db.tx.goals[goal].unlink({"todos": todo_1}))
    linked = db.query({"goals": {"todos": {}}})["goals"][0]["todos"]
    assert [t["title"] for t in linked] == ["t2"]
    # Linking from the other side (the reverse label) stores the same link.
    db.transact(db.tx.todos[todo_1].link({"goal": goal}))
    linked = db.query({"goals": {"todos": {}}})["goals"][0]["todos"]
    assert sorted(t["title"] for t in linked) == ["t1", "t2"]


def test_has_one_link_is_replaced_by_linking_again(db: Driven) -> None:
    goal, ann, bob = id(), id(), id()
    db.transact(
        [
            db.tx.profiles[ann].update({"handle": "ann"}),
            db.tx.profiles[bob].update({"handle": "bob"}),
            db.tx.goals[goal].update({"title": "g"}).link({"owner": ann}),
        ]
    )
    db.transact(db.tx.goals[goal].link({"owner": bob}))
    # A forward has-one link reads back as a plain id field when not nested.
    assert (by_id(db, "goals", goal) or {})["owner"] == bob
    owners = {
        p["handle"]: [g["id"] for g in p["goals"]] for p in rows_with(db, "profiles", "goals")
    }
    assert owners == {"ann": [], "bob": [goal]}


def test_a_unique_reverse_link_cannot_be_taken_twice(db: Driven) -> None:
    goal, ann, bob = id(), id(), id()
    db.transact(
        [
            db.tx.goals[goal].update({"title": "g"}),
            db.tx.profiles[ann].update({"handle": "ann"}).link({"pinned": goal}),
            db.tx.profiles[bob].update({"handle": "bob"}),
        ]
    )
    with pytest.raises(InstantAPIError) as caught:
        db.transact(db.tx.profiles[bob].link({"pinned": goal}))
    assert (caught.value.status, caught.value.type) == (400, "record-not-unique")
    assert caught.value.hint["record-type"] == "triple"


def rows_with(db: Driven, namespace: str, label: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = db.query({namespace: {label: {}}})[namespace]
    return result


def test_lookups_address_entities_by_a_unique_attribute(db: Driven) -> None:
    # Three spellings of the same lookup; the first creates the profile (upsert).
    db.transact(db.tx.profiles[lookup("handle", "zoë")].update({"name": "Zoë"}))
    db.transact(db.tx.profiles.lookup("handle", "zoë").update({"name": "Zoe"}))
    db.transact(db.tx.profiles[("handle", "zoë")].merge({"name": "Zoë B."}))
    assert [(p["handle"], p["name"]) for p in rows(db, "profiles")] == [("zoë", "Zoë B.")]
    profile = rows(db, "profiles")[0]["id"]

    # A lookup string as a link target (sent verbatim, resolved by the server).
    goal = id()
    db.transact(db.tx.goals[goal].update({"title": "g"}).link({"owner": lookup("handle", "zoë")}))
    assert (by_id(db, "goals", goal) or {})["owner"] == profile

    # A lookup target may be created earlier in the same transaction, through a lookup.
    other = id()
    db.transact(
        [
            db.tx.profiles[lookup("handle", "new")].update({"name": "New"}),
            db.tx.goals[other].update({"title": "h"}).link({"owner": lookup("handle", "new")}),
        ]
    )
    owner = (by_id(db, "goals", other) or {})["owner"]
    assert (by_id(db, "profiles", owner) or {})["handle"] == "new"


def test_lookup_errors_come_from_the_server(db: Driven) -> None:
    with pytest.raises(InstantValidationError, match="not a unique attribute"):
        db.transact(db.tx.goals[lookup("title", "x")].update({"priority": 1}))
    with pytest.raises(InstantValidationError, match="lookup does not exist"):
        db.transact(db.tx.goals[id()].link({"owner": lookup("handle", "nobody")}))
    assert rows(db, "goals") == []


RULE_PARAMS_RULES = {
    "notes": {"allow": {"view": "true", "create": "ruleParams.code == 'open sesame'"}},
}


@pytest.mark.instant_app(rules=RULE_PARAMS_RULES)
def test_rule_params_reach_the_rules_of_each_entity(db: Driven) -> None:
    guest = db.as_user(guest=True)
    note_1, note_2, note_3 = id(), id(), id()
    with pytest.raises(InstantAPIError) as caught:
        guest.transact(guest.tx.notes[note_1].update({"text": "no params"}))
    assert caught.value.type == "permission-denied"

    # Per chunk, and for every entity of the transaction at once.
    guest.transact(guest.tx.notes[note_1].rule_params({"code": "open sesame"}).update({"n": 1}))
    guest.transact(
        [guest.tx.notes[note_2].update({"n": 2}), guest.tx.notes[note_3].update({"n": 3})],
        rule_params={"code": "open sesame"},
    )
    assert sorted(note["n"] for note in rows(db, "notes")) == [1, 2, 3]


def test_lists_of_chunks_nest_and_are_all_or_nothing(db: Driven) -> None:
    existing = id()
    db.transact(db.tx.goals[existing].update({"title": "exists"}))
    new_ids = [id() for _ in range(4)]

    def more() -> Any:
        yield db.tx.goals[new_ids[2]].update({"title": "c"})
        yield [db.tx.goals[new_ids[3]].update({"title": "d"})]

    db.transact(
        [
            [db.tx.goals[new_ids[0]].update({"title": "a"})],
            [[db.tx.goals[new_ids[1]].update({"title": "b"})], more()],
        ]
    )
    assert sorted(titles(db)) == ["a", "b", "c", "d", "exists"]

    # One failing step fails the whole transaction: nothing else is written.
    with pytest.raises(InstantValidationError):
        db.transact(
            [
                db.tx.goals[id()].update({"title": "never"}),
                db.tx.goals[existing].create({"title": "again"}),
            ]
        )
    assert "never" not in titles(db)


# -- query -----------------------------------------------------------------------------


@pytest.fixture
def world(db: Driven) -> dict[str, str]:
    """Four goals with todos and owners.

    One transaction per entity: the default order is creation order, and entities made
    in one transaction tie (and then sort by their random ids).
    """
    ids = {name: id() for name in ("run", "swim", "read", "rest", "t1", "t2", "t3", "ann", "bob")}
    tx = db.tx
    for chunk in [
        tx.profiles[ids["ann"]].update({"handle": "ann", "name": "Ann"}),
        tx.profiles[ids["bob"]].update({"handle": "bob", "name": "Bob"}),
        tx.todos[ids["t1"]].update({"title": "shoes", "done": True}),
        tx.todos[ids["t2"]].update({"title": "route", "done": False}),
        tx.todos[ids["t3"]].update({"title": "pool", "done": False}),
        tx.goals[ids["run"]]
        .update({"title": "Run 5k", "priority": 1, "due": "2024-03-01", "slug": "run"})
        .link({"owner": ids["ann"], "todos": [ids["t1"], ids["t2"]]}),
        tx.goals[ids["swim"]]
        .update({"title": "Swim", "priority": 2, "due": "2024-06-01T12:00:00Z"})
        .link({"owner": ids["bob"], "todos": ids["t3"]}),
        tx.goals[ids["read"]]
        .update({"title": "read books", "priority": 3})
        .link({"owner": ids["ann"]}),
        tx.goals[ids["rest"]].update({"title": "Rest", "priority": 2}),
    ]:
        db.transact(chunk)
    return ids


def test_nested_links_come_back_as_nested_lists(db: Driven, world: dict[str, str]) -> None:
    result = db.query({"goals": {"todos": {"goal": {}}, "owner": {}}})
    run = next(goal for goal in result["goals"] if goal["id"] == world["run"])
    assert [todo["title"] for todo in run["todos"]] == ["shoes", "route"]
    assert [todo["goal"][0]["id"] for todo in run["todos"]] == [world["run"]] * 2
    assert [owner["handle"] for owner in run["owner"]] == ["ann"]
    rest = next(goal for goal in result["goals"] if goal["id"] == world["rest"])
    assert (rest["todos"], rest["owner"]) == ([], [])
    # Links followed in reverse, and child filters.
    ann = db.query({"profiles": {"$": {"where": {"handle": "ann"}}, "goals": {}}})["profiles"]
    assert sorted(goal["title"] for goal in ann[0]["goals"]) == ["Run 5k", "read books"]
    open_todos = db.query({"goals": {"todos": {"$": {"where": {"done": False}}}}})["goals"]
    assert {g["title"]: [t["title"] for t in g["todos"]] for g in open_todos} == {
        "Run 5k": ["route"],
        "Swim": ["pool"],
        "read books": [],
        "Rest": [],
    }


WHERE_CASES = [
    ({"title": "Swim"}, ["Swim"]),
    ({"priority": 2}, ["Swim", "Rest"]),
    ({"title": "Run 5k", "priority": 1}, ["Run 5k"]),
    ({"todos.title": "pool"}, ["Swim"]),
    ({"owner.handle": "ann"}, ["Run 5k", "read books"]),
    ({"priority": {"$in": [1, 3]}}, ["Run 5k", "read books"]),
    ({"title": {"$ne": "Swim"}}, ["Run 5k", "read books", "Rest"]),
    ({"title": {"$not": "Swim"}}, ["Run 5k", "read books", "Rest"]),
    ({"due": {"$isNull": True}}, ["read books", "Rest"]),
    ({"due": {"$isNull": False}}, ["Run 5k", "Swim"]),
    ({"owner": {"$isNull": True}}, ["Rest"]),
    ({"priority": {"$gt": 1}}, ["Swim", "read books", "Rest"]),
    ({"priority": {"$gte": 2}}, ["Swim", "read books", "Rest"]),
    ({"priority": {"$lt": 2}}, ["Run 5k"]),
    ({"priority": {"$lte": 2}}, ["Run 5k", "Swim", "Rest"]),
    ({"due": {"$gt": "2024-04-01"}}, ["Swim"]),
    ({"due": {"$lte": date(2024, 3, 1)}}, ["Run 5k"]),
    ({"title": {"$like": "R%"}}, ["Run 5k", "Rest"]),
    ({"title": {"$like": "r%"}}, ["read books"]),
    ({"title": {"$ilike": "r%"}}, ["Run 5k", "read books", "Rest"]),
    ({"or": [{"title": "Swim"}, {"priority": 3}]}, ["Swim", "read books"]),
    ({"and": [{"priority": 2}, {"or": [{"title": "Rest"}, {"title": "Run 5k"}]}]}, ["Rest"]),
    ({"nothing": "here"}, []),
]


@pytest.mark.parametrize(("where", "expected"), WHERE_CASES, ids=[str(w) for w, _ in WHERE_CASES])
def test_where(
    db: Driven, world: dict[str, str], where: dict[str, Any], expected: list[str]
) -> None:
    assert titles(db, where=where) == expected


def test_where_by_id_and_link_id(db: Driven, world: dict[str, str]) -> None:
    assert titles(db, where={"id": world["swim"]}) == ["Swim"]
    assert titles(db, where={"id": {"$in": [uuid.UUID(world["rest"]), world["run"]]}}) == [
        "Run 5k",
        "Rest",
    ]
    assert titles(db, where={"owner": world["bob"]}) == ["Swim"]


def test_order_limit_offset_first_last(db: Driven, world: dict[str, str]) -> None:
    assert titles(db) == ["Run 5k", "Swim", "read books", "Rest"]  # creation order
    # Ties on priority break by id, in the direction of the order.
    ties = sorted([world["swim"], world["rest"]])
    by_priority = [world["run"], *ties, world["read"]]
    ordered = rows(db, "goals", order={"priority": "asc"})
    assert [goal["id"] for goal in ordered] == by_priority
    descending = rows(db, "goals", order={"priority": "desc"})
    assert [goal["id"] for goal in descending] == by_priority[::-1]
    assert titles(db, order={"title": "asc"}) == ["Rest", "Run 5k", "Swim", "read books"]

    assert titles(db, limit=2) == ["Run 5k", "Swim"]
    assert titles(db, limit=2, offset=1) == ["Swim", "read books"]
    assert titles(db, offset=3) == ["Rest"]
    assert titles(db, first=3, order={"title": "desc"}) == ["read books", "Swim", "Run 5k"]
    # last: the last N, still in the requested order.
    assert titles(db, last=2) == ["read books", "Rest"]
    assert titles(db, order={"serverCreatedAt": "desc"}, limit=1) == ["Rest"]


def test_query_option_errors_come_from_the_server(db: Driven, world: dict[str, str]) -> None:
    with pytest.raises(InstantValidationError, match="must be indexed"):
        rows(db, "profiles", where={"name": {"$gt": "A"}})
    with pytest.raises(InstantValidationError, match="Only provide one of"):
        rows(db, "goals", limit=1, first=1)
    with pytest.raises(InstantValidationError) as caught:
        rows(db, "goals", order={"priority": "up"})
    assert caught.value.hint["data-type"] == "query"


def test_fields_select_attributes(db: Driven, world: dict[str, str]) -> None:
    only_titles = rows(db, "goals", fields=["title"], where={"id": world["run"]})
    assert only_titles == [{"id": world["run"], "title": "Run 5k"}]
    nested = db.query(
        {"goals": {"$": {"where": {"id": world["run"]}, "fields": ["slug"]}, "todos": {}}}
    )
    goal = nested["goals"][0]
    assert set(goal) == {"id", "slug", "todos"}
    assert len(goal["todos"]) == 2
    # A has-one link label in fields returns its raw id.
    assert rows(db, "goals", fields=["owner"], where={"id": world["swim"]}) == [
        {"id": world["swim"], "owner": world["bob"]}
    ]


# -- JSON values -------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def test_python_values_round_trip_as_the_json_policy_says(db: Driven) -> None:
    aware = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    shifted = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    a_uuid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    sent = {
        "aware": aware,
        "shifted": shifted,
        "naive": datetime(2024, 1, 2, 3, 4, 5),
        "day": date(2024, 2, 29),
        "uuid": a_uuid,
        "price": Decimal("12.50"),
        "count": Decimal("3"),
        "pair": (1, "a", (2, 3)),
        "tags": {"b", "a", "c"},
        "frozen": frozenset({3, 1, 2}),
        "color": Color.RED,
        "level": Level.HIGH,
        "nested": {"when": [date(2024, 1, 1)], "inner": {"ids": (a_uuid,)}},
        "plain": {"s": "é ☃", "n": None, "f": 0.5, "big": 2**53, "neg": -1, "t": True},
    }
    thing = id()
    db.transact(db.tx.things[thing].update(sent))
    stored = by_id(db, "things", thing)
    assert stored == {
        "id": thing,
        "aware": "2024-01-02T03:04:05.123456+00:00",
        "shifted": "2024-01-02T03:04:05+02:00",
        "naive": "2024-01-02T03:04:05",
        "day": "2024-02-29",
        "uuid": str(a_uuid),
        "price": 12.5,
        "count": 3,
        "pair": [1, "a", [2, 3]],
        "tags": ["a", "b", "c"],
        "frozen": [1, 2, 3],
        "color": "red",
        "level": 3,
        "nested": {"when": ["2024-01-01"], "inner": {"ids": [str(a_uuid)]}},
        "plain": {"s": "é ☃", "n": None, "f": 0.5, "big": 2**53, "neg": -1, "t": True},
    }
    assert isinstance(stored["count"], int)


def test_python_values_in_where_clauses(db: Driven) -> None:
    goal = id()
    db.transact(
        db.tx.goals[goal].update(
            {
                "title": "g",
                "priority": Decimal("2"),
                "due": datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
            }
        )
    )
    assert titles(db, where={"due": {"$gt": date(2024, 4, 30)}}) == ["g"]
    assert titles(db, where={"due": {"$lt": datetime(2024, 5, 1, 11, 0)}}) == []  # naive = UTC
    assert titles(db, where={"priority": Decimal("2")}) == ["g"]
    assert titles(db, where={"priority": {"$in": (1, 2)}}) == ["g"]
    assert titles(db, where={"id": uuid.UUID(goal)}) == ["g"]


def test_numpy_scalars_are_sent_as_plain_numbers(db: Driven) -> None:
    numpy = pytest.importorskip("numpy")
    thing = id()
    db.transact(
        db.tx.things[thing].update(
            {"i": numpy.int64(7), "f": numpy.float32(0.5), "b": numpy.bool_(True)}
        )
    )
    assert by_id(db, "things", thing) == {"id": thing, "i": 7, "f": 0.5, "b": True}


def test_checked_types_are_enforced_by_the_server(db: Driven) -> None:
    goal = id()
    with pytest.raises(
        InstantValidationError, match=r"Invalid value type for goals\.priority"
    ) as e:
        db.transact(db.tx.goals[goal].update({"priority": "high"}))
    assert e.value.hint["checked-data-type"] == "number"
    assert rows(db, "goals") == []


# -- schema ------------------------------------------------------------------------------


def test_schema_describes_the_apps_attributes_and_links(db: Driven) -> None:
    schema = db.schema()
    goals = schema["blobs"]["goals"]
    assert goals["title"]["checked-data-type"] == "string"
    assert goals["title"]["index?"] is True
    assert goals["slug"]["unique?"] is True
    assert schema["blobs"]["profiles"]["handle"]["forward-identity"][1:] == ["profiles", "handle"]
    owner = schema["refs"]["goals-owner-profiles-goals"]
    assert owner["cardinality"] == "one"
    assert owner["forward-identity"][1:] == ["goals", "owner"]
    assert owner["reverse-identity"][1:] == ["profiles", "goals"]
    assert schema["refs"]["todos-goal-goals-todos"]["on-delete"] == "cascade"
    # The namespaces feed db.tx tab completion, on clones too.
    assert {"goals", "todos", "profiles"} <= set(dir(db.tx))
    assert "goals" in db.as_user(guest=True).tx._ipython_key_completions_()


def test_schema_runs_as_admin_even_on_a_clone(db: Driven) -> None:
    assert "goals" in db.as_user(guest=True).schema()["blobs"]


# -- clients without an admin token --------------------------------------------------------

OPEN_RULES = {"goals": {"allow": {"view": "true", "create": "auth.id != null"}}}


@pytest.mark.instant_app(schema=SCHEMA, rules=OPEN_RULES)
def test_a_client_without_admin_token_acts_only_as_a_user(
    clients: Clients, db: Driven, instant_app: Any
) -> None:
    token = db.auth.create_token(email="ann@example.com")
    db.transact(db.tx.goals[id()].update({"title": "public"}))
    tokenless = clients.make(instant_app, admin_token="")
    assert "no admin token" in repr(tokenless.client)

    with pytest.raises(InstantError, match="no admin token"):
        tokenless.query({"goals": {}})
    with pytest.raises(InstantError, match="needs an admin token"):
        tokenless.as_user(email="ann@example.com").query({"goals": {}})
    with pytest.raises(InstantError, match="needs an admin token"):
        tokenless.schema()
    with pytest.raises(InstantError, match="needs an admin token"):
        tokenless.auth.get_user(email="ann@example.com")

    guest = tokenless.as_user(guest=True)
    assert titles(guest) == ["public"]
    with pytest.raises(InstantAPIError, match="Permission denied"):
        guest.transact(guest.tx.goals[id()].update({"title": "by a guest"}))

    ann = tokenless.as_user(token=token)
    ann.transact(ann.tx.goals[id()].update({"title": "by ann"}))
    assert sorted(titles(db)) == ["by ann", "public"]
    # The debug helpers also need the admin token, on the server's side.
    with pytest.raises(InstantValidationError) as caught:
        guest.debug_query({"goals": {}})
    assert caught.value.type == "param-missing"


# -- client lifecycle --------------------------------------------------------------------


def test_context_manager_closes_and_clones_share_the_pool(
    clients: Clients, instant_app: Any, fault_proxy: Any
) -> None:
    with clients.make(instant_app, api_uri=fault_proxy.api_uri) as db:
        db.transact(db.tx.goals[id()].update({"title": "g"}))
        guest = db.as_user(guest=True)
        with guest:
            assert titles(guest) == ["g"]
        # Leaving a clone's block leaves the root's pool open (and the clone usable)...
        assert titles(db) == ["g"]
        assert titles(guest) == ["g"]
    # ...and every request above went over one pooled connection.
    assert len(fault_proxy.requests) == 4
    assert fault_proxy.connections == 1

    for closed in (db, guest):
        with pytest.raises(InstantError, match="client is closed"):
            closed.query({"goals": {}})


def test_an_async_client_outlives_event_loops(instant_app: Any) -> None:
    # A script that calls asyncio.run() several times with one client, closing it in a
    # last asyncio.run(): each loop's pooled connections die with that loop.
    db = AsyncInstant(
        app_id=instant_app.app_id, admin_token=instant_app.admin_token, api_uri=instant_app.api_uri
    )

    async def titles_after_writing(title: str) -> list[str]:
        await db.transact(db.tx.goals[id()].update({"title": title}))
        return sorted(goal["title"] for goal in (await db.query({"goals": {}}))["goals"])

    assert asyncio.run(titles_after_writing("a")) == ["a"]
    assert asyncio.run(titles_after_writing("b")) == ["a", "b"]
    asyncio.run(db.aclose())
    with pytest.raises(InstantError, match="client is closed"):
        asyncio.run(db.query({"goals": {}}))
