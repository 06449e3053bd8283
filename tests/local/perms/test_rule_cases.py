"""A table of rules, actors and data, each with the outcome the real server gives.

Every case loads a rules document, picks the program the engine would pick for the
action, evaluates it against a context and checks both the raw result (what debug
routes report) and whether the check passes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from instantdb_local.perms import Program, RuleContext, RuleSet
from tests.local.perms.fakes import FakeGraph

ALICE = {
    "id": "00000000-0000-4000-8000-000000000301",
    "email": "alice@example.com",
    "type": "user",
    "isGuest": False,
    "app_id": "00000000-0000-4000-8000-000000000999",
    "created_at": "2025-01-02T03:04:05Z",
    "handle": "alice",
}
BOB_ID = "00000000-0000-4000-8000-000000000302"
GUEST_OF_ALICE = {"id": "00000000-0000-4000-8000-000000000303", "isGuest": True}

GRAPH = FakeGraph(
    entities={
        "goals": {
            "g1": {"id": "g1", "status": "open", "title": "G1"},
            "g2": {"id": "g2", "status": "done", "title": "G2"},
        },
        "profiles": {"p1": {"id": "p1", "handle": "alice-profile"}},
        "projects": {"pr1": {"id": "pr1", "name": "Apollo"}},
    },
    links={
        ("todos", "goal"): ("goals", {"t1": ["g1"], "t2": ["g1", "g2"]}),
        ("$users", "profile"): ("profiles", {ALICE["id"]: ["p1"]}),
        ("goals", "project"): ("projects", {"g1": ["pr1"]}),
    },
)


@dataclass(frozen=True)
class Case:
    name: str
    rules: dict[str, Any] | None
    etype: str
    action: str  # view/create/update/delete, link:<label>, unlink:<label>, field:<label>
    expected: Any  # the raw result, as evaluate() returns it
    passes: bool
    context: dict[str, Any] = field(default_factory=dict)


def _goal_rule(view: str | bool) -> dict[str, Any]:
    return {"goals": {"allow": {"view": view}}}


CASES = [
    # -- plain view rules, literal booleans and null -------------------------------------------
    Case("json-true-rule", _goal_rule(True), "goals", "view", True, True),
    Case("json-false-rule", _goal_rule(False), "goals", "view", False, False),
    Case(
        "property-equality-true",
        _goal_rule("data.public == true"),
        "goals",
        "view",
        True,
        True,
        {"data": {"id": "g1", "public": True}},
    ),
    Case(
        "missing-attribute-reads-as-null",
        _goal_rule("data.public == true"),
        "goals",
        "view",
        False,
        False,
        {"data": {"id": "g3", "title": "c"}},
    ),
    Case(
        "missing-key-equals-null",
        _goal_rule("data.nothing == null && ruleParams.nothing == null"),
        "goals",
        "view",
        True,
        True,
        {"data": {"id": "g1"}},
    ),
    Case(
        "has-is-always-true-on-instant-maps",
        _goal_rule("has(data.anything) && has(auth.anything) && has(ruleParams.x)"),
        "goals",
        "view",
        True,
        True,
    ),
    Case("null-result-denies", _goal_rule("auth.isAdmin"), "goals", "view", None, False),
    Case(
        "truthy-non-boolean-passes",
        _goal_rule("data.title"),
        "goals",
        "view",
        "anything",
        True,
        {"data": {"id": "g1", "title": "anything"}},
    ),
    # -- users versus guests -------------------------------------------------------------------
    Case(
        "owner-sees-own-todo",
        {"todos": {"allow": {"view": "auth.id == data.ownerId"}}},
        "todos",
        "view",
        True,
        True,
        {"auth": ALICE, "data": {"id": "t1", "ownerId": ALICE["id"]}},
    ),
    Case(
        "user-does-not-see-others-todo",
        {"todos": {"allow": {"view": "auth.id == data.ownerId"}}},
        "todos",
        "view",
        False,
        False,
        {"auth": ALICE, "data": {"id": "t2", "ownerId": BOB_ID}},
    ),
    Case(
        "guest-auth-is-empty-map",
        {"todos": {"allow": {"view": "auth.id == data.ownerId"}}},
        "todos",
        "view",
        False,
        False,
        {"auth": None, "data": {"id": "t1", "ownerId": ALICE["id"]}},
    ),
    Case(
        "auth-fields-in-db-format",
        _goal_rule("auth.email.endsWith('@example.com') && auth.isGuest == false"),
        "goals",
        "view",
        True,
        True,
        {"auth": ALICE},
    ),
    # -- writes: create, update with newData and modifiedFields, delete ------------------------
    Case(
        "create-checks-newData-against-ruleParams",
        {"goals": {"allow": {"create": "newData.title == ruleParams.secret"}}},
        "goals",
        "create",
        True,
        True,
        {"data": {"id": "g1", "title": "x"}, "rule_params": {"secret": "x"}},
    ),
    Case(
        "create-denied-with-wrong-ruleParams",
        {"goals": {"allow": {"create": "newData.title == ruleParams.secret"}}},
        "goals",
        "create",
        False,
        False,
        {"data": {"id": "g1", "title": "x"}, "rule_params": {"secret": "y"}},
    ),
    Case(
        "update-compares-data-and-newData",
        {"goals": {"allow": {"update": "newData.title != 'forbidden' && data.title == 'a'"}}},
        "goals",
        "update",
        False,
        False,
        {"data": {"id": "g1", "title": "a"}, "new_data": {"id": "g1", "title": "forbidden"}},
    ),
    Case(
        "update-allowed-by-newData",
        {"goals": {"allow": {"update": "newData.title != 'forbidden' && data.title == 'a'"}}},
        "goals",
        "update",
        True,
        True,
        {"data": {"id": "g1", "title": "a"}, "new_data": {"id": "g1", "title": "ok"}},
    ),
    Case(
        "update-only-likes-modified",
        {"posts": {"allow": {"update": "request.modifiedFields.all(f, f in ['likes'])"}}},
        "posts",
        "update",
        True,
        True,
        {"data": {"id": "p1"}, "request": {"modifiedFields": ["likes"]}},
    ),
    Case(
        "update-touches-title-too",
        {"posts": {"allow": {"update": "request.modifiedFields.all(f, f in ['likes'])"}}},
        "posts",
        "update",
        False,
        False,
        {"data": {"id": "p1"}, "request": {"modifiedFields": ["likes", "title"]}},
    ),
    Case(
        "delete-by-owner",
        {"goals": {"allow": {"delete": "data.ownerId == auth.id"}}},
        "goals",
        "delete",
        True,
        True,
        {"auth": ALICE, "data": {"id": "g1", "ownerId": ALICE["id"]}},
    ),
    Case(
        "delete-of-missing-entity-still-evaluates",
        {"goals": {"allow": {"delete": "false"}}},
        "goals",
        "delete",
        False,
        False,
        {"data": {}},
    ),
    # -- link rules ----------------------------------------------------------------------------
    Case(
        "link-rule-sees-linkedData-and-actions",
        {
            "todos": {
                "allow": {
                    "link": {"goal": "linkedData.ownerId == auth.id && actions.data == 'update'"}
                }
            }
        },
        "todos",
        "link:goal",
        True,
        True,
        {
            "auth": ALICE,
            "data": {"id": "t1"},
            "linked_data": {"id": "g1", "ownerId": ALICE["id"]},
            "linked_etype": "goals",
            "actions": {"data": "update", "linkedData": "update"},
        },
    ),
    Case(
        "unlink-falls-back-to-label-default",
        {"todos": {"allow": {"unlink": {"$default": "linkedData.title == 'G1'"}}}},
        "todos",
        "unlink:goal",
        False,
        False,
        {"data": {"id": "t1"}, "linked_data": {"id": "g2", "title": "G2"}},
    ),
    Case(
        "linkedData-ref-walks-from-the-linked-entity",
        {"todos": {"allow": {"link": {"goal": "'Apollo' in linkedData.ref('project.name')"}}}},
        "todos",
        "link:goal",
        True,
        True,
        {"data": {"id": "t1"}, "linked_data": {"id": "g1"}, "linked_etype": "goals"},
    ),
    # -- field rules ---------------------------------------------------------------------------
    Case(
        "field-rule-hides-secret",
        {"goals": {"allow": {"view": "true"}, "fields": {"secret": "data.public == true"}}},
        "goals",
        "field:secret",
        False,
        False,
        {"data": {"id": "g2", "public": False, "secret": "s2"}},
    ),
    # -- bind ----------------------------------------------------------------------------------
    Case(
        "bind-list-form",
        {"goals": {"allow": {"view": "data.title != hidden"}, "bind": ["hidden", "'secret'"]}},
        "goals",
        "view",
        False,
        False,
        {"data": {"id": "g2", "title": "secret"}},
    ),
    Case(
        "bind-map-form-with-dependency",
        {
            "todos": {
                "allow": {"view": "canSee"},
                "bind": {"canSee": "isOwner || data.public", "isOwner": "auth.id == data.ownerId"},
            }
        },
        "todos",
        "view",
        True,
        True,
        {"auth": ALICE, "data": {"id": "t1", "ownerId": ALICE["id"], "public": False}},
    ),
    Case(
        "default-bind-and-etype-bind",
        {
            "$default": {"bind": ["isLoggedIn", "auth.id != null"]},
            "todos": {
                "allow": {"create": "isLoggedIn && isMine"},
                "bind": ["isMine", "newData.ownerId == auth.id"],
            },
        },
        "todos",
        "create",
        False,
        False,
        {"auth": None, "data": {"id": "t1", "ownerId": None}},
    ),
    # -- $default chain ------------------------------------------------------------------------
    Case(
        "etype-default-serves-update",
        {"goals": {"allow": {"view": "true", "$default": "false"}}},
        "goals",
        "update",
        False,
        False,
    ),
    Case(
        "default-action-for-other-etype",
        {"$default": {"allow": {"view": "false"}}, "goals": {"allow": {"view": "true"}}},
        "todos",
        "view",
        False,
        False,
    ),
    Case(
        "default-default-is-last-rule",
        {"$default": {"allow": {"$default": "auth.id != null"}}},
        "todos",
        "delete",
        True,
        True,
        {"auth": ALICE},
    ),
    Case(
        "default-overrides-users-fallback",
        {"$default": {"allow": {"view": "true"}}},
        "$users",
        "view",
        True,
        True,
        {"auth": None, "data": {"id": BOB_ID}},
    ),
    # -- system fallbacks ----------------------------------------------------------------------
    Case(
        "users-view-self",
        None,
        "$users",
        "view",
        True,
        True,
        {"auth": ALICE, "data": {"id": ALICE["id"], "email": ALICE["email"]}},
    ),
    Case(
        "users-view-other-denied",
        None,
        "$users",
        "view",
        False,
        False,
        {"auth": ALICE, "data": {"id": BOB_ID}},
    ),
    Case(
        "users-update-linked-guest",
        None,
        "$users",
        "update",
        True,
        True,
        {"auth": ALICE, "data": {**GUEST_OF_ALICE, "linkedPrimaryUser": ALICE["id"]}},
    ),
    Case("users-create-true", None, "$users", "create", True, True),
    Case("users-delete-false", None, "$users", "delete", False, False, {"auth": ALICE}),
    Case("files-view-false", None, "$files", "view", False, False, {"auth": ALICE}),
    Case("internal-namespace-false", None, "$magicCodes", "view", False, False),
    # -- ref() ---------------------------------------------------------------------------------
    Case(
        "data-ref-through-link",
        {"todos": {"allow": {"view": "'open' in data.ref('goal.status')"}}},
        "todos",
        "view",
        True,
        True,
        {"data": {"id": "t1"}},
    ),
    Case(
        "data-ref-returns-a-list",
        {"todos": {"allow": {"view": "data.ref('goal.status')"}}},
        "todos",
        "view",
        ["open", "done"],
        True,
        {"data": {"id": "t2"}},
    ),
    Case(
        "auth-ref-strips-user-prefix",
        _goal_rule("auth.ref('$user.profile.handle')"),
        "goals",
        "view",
        ["alice-profile"],
        True,
        {"auth": ALICE},
    ),
    Case(
        "guest-auth-ref-is-empty",
        _goal_rule("size(auth.ref('$user.profile.handle')) == 0"),
        "goals",
        "view",
        True,
        True,
        {"auth": None},
    ),
    # -- timestamps ----------------------------------------------------------------------------
    Case(
        "timestamp-of-iso-date",
        _goal_rule("timestamp(data.dueAt) > timestamp('2025-01-01')"),
        "goals",
        "view",
        True,
        True,
        {"data": {"id": "g1", "dueAt": "2025-06-01T10:00:00+02:00"}},
    ),
    Case(
        "timestamp-of-epoch-ms-and-getTime",
        _goal_rule("timestamp(data.dueAt).getTime()"),
        "goals",
        "view",
        1735787045123,
        True,
        {"data": {"id": "g1", "dueAt": 1735787045123}},
    ),
    Case(
        "request-time-is-a-timestamp",
        _goal_rule("request.time - timestamp(data.createdAt) < duration('1h')"),
        "goals",
        "view",
        True,
        True,
        {
            "data": {"id": "g1", "createdAt": "2025-01-02 03:04:05"},
            "request": {"time": dt.datetime(2025, 1, 2, 3, 30, tzinfo=dt.timezone.utc)},
        },
    ),
    # -- strings, math, macros, ternaries ------------------------------------------------------
    Case(
        "string-extension-functions",
        _goal_rule(
            "data.email.lowerAscii().endsWith('@example.com') && "
            "data.tags.join(',').split(',').size() == 2 && "
            "'  x '.trim() == 'x' && 'banana'.indexOf('an') == 1 && "
            "'banana'.replace('a', 'o', 2) == 'bonona' && 'abc'.substring(1, 2) == 'b' && "
            "'abc'.upperAscii() == 'ABC' && data.email.matches('^[A-Za-z]+@') && "
            "'abc'.charAt(2) == 'c' && 'abc'.contains('bc') && 'abc'.startsWith('ab')"
        ),
        "goals",
        "view",
        True,
        True,
        {"data": {"id": "g1", "email": "Alice@Example.com", "tags": ["a", "b"]}},
    ),
    Case(
        "math-extension-functions",
        _goal_rule("[math.greatest(data.a, data.b), math.least([3, 1, 2]), math.abs(-4)]"),
        "goals",
        "view",
        [7, 1, 4],
        True,
        {"data": {"id": "g1", "a": 7, "b": 5}},
    ),
    Case(
        "macros-on-lists",
        _goal_rule(
            "[data.tags.exists(t, t == 'b'), data.tags.exists_one(t, t.startsWith('a')), "
            "data.tags.filter(t, t != 'a'), data.tags.map(t, t + '!'), "
            "data.tags.all(t, size(t) == 1)]"
        ),
        "goals",
        "view",
        [True, True, ["b"], ["a!", "b!"], True],
        True,
        {"data": {"id": "g1", "tags": ["a", "b"]}},
    ),
    Case(
        "ternary-private-or-public",
        _goal_rule("data.privacy == 'private' ? auth.id == data.ownerId : true"),
        "goals",
        "view",
        False,
        False,
        {"auth": ALICE, "data": {"id": "g1", "privacy": "private", "ownerId": BOB_ID}},
    ),
    Case(
        "cel-bind-inline-and-in-map",
        _goal_rule("cel.bind(roles, {'admin': 3, 'member': 1}, roles[data.role] > 2)"),
        "goals",
        "view",
        True,
        True,
        {"data": {"id": "g1", "role": "admin"}},
    ),
    Case(
        "numbers-compare-across-int-and-double",
        _goal_rule("data.likes > 1.5 && data.score == 2"),
        "goals",
        "view",
        True,
        True,
        {"data": {"id": "g1", "likes": 2, "score": 2.0}},
    ),
    Case(
        "uuids-and-dates-reach-cel-as-strings",
        _goal_rule("data.ownerId == auth.id && data.seenAt == '2025-01-02T03:04:05Z'"),
        "goals",
        "view",
        True,
        True,
        {
            "auth": ALICE,
            "data": {
                "id": "g1",
                "ownerId": uuid.UUID(ALICE["id"]),
                "seenAt": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
            },
        },
    ),
]


def _program(rules: RuleSet, case: Case) -> Program:
    kind, _, label = case.action.partition(":")
    if kind in ("link", "unlink"):
        program = rules.link_program(case.etype, kind, label)
    elif kind == "field":
        program = rules.field_programs(case.etype)[label]
    else:
        program = rules.program(case.etype, kind)
    assert program is not None, f"no program for {case.etype}.{case.action}"
    return program


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rule_case(case: Case) -> None:
    rules = RuleSet.from_document(case.rules)
    program = _program(rules, case)
    context = RuleContext(case.etype, GRAPH.ref, show_error_details=True, **case.context)

    assert program.evaluate(context) == case.expected
    assert program.passes(context) is case.passes


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)


def test_ref_is_not_called_for_an_entity_without_id() -> None:
    graph = FakeGraph()
    rules = RuleSet.from_document({"todos": {"allow": {"view": "size(data.ref('goal.id')) == 0"}}})
    program = rules.program("todos", "view")
    assert program is not None

    assert program.passes(RuleContext("todos", graph.ref, data={"title": "no id"}))
    assert graph.calls == []


def test_ref_receives_etype_id_and_path() -> None:
    graph = FakeGraph(
        entities={"goals": {"g1": {"id": "g1", "status": "open"}}},
        links={("todos", "goal"): ("goals", {"t1": ["g1"]})},
    )
    program = RuleSet.from_document(
        {"todos": {"allow": {"view": "data.ref('goal.status') == ['open']"}}}
    ).program("todos", "view")
    assert program is not None

    assert program.passes(RuleContext("todos", graph.ref, data={"id": "t1"}))
    assert graph.calls == [("todos", "t1", "goal.status")]


def test_newData_defaults_to_data_for_creates() -> None:
    program = RuleSet.from_document(
        {"goals": {"allow": {"create": "newData.title == 'x'"}}}
    ).program("goals", "create")
    assert program is not None
    assert program.passes(RuleContext("goals", GRAPH.ref, data={"id": "g1", "title": "x"}))


def test_request_time_defaults_to_now() -> None:
    program = RuleSet.from_document(
        {"goals": {"allow": {"view": "request.time > timestamp('2024-01-01')"}}}
    ).program("goals", "view")
    assert program is not None
    assert program.evaluate(RuleContext("goals", GRAPH.ref)) is True


def test_request_ip_and_origin() -> None:
    program = RuleSet.from_document(
        {"goals": {"allow": {"view": "request.ip == '127.0.0.1' && request.origin == null"}}}
    ).program("goals", "view")
    assert program is not None
    assert program.passes(RuleContext("goals", GRAPH.ref, request={"ip": "127.0.0.1"}))
    assert not program.passes(RuleContext("goals", GRAPH.ref, request={"ip": "10.0.0.1"}))


def test_no_rule_means_allowed() -> None:
    rules = RuleSet.from_document({"goals": {"allow": {"view": "true"}}})
    assert rules.program("goals", "update") is None
    assert rules.program("todos", "view") is None
    assert rules.link_program("todos", "link", "goal") is None
    assert rules.field_programs("goals") == {}


def test_a_refresh_token_never_reaches_a_rule_or_a_repr() -> None:
    token = "6f1f6d1e-0000-4000-8000-000000000abc"
    user = {**ALICE, "refresh_token": token}
    program = RuleSet.from_document(
        {"goals": {"allow": {"view": "auth.refresh_token == null && auth.id != null"}}}
    ).program("goals", "view")
    assert program is not None
    context = RuleContext("goals", GRAPH.ref, auth=user, show_error_details=True)
    assert program.evaluate(context) is True
    assert token not in repr(context)
