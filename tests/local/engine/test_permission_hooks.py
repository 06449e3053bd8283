"""Where the engine consults rules, tested with a fake rule set of Python functions."""

from __future__ import annotations

from typing import Any

import pytest

from instantdb_local.engine import Actor, AppEngine
from tests.local.engine.helpers import ADMIN, FakeRules, error_of, ids, tx, uid

GUEST = Actor.guest()
SCHEMA = {
    "attrs": {
        "goals": {"title": {"type": "string"}, "public": {"type": "boolean"}},
        "todos": {"title": {"type": "string"}},
    },
    "links": {
        "todoGoal": {
            "forward": {"on": "todos", "label": "goal", "has": "one"},
            "reverse": {"on": "goals", "label": "todos", "has": "many"},
        }
    },
}


@pytest.fixture
def app(engine: AppEngine) -> AppEngine:
    engine.apply_schema(SCHEMA)
    tx(
        engine,
        ["update", "goals", uid(1), {"title": "open", "public": True}],
        ["update", "goals", uid(2), {"title": "closed", "public": False}],
        ["update", "todos", uid(3), {"title": "t3"}],
        ["link", "todos", uid(3), {"goal": uid(2)}],
    )
    return engine


def test_view_rules_filter_rows_and_nested_children(app: AppEngine) -> None:
    app.use_rule_set(FakeRules({("goals", "view"): lambda c: c.data.get("public")}))
    assert ids(app.query({"goals": {}}, GUEST)["goals"]) == [uid(1)]
    nested = app.query({"todos": {"goal": {}}}, GUEST)["todos"]
    assert nested == [{"id": uid(3), "title": "t3", "goal": []}]
    assert len(app.query({"goals": {}}, ADMIN)["goals"]) == 2


def test_dotted_where_does_not_match_through_hidden_entities(app: AppEngine) -> None:
    app.use_rule_set(FakeRules({("goals", "view"): lambda c: c.data.get("public")}))
    clause = {"todos": {"$": {"where": {"goal.title": "closed"}}}}
    assert app.query(clause, GUEST)["todos"] == []
    assert ids(app.query(clause, ADMIN)["todos"]) == [uid(3)]


def test_field_rules_drop_attributes(app: AppEngine) -> None:
    app.use_rule_set(FakeRules(fields={"goals": {"title": lambda c: c.data.get("public")}}))
    rows = app.query({"goals": {}}, GUEST)["goals"]
    assert rows == [
        {"id": uid(1), "title": "open", "public": True},
        {"id": uid(2), "public": False},
    ]


def test_rule_params_and_auth_reach_the_context(app: AppEngine) -> None:
    rules = FakeRules({("goals", "view"): lambda c: c.rule_params.get("pick") == c.data["title"]})
    app.use_rule_set(rules)
    user = {"id": uid(9), "email": "u@x.co"}
    rows = app.query({"goals": {}, "$$ruleParams": {"pick": "closed"}}, Actor.for_user(user))
    assert ids(rows["goals"]) == [uid(2)]
    assert rules.programs[("goals", "view")].seen[0].auth == user


def test_create_runs_after_the_write_and_sees_new_links(app: AppEngine) -> None:
    rules = FakeRules(
        {("todos", "create"): lambda c: len(c.ref("todos", c.data["id"], "goal.id")) == 1}
    )
    app.use_rule_set(rules)
    denied = error_of(lambda: tx(app, ["update", "todos", uid(4), {"title": "x"}], actor=GUEST))
    assert denied.type == "permission-denied"
    assert denied.hint == {"input": ["todos", "object"], "expected": "perms-pass?"}
    tx(
        app,
        ["update", "todos", uid(4), {"title": "x"}],
        ["link", "todos", uid(4), {"goal": uid(1)}],
        actor=GUEST,
    )
    assert ids(app.query({"todos": {}}, ADMIN)["todos"]) == [uid(3), uid(4)]


def test_update_sees_old_data_new_data_and_modified_fields(app: AppEngine) -> None:
    seen: list[Any] = []

    def rule(c: Any) -> bool:
        seen.append((dict(c.data), dict(c.new_data), c.request["modifiedFields"]))
        return c.new_data["title"] != "forbidden"

    app.use_rule_set(FakeRules({("goals", "update"): rule}))
    tx(app, ["merge", "goals", uid(1), {"title": "renamed"}], actor=GUEST)
    assert seen[-1][0]["title"] == "open"
    assert seen[-1][1]["title"] == "renamed"
    assert seen[-1][2] == ["title"]
    assert (
        error_of(
            lambda: tx(app, ["update", "goals", uid(1), {"title": "forbidden"}], actor=GUEST)
        ).type
        == "permission-denied"
    )
    assert (
        app.query({"goals": {"$": {"where": {"id": uid(1)}}}}, ADMIN)["goals"][0]["title"]
        == "renamed"
    )


def test_update_rule_refs_see_the_state_before_the_transaction(app: AppEngine) -> None:
    refs: list[list[Any]] = []

    def rule(c: Any) -> bool:
        refs.append(c.ref("todos", c.data["id"], "goal.id"))
        return True

    app.use_rule_set(FakeRules({("todos", "update"): rule}))
    tx(app, ["link", "todos", uid(3), {"goal": uid(1)}], actor=GUEST)
    assert refs == [[uid(2)]]
    assert app.query({"todos": {}}, ADMIN)["todos"][0]["goal"] == uid(1)


