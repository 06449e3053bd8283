"""Bad rules are refused when loaded, with the real server's error shape."""

from __future__ import annotations

from typing import Any

import pytest

from instantdb_local.errors import ServerError
from instantdb_local.perms import Program, RuleContext, RuleSet
from tests.local.perms.fakes import never_called


def _refused(doc: Any) -> ServerError:
    with pytest.raises(ServerError) as caught:
        RuleSet.from_document(doc)
    error = caught.value
    assert error.type == "validation-failed"
    assert error.status == 400
    assert error.hint is not None
    assert error.hint["data-type"] == "rule"
    assert error.hint["input"] == doc
    assert error.message.startswith("Validation failed for rule: ")
    return error


INVALID = [
    (
        "newData-in-view",
        {"goals": {"allow": {"view": "newData.title == 'x'"}}},
        "undeclared reference to 'newData' (in container '')",
        ["goals", "allow", "view"],
    ),
    (
        "newData-in-delete",
        {"goals": {"allow": {"delete": "newData.title == 'x'"}}},
        "undeclared reference to 'newData' (in container '')",
        ["goals", "allow", "delete"],
    ),
    (
        "linkedData-outside-link-rules",
        {"goals": {"allow": {"update": "linkedData.id == 'x'"}}},
        "undeclared reference to 'linkedData' (in container '')",
        ["goals", "allow", "update"],
    ),
    (
        "unknown-request-field",
        {"goals": {"allow": {"update": "request.body == 'x'"}}},
        "undefined field 'body'",
        ["goals", "allow", "update"],
    ),
    (
        "unknown-variable",
        {"goals": {"allow": {"view": "user.id == data.ownerId"}}},
        "undeclared reference to 'user' (in container '')",
        ["goals", "allow", "view"],
    ),
    (
        "unknown-function",
        {"goals": {"allow": {"view": "data.title.toLowerCase() == 'x'"}}},
        "undeclared reference to 'toLowerCase' (in container '')",
        ["goals", "allow", "view"],
    ),
    (
        "types-that-never-fit",
        {"goals": {"allow": {"view": "'a' + 1 == 'a1'"}}},
        "found no matching overload for '_+_' applied to '(string, int)'",
        ["goals", "allow", "view"],
    ),
    (
        "syntax-error-with-position",
        {"goals": {"allow": {"view": "data.title == 'x' &&"}}},
        "Syntax error: the rule ends too early at line 1, column 19",
        ["goals", "allow", "view"],
    ),
    (
        "syntax-error-unexpected-character",
        {"goals": {"allow": {"view": "data.title # 'x'"}}},
        "Syntax error: unexpected character '#' at line 1, column 12",
        ["goals", "allow", "view"],
    ),
    (
        "field-rule-error",
        {"goals": {"fields": {"secret": "data.secret.size( == 1"}}},
        "Syntax error: unexpected '==' at line 1, column 19",
        ["goals", "fields", "secret"],
    ),
    (
        "link-rule-error",
        {"todos": {"allow": {"link": {"goal": "linkedData.ownerId == me"}}}},
        "undeclared reference to 'me' (in container '')",
        ["todos", "allow", "link", "goal"],
    ),
    (
        "default-rule-must-fit-every-action",
        {"goals": {"allow": {"$default": "newData.ownerId == auth.id"}}},
        "undeclared reference to 'newData' (in container '')",
        ["goals", "allow", "$default"],
    ),
    (
        "users-delete-other-than-false",
        {"$users": {"allow": {"delete": "auth.id == data.id"}}},
        "The $users namespace doesn't support permissions for delete. "
        'Set `$users.allow.delete` to `"false"`.',
        ["$users", "allow", "delete"],
    ),
    (
        "internal-namespace",
        {"$magicCodes": {"allow": {"view": "true"}}},
        "The $magicCodes namespace is a reserved internal namespace that does not yet "
        "support rules.",
        ["$magicCodes"],
    ),
    (
        "field-rule-on-id",
        {"goals": {"fields": {"id": "false"}}},
        "You cannot set field rules for `id`. Use goals -> allow -> view instead",
        ["goals", "fields"],
    ),
    (
        "bind-odd-length",
        {"goals": {"bind": ["isOwner", "auth.id == data.ownerId", "orphan"]}},
        "bind should have an even number of elements",
        ["goals", "bind"],
    ),
    (
        "bind-duplicate-name",
        {"goals": {"bind": ["a", "true", "a", "false"]}},
        "bind should only contain a given variable name once",
        ["goals", "bind", "a"],
    ),
    (
        "bind-cycle",
        {"goals": {"bind": {"a": "b && true", "b": "c", "c": "a"}}},
        "bind has a cycle: a -> b -> c -> a",
        ["goals", "bind"],
    ),
    (
        "bind-name-not-an-identifier",
        {"goals": {"bind": ["is-owner", "true"]}},
        "bind names must be identifiers like isOwner, not 'is-owner'",
        ["goals", "bind", "is-owner"],
    ),
    (
        "bind-body-syntax-error",
        {"goals": {"bind": ["a", "data.x =="]}},
        "Syntax error: the rule ends too early at line 1, column 8",
        ["goals", "bind", "a"],
    ),
    (
        "rate-limits-are-refused-clearly",
        {"goals": {"allow": {"create": "rateLimit.signups.limit(request.ip)"}}},
        "rateLimit is not supported by the local Instant server; remove the "
        "rateLimit.<bucket>.limit(...) calls from your rules to run them locally",
        ["goals", "allow", "create"],
    ),
    (
        "typo-in-entry-key",
        {"goals": {"alow": {"view": "false"}}},
        "unknown key 'alow' in the rules for goals: expected allow, bind or fields",
        ["goals", "alow"],
    ),
    (
        "unknown-action",
        {"goals": {"allow": {"read": "false"}}},
        "unknown action 'read' in goals.allow: expected one of view, create, update, "
        "delete, $default, link, unlink",
        ["goals", "allow", "read"],
    ),
    (
        "rule-of-wrong-type",
        {"goals": {"allow": {"view": 1}}},
        "a rule must be a CEL string or a boolean",
        ["goals", "allow", "view"],
    ),
    (
        "entry-of-wrong-type",
        {"goals": "true"},
        "the rules for goals must be an object with allow, bind or fields",
        ["goals"],
    ),
]


