"""The real server's perms vectors, checked at the level of rules alone.

The engine replays these vectors end to end; here we check what depends only on this
module: every rules document loads, debug routes describe programs as the server does,
and plain view rules on top-level queries keep exactly the rows the server keeps.
"""

from __future__ import annotations

from typing import Any

import pytest

from instantdb_local.errors import ServerError
from instantdb_local.perms import RuleContext, RuleSet
from tests.local.perms.fakes import never_called
from tests.local.vectors import Case, load_cases, mismatches

PERMS_CASES = [case for case in load_cases() if case.area == "perms"]
# Top-level queries whose outcome depends only on view and field rules over stored rows.
ROW_FILTER_CASES = [
    "perms-guest-view-filter",
    "perms-null-result-denies",
    "perms-user-view-with-auth-id",
    "perms-field-rules-drop-attributes",
    "perms-bind-list-form",
    "perms-query-ruleParams",
    "perms-$default-rules",
    "perms-$users-default-view-is-self",
    "perms-permission-evaluation-failed",
]


def test_there_are_perms_vectors() -> None:
    names = {case.name for case in PERMS_CASES}
    assert len(PERMS_CASES) >= 20
    assert set(ROW_FILTER_CASES) <= names


@pytest.mark.parametrize(
    "case", [c for c in PERMS_CASES if c.rules is not None], ids=lambda c: c.name
)
def test_every_rules_document_loads(case: Case) -> None:
    rules = RuleSet.from_document(case.rules)
    assert rules.document == case.rules


def _expected_programs(value: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(value, dict):
        program = value.get("program")
        if isinstance(program, dict) and program:
            found.append(program)
        for child in value.values():
            found.extend(_expected_programs(child))
    elif isinstance(value, list):
        for child in value:
            found.extend(_expected_programs(child))
    return found


@pytest.mark.parametrize(
    "case",
    [c for c in PERMS_CASES if _expected_programs(c.expect)],
    ids=lambda c: c.name,
)
def test_programs_are_described_as_the_debug_routes_show_them(case: Case) -> None:
    override = case.request["body"].get("rules-override")
    rules = RuleSet.from_document(override if override is not None else case.rules)
    for expected in _expected_programs(case.expect):
        program = rules.program(expected["etype"], expected["action"])
        assert program is not None
        assert program.describe() == expected


def _stored_entities(case: Case) -> dict[str, dict[str, dict[str, Any]]]:
    """The attributes the setup transactions store, by etype and id.

    Links are left out: the replayed cases query one namespace without its links.
    """
    stored: dict[str, dict[str, dict[str, Any]]] = {}
    for transaction in case.setup:
        for step in transaction:
            action, etype, entity_id, *rest = step
            assert action in ("update", "link"), f"{case.name}: unexpected setup step {action}"
            if action == "update":
                row = stored.setdefault(etype, {}).setdefault(entity_id, {"id": entity_id})
                row.update(rest[0])
    return stored


def _auth(case: Case, stored: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any] | None:
    actor = case.request["as"]
    if actor == {"guest": True}:
        return None
    for user in stored.get("$users", {}).values():
        if user.get("email") == actor["email"]:
            return user
    raise AssertionError(f"{case.name}: no user {actor}")


def _visible(case: Case) -> tuple[int, Any]:
    stored = _stored_entities(case)
    rules = RuleSet.from_document(case.rules)
    query = dict(case.request["body"]["query"])
    params = query.pop("$$ruleParams", {})
    auth = _auth(case, stored)
    body: dict[str, list[dict[str, Any]]] = {}
    try:
        for etype, subquery in query.items():
            assert subquery == {}, f"{case.name}: only flat queries are replayed here"
            rows = []
            for entity_id in sorted(stored.get(etype, {})):
                row = dict(stored[etype][entity_id])
                context = RuleContext(etype, never_called, data=row, auth=auth, rule_params=params)
                view = rules.program(etype, "view")
                if view is not None and not view.passes(context):
                    continue
                for label, field_program in rules.field_programs(etype).items():
                    if label in row and not field_program.passes(context):
                        del row[label]
                rows.append(row)
            body[etype] = rows
    except ServerError as error:
        return error.status, error.body()
    return 200, body


@pytest.mark.parametrize(
    "case", [c for c in PERMS_CASES if c.name in ROW_FILTER_CASES], ids=lambda c: c.name
)
def test_view_rules_keep_the_rows_the_server_keeps(case: Case) -> None:
    assert case.request["route"] == "/admin/query"
    status, body = _visible(case)
    assert mismatches(case.expect, status, body) == []
