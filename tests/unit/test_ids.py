"""id(), lookup() and the lookup string format."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb import InstantEncodeError, InstantTypeError, InstantValueError, id, lookup
from instantdb._ids import is_lookup, parse_lookup


def test_id_is_a_fresh_uuid4_string() -> None:
    first, second = id(), id()
    assert uuid.UUID(first).version == 4
    assert str(uuid.UUID(first)) == first
    assert first != second


def test_lookup_string_format() -> None:
    assert lookup("email", "alyssa@example.com") == 'lookup__email__"alyssa@example.com"'
    assert lookup("n", 3) == "lookup__n__3"
    assert lookup("flag", None) == "lookup__flag__null"


def test_lookup_values_are_compact_json_with_raw_utf8() -> None:
    # Like the JS SDK's JSON.stringify; the official Python SDK adds spaces and \\u escapes.
    assert lookup("meta", {"a": [1, 2], "b": "é"}) == 'lookup__meta__{"a":[1,2],"b":"é"}'


def test_lookup_values_follow_the_json_policy() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert lookup("at", when) == 'lookup__at__"2024-01-02T03:04:05+00:00"'
    assert lookup("ref", uuid.UUID(int=1)) == f'lookup__ref__"{uuid.UUID(int=1)}"'
    with pytest.raises(InstantEncodeError, match="lookup value"):
        lookup("blob", b"bytes")


def test_is_lookup() -> None:
    assert is_lookup(lookup("email", "x"))
    assert not is_lookup(id())
    assert not is_lookup(["email", "x"])
    assert not is_lookup(None)


def test_values_containing_the_separator_round_trip() -> None:
    assert parse_lookup(lookup("handle", "a__b__c")) == ("handle", "a__b__c")


@pytest.mark.parametrize(
    ("attribute", "error", "message"),
    [
        ("", InstantValueError, "must not be empty"),
        (3, InstantTypeError, "must be a str"),
        ("a__b", InstantValueError, r"containing '__'.*db\.tx\.<namespace>\.lookup"),
        ("a_", InstantValueError, r"ending in '_'"),
    ],
)
def test_lookup_rejects_attributes_it_cannot_encode(attribute, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        lookup(attribute, "v")


@pytest.mark.parametrize(
    "text", ["lookup__", "lookup__email", "lookup____1", "lookup__email__not json", "email__x"]
)
def test_parse_rejects_malformed_lookups(text: str) -> None:
    with pytest.raises(InstantValueError):
        parse_lookup(text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)
attributes = st.text(min_size=1).filter(lambda a: "__" not in a and not a.endswith("_"))


@given(attributes, json_values)
def test_lookup_strings_parse_back(attribute: str, value: object) -> None:
    text = lookup(attribute, value)
    assert is_lookup(text)
    parsed_attribute, parsed_value = parse_lookup(text)
    assert parsed_attribute == attribute
    assert json.dumps(parsed_value, sort_keys=True) == json.dumps(value, sort_keys=True)