def test_delete_rules_run_for_missing_and_cascaded_entities(engine: AppEngine) -> None:
    engine.apply_schema(
        {
            "attrs": {"a": {}, "b": {}},
            "links": {
                "ab": {
                    "forward": {"on": "b", "label": "a", "has": "one", "onDelete": "cascade"},
                    "reverse": {"on": "a", "label": "bs", "has": "many"},
                }
            },
        }
    )
    tx(
        engine,
        ["update", "a", uid(1), {}],
        ["update", "b", uid(2), {}],
        ["link", "b", uid(2), {"a": uid(1)}],
    )
    deleted: list[tuple[str, Any]] = []

    def rule(etype: str) -> Any:
        def check(c: Any) -> bool:
            deleted.append((etype, c.data.get("id"), dict(c.rule_params)))
            return True

        return check

    engine.use_rule_set(FakeRules({("a", "delete"): rule("a"), ("b", "delete"): rule("b")}))
    tx(engine, ["ruleParams", "a", uid(1), {"why": "test"}], ["delete", "a", uid(1)], actor=GUEST)
    assert sorted(deleted) == [("a", uid(1), {"why": "test"}), ("b", uid(2), {"why": "test"})]
    deleted.clear()
    tx(engine, ["delete", "a", uid(7)], actor=GUEST)
    assert deleted == [("a", None, {})]


def test_link_rules_replace_the_fallback(app: AppEngine) -> None:
    linked: list[Any] = []

    def rule(c: Any) -> bool:
        linked.append((c.data["id"], c.linked_data["id"], c.linked_etype, dict(c.actions)))
        return c.linked_data.get("public") is True

    app.use_rule_set(
        FakeRules(
            {("goals", "view"): lambda c: False, ("todos", "update"): lambda c: False},
            links={("todos", "link", "goal"): rule},
        )
    )
    tx(app, ["link", "todos", uid(3), {"goal": uid(1)}], actor=GUEST)
    assert linked == [(uid(3), uid(1), "goals", {"data": "update", "linkedData": "update"})]
    assert (
        error_of(lambda: tx(app, ["link", "todos", uid(3), {"goal": uid(2)}], actor=GUEST)).type
        == "permission-denied"
    )


def test_link_fallback_checks_view_on_the_other_side(app: AppEngine) -> None:
    app.use_rule_set(FakeRules({("goals", "view"): lambda c: c.data.get("public")}))
    tx(app, ["link", "todos", uid(3), {"goal": uid(1)}], actor=GUEST)
    assert (
        error_of(lambda: tx(app, ["link", "todos", uid(3), {"goal": uid(2)}], actor=GUEST)).type
        == "permission-denied"
    )


def test_new_attributes_need_attrs_create(app: AppEngine) -> None:
    app.use_rule_set(
        FakeRules({("attrs", "create"): lambda c: c.data["forward-identity"][2] != "secret"})
    )
    tx(app, ["update", "goals", uid(1), {"color": "red"}], actor=GUEST)
    assert (
        error_of(lambda: tx(app, ["update", "goals", uid(1), {"secret": 1}], actor=GUEST)).type
        == "permission-denied"
    )
    assert (
        error_of(
            lambda: tx(app, ["add-attr", {"forward-identity": ["x", "goals", "y"]}], actor=GUEST)
        ).type
        == "permission-denied"
    )


def test_users_restrictions_for_non_admins(app: AppEngine) -> None:
    app.use_rule_set(FakeRules())
    created = error_of(lambda: tx(app, ["update", "$users", uid(5), {"nick": "x"}], actor=GUEST))
    assert (
        "$users is a system entity. You aren't allowed to create this directly." in created.message
    )
    tx(app, ["update", "$users", uid(5), {"email": "u@x.co"}])
    tx(app, ["update", "$users", uid(5), {"nick": "x"}], actor=GUEST)
    deleted = error_of(lambda: tx(app, ["delete", "$users", uid(5)], actor=GUEST))
    assert deleted.type == "validation-failed"
    column = error_of(lambda: tx(app, ["update", "$users", uid(5), {"type": "user"}], actor=GUEST))
    assert "$users.type is a system column" in column.message


def test_query_perms_check_reports_every_entity(app: AppEngine) -> None:
    app.use_rule_set(FakeRules({("goals", "view"): lambda c: c.data.get("public")}))
    body = app.query_perms_check({"goals": {}}, GUEST)
    assert ids(body["result"]["goals"]) == [uid(1)]
    assert [(c["id"], c["check"]) for c in body["check-results"]] == [
        (uid(1), True),
        (uid(2), False),
    ]
    assert body["check-results"][0]["program"]["action"] == "view"
    with pytest.raises(Exception, match="Cannot test perms as admin"):
        app.query_perms_check({"goals": {}}, ADMIN)


def test_transact_perms_check_rolls_back_unless_committed(app: AppEngine) -> None:
    app.use_rule_set(FakeRules({("goals", "create"): lambda c: c.data["title"] == "ok"}))
    dry = app.transact_perms_check([["update", "goals", uid(8), {"title": "no"}]], GUEST)
    assert dry["all-checks-ok?"] is False
    assert dry["committed?"] is False
    assert dry["check-results"][0]["scope"] == "object"
    assert dry["check-results"][0]["bindings"]["data"]["title"] == "no"
    kept = app.transact_perms_check(
        [["update", "goals", uid(8), {"title": "ok"}]], GUEST, commit=True
    )
    assert kept["committed?"] is True
    refused = app.transact_perms_check(
        [["update", "goals", uid(9), {"title": "no"}]], GUEST, commit=True
    )
    assert refused["committed?"] is False
    assert ids(app.query({"goals": {}}, ADMIN)["goals"]) == [uid(1), uid(2), uid(8)]


def test_truthiness_is_clojures(app: AppEngine) -> None:
    # Only null and false deny; 0 and "" pass, as on the real server.
    app.use_rule_set(FakeRules({("goals", "view"): lambda c: 0 if c.data["public"] else None}))
    assert ids(app.query({"goals": {}}, GUEST)["goals"]) == [uid(1)]
