"""The vector matcher itself: a replay is only as good as its comparisons."""

from __future__ import annotations

from tests.local.vectors import load_cases, mismatches


def test_all_117_cases_load_with_unique_names() -> None:
    cases = load_cases()
    assert len(cases) == 117
    assert len({c.name for c in cases}) == 117
    assert {c.area for c in cases} == {"query", "transact", "perms", "errors", "auth"}


def test_exact_body_checks_keys_values_and_array_order() -> None:
    expect = {"status": 200, "body": {"goals": [{"id": "a"}, {"id": "b"}]}}
    assert mismatches(expect, 200, {"goals": [{"id": "a"}, {"id": "b"}]}) == []
    assert mismatches(expect, 200, {"goals": [{"id": "b"}, {"id": "a"}]})
    assert mismatches(expect, 200, {"goals": [{"id": "a"}, {"id": "b", "x": 1}]})
    assert mismatches(expect, 400, {"goals": []})


def test_exact_body_treats_int_and_float_alike_but_not_bool() -> None:
    assert mismatches({"status": 200, "body": {"n": 1}}, 200, {"n": 1.0}) == []
    assert mismatches({"status": 200, "body": {"n": 1}}, 200, {"n": True})


def test_body_match_placeholders_and_unordered_arrays() -> None:
    expect = {
        "status": 200,
        "body_match": {"rows": [{"id": "<uuid>", "n": "<int>"}, {"id": "x", "v": "<any>"}]},
        "order_matters": False,
    }
    good = {
        "rows": [{"id": "x", "v": None}, {"id": "00000000-0000-4000-8000-000000000001", "n": 3}]
    }
    assert mismatches(expect, 200, good) == []
    bad = {"rows": [{"id": "x", "v": 1}, {"id": "not-a-uuid", "n": 3}]}
    assert mismatches(expect, 200, bad)


def test_error_expectation_checks_type_message_and_hint_subset() -> None:
    expect = {
        "status": 400,
        "type": "validation-failed",
        "message_contains": "Validation failed",
        "hint_match": {"data-type": "steps", "errors": [{"in": [0, 2]}]},
    }
    body = {
        "type": "validation-failed",
        "message": "Validation failed for steps",
        "hint": {"data-type": "steps", "input": [], "errors": [{"in": [0, 2], "expected": "x"}]},
    }
    assert mismatches(expect, 400, body) == []
    assert mismatches(expect, 400, {**body, "type": "param-missing"})
    assert mismatches(expect, 400, {**body, "hint": {"data-type": "steps", "errors": []}})
