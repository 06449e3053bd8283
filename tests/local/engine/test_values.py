"""JSON values -> typed keys, checked types, dates, LIKE patterns, merge."""

from __future__ import annotations

import math

import pytest

from instantdb_local import values
from instantdb_local.instaml import deep_merge


def test_numbers_compare_by_value_but_not_with_strings_or_booleans() -> None:
    assert values.key_of(1) == values.key_of(1.0)
    assert values.key_of(1) != values.key_of("1")
    assert values.key_of(True) != values.key_of(1)
    assert values.key_of(None) == (values.NULL, None)


def test_objects_compare_regardless_of_key_order() -> None:
    assert values.key_of({"a": 1, "b": [1, 2]}) == values.key_of({"b": [1, 2], "a": 1})
    assert values.key_of({"a": 1})[0] == values.JSON
    assert values.key_of('{"a":1}')[0] == values.STRING


def test_huge_integers_fall_back_to_floats() -> None:
    vtype, key = values.key_of(2**70)
    assert vtype == values.NUMBER
    assert isinstance(key, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", 1700000000000.0),
        ("2023-11-14T22:13:20.000Z", 1700000000000.0),
        ("2023-11-14T22:13:20", 1700000000000.0),  # no zone means UTC
        ("2023-11-14T23:13:20+01:00", 1700000000000.0),
        ("2023-11-14", 1699920000000.0),
        ("Tue, 14 Nov 2023 22:13:20 GMT", 1700000000000.0),
        (1700000000000, 1700000000000.0),
    ],
)
def test_date_formats_parse_to_the_same_instant(text: object, expected: float) -> None:
    assert values.parse_date_ms(text) == expected


@pytest.mark.parametrize("bad", ["tomorrow", "not a date", "", True, None, [1], math.inf])
def test_non_dates_are_rejected(bad: object) -> None:
    assert values.parse_date_ms(bad) is None


def test_date_words_only_when_allowed() -> None:
    assert values.parse_date_ms("epoch", allow_words=True) == 0.0
    today = values.parse_date_ms("today", allow_words=True)
    tomorrow = values.parse_date_ms("tomorrow", allow_words=True)
    assert today is not None
    assert tomorrow is not None
    assert tomorrow - today == 86_400_000


@pytest.mark.parametrize(
    ("checked", "good", "bad"),
    [
        ("string", "x", 1),
        ("number", 1.5, "1"),
        ("number", 2, True),
        ("boolean", False, 0),
        ("date", "2024-01-01", "soon"),
    ],
)
def test_checked_types(checked: str, good: object, bad: object) -> None:
    assert values.matches_checked_type(checked, good)
    assert values.matches_checked_type(checked, None)
    assert not values.matches_checked_type(checked, bad)


@pytest.mark.parametrize(
    ("pattern", "ci", "text", "matches"),
    [
        ("%run%", False, "Fun run", True),
        ("%run%", False, "Run", False),
        ("%run%", True, "RUN", True),
        ("r_n", False, "ran", True),
        ("r_n", False, "rain", False),
        ("100\\%", False, "100%", True),
        ("100\\%", False, "1000", False),
        ("a.b", False, "axb", False),  # regex characters are literal
        ("%", False, "line\nbreak", True),
    ],
)
def test_like_patterns(pattern: str, ci: bool, text: str, matches: bool) -> None:
    assert values.sql_like(text, pattern, int(ci)) == int(matches)


def test_like_never_matches_non_strings() -> None:
    assert values.sql_like(5, "%", 0) == 0


def test_nul_and_non_finite_detection() -> None:
    assert values.contains_nul({"a": ["x\x00"]})
    assert not values.contains_nul({"a": ["x"]})
    assert values.has_non_finite([1, {"x": math.nan}])


def test_sort_key_puts_null_first_then_by_type() -> None:
    items = ["b", None, 2, True, "a", 1.5]
    assert sorted(items, key=values.sort_key) == [None, True, 1.5, 2, "a", "b"]


@pytest.mark.parametrize(
    ("old", "patch", "merged"),
    [
        (
            {"a": 1, "b": {"c": 1, "d": 2}},
            {"b": {"c": 9, "d": None}, "e": 5},
            {"a": 1, "b": {"c": 9}, "e": 5},
        ),
        (None, {"a": 1, "b": None}, {"a": 1, "b": None}),
        ({"x": "s", "k": 1}, {"x": {"p": None, "q": 1}, "k": None}, {"x": {"p": None, "q": 1}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, None, None),
        ({"a": 1}, "123", "123"),
        ("scalar", {"a": 1}, {"a": 1}),
    ],
)
def test_deep_merge(old: object, patch: object, merged: object) -> None:
    assert deep_merge(old, patch) == merged
