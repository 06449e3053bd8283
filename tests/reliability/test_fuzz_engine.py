"""Fuzz the local server's engine directly (no HTTP): every InstaQL query and every
InstaML step list, from admin, a user and a guest under real CEL rules, ends in a result
or a 4xx `ServerError`; never another exception. The database stays sound throughout.

Depth stays within what the HTTP layer lets through (`MAX_JSON_DEPTH`); deeper input
is refused there and is covered by ``test_limits.py``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given

from instantdb_local.engine import Actor, AppEngine
from instantdb_local.errors import ServerError
from tests.reliability._strategies import (
    ENTITY_IDS,
    FUZZ_RULES,
    FUZZ_SCHEMA,
    queries,
    transaction_steps,
)

USER = {"id": str(uuid.UUID(int=99, version=4)), "email": "a@b.co", "isGuest": False}
ACTORS = {
    "admin": Actor.admin(),
    "user": Actor(is_admin=False, user=USER, request={"ip": "127.0.0.1", "origin": None}),
    "guest": Actor(is_admin=False, user=None, request={"ip": "127.0.0.1", "origin": None}),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppEngine]:
    path: Path = tmp_path_factory.mktemp("fuzz-engine") / "app.sqlite3"
    app = AppEngine(path, app_id=str(uuid.uuid4()))
    app.apply_schema(FUZZ_SCHEMA)
    app.set_rules(FUZZ_RULES)
    goals, todos = ENTITY_IDS[:4], ENTITY_IDS[4:]
    steps: list[Any] = [
        ["update", "goals", eid, {"title": f"g{n}", "rank": n, "owner": "a@b.co"}]
        for n, eid in enumerate(goals)
    ]
    steps += [["update", "todos", eid, {"text": f"t{n}", "n": n}] for n, eid in enumerate(todos)]
    steps += [["link", "goals", goals[n], {"todos": todos[n]}] for n in range(len(todos))]
    app.transact(steps, Actor.admin())
    try:
        yield app
    finally:
        integrity = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchall()
        app.close()
        assert integrity == [("ok",)]


def _outcome(run: Callable[[], Any]) -> Any:
    """The result, or the error if it is a client error; anything else fails the test."""
    try:
        result = run()
    except ServerError as error:
        result = error
    if isinstance(result, ServerError):
        event(f"refused: {result.type}")
        assert 400 <= result.status < 500, f"{result!r} is not a client error"
        assert result.type is not None
        json.dumps(result.body())  # the error can be answered as JSON
        return result
    event("answered")
    json.dumps(result)  # the result can be answered as JSON
    return result


@pytest.mark.parametrize("who", list(ACTORS))
@given(query=queries())
def test_any_query_ends_in_a_result_or_a_4xx(engine: AppEngine, who: str, query: Any) -> None:
    result = _outcome(lambda: engine.query(query, ACTORS[who]))
    if not isinstance(result, ServerError):
        assert isinstance(result, dict)


@given(query=queries())
def test_any_query_perms_check_ends_in_a_result_or_a_4xx(engine: AppEngine, query: Any) -> None:
    _outcome(lambda: engine.query_perms_check(query, ACTORS["user"]))


@pytest.mark.parametrize("who", list(ACTORS))
@given(steps=transaction_steps())
def test_any_transaction_ends_in_a_tx_id_or_a_4xx(engine: AppEngine, who: str, steps: Any) -> None:
    result = _outcome(lambda: engine.transact(steps, ACTORS[who]))
    if not isinstance(result, ServerError):
        assert isinstance(result, int)
    # Whatever happened, the engine still answers.
    assert isinstance(engine.query({"goals": {}}, ACTORS["admin"]), dict)


@given(steps=transaction_steps())
def test_any_transaction_dry_run_leaves_no_trace(engine: AppEngine, steps: Any) -> None:
    before = engine.query({"goals": {}, "todos": {}}, ACTORS["admin"])
    _outcome(lambda: engine.transact_perms_check(steps, ACTORS["guest"]))
    assert engine.query({"goals": {}, "todos": {}}, ACTORS["admin"]) == before


# -- regressions the fuzzing found -----------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[AppEngine]:
    app = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    app.apply_schema(FUZZ_SCHEMA)
    try:
        yield app
    finally:
        app.close()


@pytest.mark.parametrize("value", [False, 7, None, {"a": 1, "b": 2}, [True]])
def test_a_link_written_by_update_with_a_value_that_is_no_id(fresh: AppEngine, value: Any) -> None:
    # Was an AssertionError (a 500) for anything but a string or a lookup.
    steps = [["update", "todos", ENTITY_IDS[0], {"goal": value}]]
    if value is None:  # no target: nothing to link
        assert isinstance(fresh.transact(steps, ACTORS["admin"]), int)
        return
    with pytest.raises(ServerError) as caught:
        fresh.transact(steps, ACTORS["admin"])
    assert (caught.value.status, caught.value.type) == (400, "validation-failed")
    assert "Linked value must be a valid uuid." in caught.value.message


def test_add_attr_with_an_id_that_is_taken(fresh: AppEngine) -> None:
    # Was an sqlite3.IntegrityError (a 500).
    taken = next(attr.id for attr in fresh._catalog if attr.etype == "goals")
    step = ["add-attr", {"id": taken, "forward-identity": [ENTITY_IDS[0], "other", "label"]}]
    with pytest.raises(ServerError) as caught:
        fresh.transact([step], ACTORS["admin"])
    assert (caught.value.status, caught.value.type) == (400, "record-not-unique")
    assert taken in caught.value.message
    assert fresh.query({"other": {}}, ACTORS["admin"]) == {"other": []}


@pytest.mark.parametrize(
    "options",
    [
        {"limit": 2**70},
        {"last": 2**63},
        {"offset": 2**64},
        {"after": [ENTITY_IDS[0], ENTITY_IDS[1], None, 2**70]},
        {"before": [ENTITY_IDS[0], ENTITY_IDS[1], None, {"tx": 1}]},
        {"after": [7, ENTITY_IDS[1], None, 1]},
    ],
    ids=["limit", "last", "offset", "cursor-huge-tx", "cursor-map-tx", "cursor-number-id"],
)
def test_pagination_numbers_a_long_cannot_hold(fresh: AppEngine, options: Any) -> None:
    # Were OverflowError / binding errors from SQLite (500s); found by atheris.
    with pytest.raises(ServerError) as caught:
        fresh.query({"goals": {"$": options}}, ACTORS["admin"])
    assert (caught.value.status, caught.value.type) == (400, "validation-failed")


def test_a_dotted_lookup_through_a_plain_attribute(fresh: AppEngine) -> None:
    # Was an AssertionError (a 500); found by atheris.
    with pytest.raises(ServerError) as caught:
        fresh.transact([["update", "goals", ["title.n", "x"], {"rank": 1}]], ACTORS["admin"])
    assert (caught.value.status, caught.value.type) == (400, "validation-failed")
    assert "goals.title is an attribute, not a link" in caught.value.message
