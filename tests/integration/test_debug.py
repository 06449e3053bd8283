"""`debug_query` and `debug_transact` against a real server: what the checks report, the
``rules=`` override, ``rule_params=``, and that a debug transaction is a dry run."""

from __future__ import annotations

from typing import Any

import pytest

from instantdb import InstantError, InstantValidationError, id
from tests.integration.conftest import Clients, Driven, FaultProxy

VIEW_RULE = "data.public == true || ruleParams.key == data.key"
RULES = {
    "docs": {
        "allow": {"view": VIEW_RULE, "create": "auth.id != null", "update": "false"},
        "fields": {"secret": "auth.id != null"},
    }
}

pytestmark = pytest.mark.instant_app(rules=RULES)


@pytest.fixture
def docs(db: Driven) -> dict[str, str]:
    ids = {"open": id(), "closed": id()}
    db.transact(
        [
            db.tx.docs[ids["open"]].update({"public": True, "key": "a", "secret": "s1"}),
            db.tx.docs[ids["closed"]].update({"public": False, "key": "b", "secret": "s2"}),
        ]
    )
    return ids


def view_checks(report: dict[str, Any]) -> dict[str, Any]:
    """Entity id -> check value of the entity-level (not field) view checks."""
    return {c["id"]: c["check"] for c in report["check_results"] if c["label"] is None}


def test_debug_query_explains_each_view_check(db: Driven, docs: dict[str, str]) -> None:
    report = db.as_user(guest=True).debug_query({"docs": {}})
    assert set(report) == {"result", "check_results", "rule_wheres"}
    assert report["result"] == {"docs": [{"id": docs["open"], "public": True, "key": "a"}]}
    # Every matched entity is checked, including the one filtered out.
    assert view_checks(report) == {docs["open"]: True, docs["closed"]: False}
    entity_check = next(c for c in report["check_results"] if c["label"] is None)
    assert entity_check["entity"] == "docs"
    assert entity_check["program"]["code"] == VIEW_RULE
    assert entity_check["record"]["id"] == entity_check["id"]
    # Field rules are reported per entity and field; the guest may not see `secret`.
    field_checks = [c for c in report["check_results"] if c["label"] == "secret"]
    assert field_checks
    assert {c["check"] for c in field_checks} == {False}


def test_debug_query_rule_params_and_rules_override(db: Driven, docs: dict[str, str]) -> None:
    guest = db.as_user(guest=True)
    with_key = guest.debug_query({"docs": {}}, rule_params={"key": "b"})
    assert view_checks(with_key) == {docs["open"]: True, docs["closed"]: True}
    assert len(with_key["result"]["docs"]) == 2

    everything = {"docs": {"allow": {"view": "true"}}}
    overridden = guest.debug_query({"docs": {}}, rules=everything)
    assert view_checks(overridden) == {docs["open"]: True, docs["closed"]: True}
    assert {doc.get("secret") for doc in overridden["result"]["docs"]} == {"s1", "s2"}
    nothing = guest.debug_query({"docs": {}}, rules={"docs": {"allow": {"view": "false"}}})
    assert nothing["result"] == {"docs": []}
    # The override applied to those calls only: the app's rules are unchanged.
    assert [doc["id"] for doc in guest.query({"docs": {}})["docs"]] == [docs["open"]]


def test_debug_query_as_a_user(db: Driven, docs: dict[str, str]) -> None:
    db.auth.create_token(email="ann@example.com")
    report = db.as_user(email="ann@example.com").debug_query({"docs": {}})
    # A signed-in user passes the field rule: `secret` is in the result.
    assert [doc.get("secret") for doc in report["result"]["docs"]] == ["s1"]
    assert {c["check"] for c in report["check_results"] if c["label"] == "secret"} == {True}


def test_debug_transact_is_a_dry_run(db: Driven, docs: dict[str, str]) -> None:
    db.auth.create_token(email="ann@example.com")
    new_doc = id()
    create = db.tx.docs[new_doc].update({"public": True})

    refused = db.as_user(guest=True).debug_transact(create)
    assert set(refused) == {"tx_id", "all_checks_ok", "committed", "check_results"}
    assert (refused["all_checks_ok"], refused["committed"]) == (False, False)
    check = next(c for c in refused["check_results"] if c["eid"] == new_doc)
    assert (check["action"], check["etype"], check["check-pass?"]) == ("create", "docs", False)
    assert check["program"]["code"] == "auth.id != null"

    allowed = db.as_user(email="ann@example.com").debug_transact(create)
    assert (allowed["all_checks_ok"], allowed["committed"]) == (True, False)

    update = db.tx.docs[docs["open"]].update({"key": "z"})
    assert db.as_user(email="ann@example.com").debug_transact(update)["all_checks_ok"] is False
    # Nothing was written by any of them.
    stored = db.query({"docs": {}})["docs"]
    assert sorted(doc["key"] for doc in stored) == ["a", "b"]
    assert new_doc not in {doc["id"] for doc in stored}


def test_debug_transact_rules_override_and_rule_params(db: Driven) -> None:
    guest = db.as_user(guest=True)
    rules = {"docs": {"allow": {"create": "ruleParams.ok == true"}}}
    doc = id()
    without = guest.debug_transact(guest.tx.docs[doc].update({"n": 1}), rules=rules)
    assert without["all_checks_ok"] is False
    chunk = guest.tx.docs[doc].rule_params({"ok": True}).update({"n": 1})
    with_params = guest.debug_transact(chunk, rules=rules)
    assert with_params["all_checks_ok"] is True
    check = next(c for c in with_params["check_results"] if c["eid"] == doc)
    assert check["bindings"]["rule-params"] == {"ok": True}
    # The same through the keyword, as transact() takes it.
    keyword = guest.debug_transact(
        guest.tx.docs[doc].update({"n": 1}), rules=rules, rule_params={"ok": True}
    )
    assert keyword["all_checks_ok"] is True
    assert db.query({"docs": {}})["docs"] == []


def test_invalid_override_rules_are_refused_by_the_server(db: Driven) -> None:
    guest = db.as_user(guest=True)
    with pytest.raises(InstantValidationError) as caught:
        guest.debug_query({"docs": {}}, rules={"docs": {"allow": {"view": "data.("}}})
    assert (caught.value.status, caught.value.type) == (400, "validation-failed")
    with pytest.raises(InstantValidationError):
        guest.debug_transact(
            guest.tx.docs[id()].update({"n": 1}),
            rules={"docs": {"allow": {"view": "newData.x == 1"}}},
        )


def test_debug_helpers_need_an_as_user_client_before_any_request(
    clients: Clients, instant_app: Any, fault_proxy: FaultProxy
) -> None:
    admin = clients.make(instant_app, api_uri=fault_proxy.api_uri)
    with pytest.raises(InstantError, match="needs an as_user"):
        admin.debug_query({"docs": {}})
    with pytest.raises(InstantError, match="needs an as_user"):
        admin.debug_transact(admin.tx.docs[id()].update({"n": 1}))
    assert fault_proxy.requests == []