@pytest.mark.parametrize(
    ("doc", "message", "path"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_rules_are_refused(doc: dict[str, Any], message: str, path: list[Any]) -> None:
    error = _refused(doc)
    assert error.hint is not None
    assert {"message": message, "in": path} in error.hint["errors"]
    assert f"{'.'.join(path)}: {message}" in error.message


def test_every_problem_is_reported_at_once() -> None:
    error = _refused(
        {
            "goals": {"allow": {"view": "nope", "create": "newData.x =="}},
            "todos": {"allow": {"update": "request.foo"}},
        }
    )
    assert error.hint is not None
    assert [e["in"] for e in error.hint["errors"]] == [
        ["goals", "allow", "view"],
        ["goals", "allow", "create"],
        ["todos", "allow", "update"],
    ]


def test_one_mistake_is_reported_once() -> None:
    # Nothing built on an undeclared name is reported again (no "undeclared 'b'" etc.).
    error = _refused({"goals": {"allow": {"view": "nope.a.b(1) + 2 == 'x'"}}})
    assert error.hint is not None
    assert error.hint["errors"] == [
        {
            "message": "undeclared reference to 'nope' (in container '')",
            "in": ["goals", "allow", "view"],
        }
    ]


def test_default_rules_are_checked_with_each_etypes_binds() -> None:
    # The real server compiles a $default rule with the binds of the etype it serves,
    # so a bind that only one etype defines cannot be used there.
    error = _refused(
        {"$default": {"allow": {"view": "isOwner"}}, "goals": {"bind": ["isOwner", "true"]}}
    )
    assert error.hint is not None
    assert error.hint["errors"] == [
        {
            "message": "undeclared reference to 'isOwner' (in container '')",
            "in": ["$default", "allow", "view"],
        }
    ]


def test_a_document_must_be_an_object_of_plain_json() -> None:
    with pytest.raises(ServerError, match="the rules must be an object keyed by namespace"):
        RuleSet.from_document(["goals"])  # type: ignore[arg-type]
    with pytest.raises(ServerError, match="plain JSON"):
        RuleSet.from_document({"goals": {"allow": {"view": object()}}})


def test_valid_documents_load() -> None:
    for doc in (
        {},
        {"$users": {"allow": {"view": "true", "update": "false", "delete": "false"}}},
        {"$users": {"allow": {"create": "auth.email.endsWith('@example.com')"}}},
        {"$files": {"allow": {"view": "true", "create": "data.path.startsWith(auth.id + '/')"}}},
        {"$streams": {"allow": {"create": "data.clientId != null"}}},
        {"attrs": {"allow": {"create": "false"}}},
        {"$rateLimits": {"signups": {"limits": [{"capacity": 5}]}}},
        {"goals": {"allow": {"view": None, "link": {"todos": True}}}},
        {"goals": {"bind": {}, "fields": {}, "allow": {}}},
    ):
        assert RuleSet.from_document(doc).document == doc


def test_documents_are_compiled_once() -> None:
    doc = {"goals": {"allow": {"view": "data.public == true"}}}
    assert RuleSet.from_document(doc) is RuleSet.from_document(dict(doc))
    assert RuleSet.from_document(None) is RuleSet.from_document(None)


def test_a_program_built_by_hand_is_compiled_and_checked() -> None:
    program = Program("goals", "view", "data.public == true")
    assert program.passes(RuleContext("goals", never_called, data={"public": True}))
    with pytest.raises(ServerError, match="undeclared reference to 'newData'"):
        Program("goals", "view", "newData.public == true")


# -- evaluation failures ---------------------------------------------------------------------


def _failing_view() -> Program:
    program = RuleSet.from_document(
        {"goals": {"allow": {"view": "auth.handle in data.nonexistent"}}}
    ).program("goals", "view")
    assert program is not None
    return program


def test_runtime_error_shows_cel_cause_for_admin_and_debug() -> None:
    context = RuleContext("goals", never_called, data={"id": "g1"}, show_error_details=True)
    with pytest.raises(ServerError) as caught:
        _failing_view().passes(context)
    error = caught.value
    cause = "no matching overload for '_in_' applied to '(null_type, null_type)'"
    assert error.type == "permission-evaluation-failed"
    assert error.status == 400
    assert error.message == (
        f"Could not evaluate permission rule for `goals.view`. {cause}. "
        "Debug this in the sandbox and then update your permission rules."
    )
    assert error.hint == {
        "rule": ["goals", "view"],
        "error": {"type": "NO_MATCHING_OVERLOAD", "message": error.message, "hint": cause},
    }


def test_runtime_error_hides_cause_for_impersonated_calls() -> None:
    context = RuleContext("goals", never_called, data={"id": "g1"})
    with pytest.raises(ServerError) as caught:
        _failing_view().evaluate(context)
    assert caught.value.message == (
        "Could not evaluate permission rule for `goals.view`. You may have a typo. "
        "Debug this in the sandbox and then update your permission rules."
    )
    assert caught.value.hint is not None
    assert caught.value.hint["error"]["hint"] == "You may have a typo"


@pytest.mark.parametrize(
    ("rule", "code", "cause"),
    [
        ("data.owner.name == 'x'", "NO_MATCHING_OVERLOAD", "cannot select field 'name' from null"),
        ("data.count / 0 == 1", "DIVIDE_BY_ZERO", "division by zero"),
        ("data.tags[5] == 'x'", "INDEX_OUT_OF_BOUNDS", "index out of bounds: 5"),
        ("timestamp(data.title) > request.time", "BAD_FORMAT", "Failed to parse timestamp: 'hi'"),
        ("data.title + 1 == 2", "NO_MATCHING_OVERLOAD", "applied to '(string, int)'"),
        ("data.count + 9223372036854775807 > 0", "NUMERIC_OVERFLOW", "integer overflow"),
        ("data.title.matches('(')", "BAD_FORMAT", "invalid regular expression"),
        ("newData.ref('x') == []", "NO_MATCHING_OVERLOAD", "only available on data, auth"),
    ],
)
def test_runtime_failures(rule: str, code: str, cause: str) -> None:
    program = RuleSet.from_document({"goals": {"allow": {"update": rule}}}).program(
        "goals", "update"
    )
    assert program is not None
    data = {"id": "g1", "title": "hi", "count": 3, "tags": ["a"]}
    context = RuleContext("goals", never_called, data=data, new_data={}, show_error_details=True)
    with pytest.raises(ServerError) as caught:
        program.evaluate(context)
    assert caught.value.hint is not None
    assert caught.value.hint["error"]["type"] == code
    assert cause in caught.value.message


def test_errors_absorbed_by_logical_operators_and_quantifiers() -> None:
    rules = RuleSet.from_document(
        {
            "goals": {
                "allow": {
                    "view": "data.owner.name == 'x' || data.public",
                    "update": "false && data.owner.name == 'x'",
                    "create": "[0, 1].exists(i, 1 / i == 1)",
                    "delete": "[0, 1].all(i, 1 / i == 5)",
                }
            }
        }
    )
    context = RuleContext("goals", never_called, data={"public": True})
    for action in ("view", "create"):
        program = rules.program("goals", action)
        assert program is not None
        assert program.evaluate(context) is True
    for action in ("update", "delete"):
        program = rules.program("goals", action)
        assert program is not None
        assert program.evaluate(context) is False


def test_resolver_errors_propagate_unchanged() -> None:
    class EngineFailure(Exception):
        pass

    def failing_ref(etype: str, entity_id: str | None, path: str) -> list[Any]:
        raise EngineFailure("link label goal does not exist")

    program = RuleSet.from_document(
        {"todos": {"allow": {"view": "data.ref('goal.id') == [] || true"}}}
    ).program("todos", "view")
    assert program is not None
    with pytest.raises(EngineFailure, match="link label goal does not exist"):
        program.evaluate(RuleContext("todos", failing_ref, data={"id": "t1"}))


# -- what debug routes show ------------------------------------------------------------------


def test_describe_shows_bind_expansion_as_code_and_rule_as_display_code() -> None:
    rules = RuleSet.from_document(
        {
            "$default": {"bind": ["loggedIn", "auth.id != null"]},
            "goals": {
                "allow": {"view": "loggedIn && isOwner"},
                "bind": ["isOwner", "auth.id == data.ownerId"],
            },
        }
    )
    program = rules.program("goals", "view")
    assert program is not None
    assert program.describe() == {
        "etype": "goals",
        "action": "view",
        "code": "cel.bind(isOwner, auth.id == data.ownerId, "
        "cel.bind(loggedIn, auth.id != null, loggedIn && isOwner))",
        "display-code": "loggedIn && isOwner",
    }
    assert program.display_code == "loggedIn && isOwner"


def test_describe_keeps_boolean_rules_boolean() -> None:
    program = RuleSet.from_document({"goals": {"allow": {"view": True}}}).program("goals", "view")
    assert program is not None
    assert program.describe() == {
        "etype": "goals",
        "action": "view",
        "code": "true",
        "display-code": True,
    }
    assert program.display_code == "true"


def test_describe_system_fallbacks() -> None:
    rules = RuleSet.from_document(None)
    internal = rules.program("$oauthClients", "update")
    files = rules.program("$files", "view")
    assert internal is not None
    assert files is not None
    assert internal.describe()["display-code"] == "disallow_update_on_system_tables"
    assert internal.code == "false"
    assert files.describe()["display-code"] == "false"


def test_dependent_binds_are_ordered_whatever_the_listing_order() -> None:
    rules = RuleSet.from_document(
        {
            "goals": {
                "allow": {"view": "canSee && isOwner"},
                "bind": [
                    "canSee",
                    "isOwner || isPublic",
                    "isOwner",
                    "auth.id == data.o",
                    "isPublic",
                    "data.p",
                ],
            }
        }
    )
    program = rules.program("goals", "view")
    assert program is not None
    # Dependencies are bound outside the binds that use them.
    assert program.code.index("cel.bind(isOwner") < program.code.index("cel.bind(canSee")
    assert program.code.index("cel.bind(isPublic") < program.code.index("cel.bind(canSee")
    assert program.passes(RuleContext("goals", never_called, auth={"id": "u"}, data={"o": "u"}))


def test_program_rejects_unknown_actions() -> None:
    rules = RuleSet.from_document({})
    with pytest.raises(ValueError, match="action must be one of"):
        rules.program("goals", "link")
    with pytest.raises(ValueError, match="link or unlink"):
        rules.link_program("goals", "view", "todos")


def test_a_cycle_in_default_binds_is_reported_on_default_and_where_used() -> None:
    error = _refused(
        {"$default": {"bind": ["a", "b", "b", "a"]}, "goals": {"allow": {"view": "a"}}}
    )
    assert error.hint is not None
    assert error.hint["errors"] == [
        {"message": "bind has a cycle: a -> b -> a", "in": ["$default", "bind"]},
        {"message": "bind has a cycle: a -> b -> a", "in": ["goals", "allow", "view"]},
    ]


def test_a_cycle_across_default_and_etype_binds() -> None:
    error = _refused({"$default": {"bind": ["a", "b"]}, "goals": {"bind": ["b", "a"]}})
    assert error.hint is not None
    assert error.hint["errors"] == [
        {"message": "bind has a cycle: a -> b -> a", "in": ["goals", "bind"]}
    ]


def test_a_program_for_an_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="action must be one of view, delete, create, update"):
        Program("goals", "read", "true")
