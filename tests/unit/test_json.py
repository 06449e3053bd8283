"""The JSON policy: what each Python type is sent as, and the errors for the rest."""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType

import pytest

from instantdb import InstantEncodeError, InstantError
from instantdb._json import dumps, to_json


class Color(enum.Enum):
    RED = "red"
    NESTED = (1, 2)


class Level(enum.IntEnum):
    HIGH = 3


class Label(str, enum.Enum):
    A = "a"


UTC_WHEN = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("text", "text"),
        (7, 7),
        (True, True),
        (None, None),
        (1.5, 1.5),
        (UTC_WHEN, "2024-01-02T03:04:05.123456+00:00"),
        (
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2024-01-02T03:04:05+02:00",
        ),
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (date(2024, 1, 2), "2024-01-02"),
        (uuid.UUID(int=5), "00000000-0000-0000-0000-000000000005"),
        (Decimal("10"), 10),
        (Decimal("1E+2"), 100),
        (Decimal("12345678901234567890"), 12345678901234567890),
        (Decimal("2.50"), 2.5),
        ((1, "a"), [1, "a"]),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ({uuid.UUID(int=2), uuid.UUID(int=1)}, [str(uuid.UUID(int=1)), str(uuid.UUID(int=2))]),
        (Color.RED, "red"),
        (Color.NESTED, [1, 2]),
        (Level.HIGH, 3),
        (Label.A, "a"),
        (OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
        (MappingProxyType({"k": date(2024, 1, 1)}), {"k": "2024-01-01"}),
        ({Label.A: 1}, {"a": 1}),
        ({"deep": [{"x": (Decimal("1.5"),)}]}, {"deep": [{"x": [1.5]}]}),
    ],
)
def test_values_are_sent_as_documented(value: object, sent: object) -> None:
    converted = to_json(value, name="args")
    assert converted == sent
    assert type(converted) is type(sent)


def test_subclasses_of_basic_types_become_the_basic_type() -> None:
    class Name(str):
        pass

    class Count(int):
        pass

    class Ratio(float):
        pass

    assert type(to_json(Name("x"), name="v")) is str
    assert type(to_json(Count(3), name="v")) is int
    assert type(to_json(Ratio(0.5), name="v")) is float


def test_numpy_scalars_use_item_without_numpy_being_needed() -> None:
    import numpy  # a dev dependency (through pandas); the SDK itself never imports it

    assert to_json(numpy.int64(4), name="v") == 4
    assert type(to_json(numpy.int64(4), name="v")) is int
    assert to_json(numpy.float32(0.5), name="v") == 0.5
    assert to_json(numpy.bool_(True), name="v") is True
    assert to_json({"n": numpy.float64(2.5)}, name="v") == {"n": 2.5}
    with pytest.raises(InstantEncodeError, match="not a finite number"):
        to_json(numpy.float64("nan"), name="v")
    with pytest.raises(InstantEncodeError, match=r"\.tolist\(\)"):
        to_json(numpy.array([1, 2]), name="v")


def test_pandas_missing_values_are_rejected() -> None:
    import pandas

    with pytest.raises(InstantEncodeError, match="NaT"):
        to_json({"at": pandas.NaT}, name="args")
    assert (
        to_json(pandas.Timestamp("2024-01-02T03:04:05Z"), name="v") == "2024-01-02T03:04:05+00:00"
    )


def test_containers_are_copied() -> None:
    inner = {"a": [1]}
    converted = to_json({"inner": inner}, name="v")
    converted["inner"]["a"].append(2)
    assert inner == {"a": [1]}


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({"meta": {"when": b"raw"}}, 'args["meta"]["when"]', "binary data.*upload_file"),
        ({"list": [1, bytearray(b"x")]}, 'args["list"][1]', "bytearray is binary"),
        ({"m": memoryview(b"x")}, 'args["m"]', "memoryview"),
        ({"score": float("nan")}, 'args["score"]', "not a finite number"),
        ({"score": float("-inf")}, 'args["score"]', "not a finite number"),
        ({"d": Decimal("NaN")}, 'args["d"]', "not a finite number"),
        ({"d": Decimal("Infinity")}, 'args["d"]', "not a finite number"),
        ({"t": time(12, 0)}, 'args["t"]', "time of day"),
        ({"c": 1j}, 'args["c"]', "complex"),
        ({"o": object()}, 'args["o"]', "object is not a JSON type"),
        ({1: "x"}, "args", "keys must be str"),
        ({"nested": {(1, 2): "x"}}, 'args["nested"]', "keys must be str"),
        ({"s": {1, "a"}}, 'args["s"]', "cannot be sorted"),
        ({"s": {b"x"}}, 'args["s"][<set element>]', "binary"),
        ({"e": Color}, 'args["e"]', "EnumType is not a JSON type|EnumMeta is not a JSON type"),
        ({'key with "quotes"': b""}, 'args["key with \\"quotes\\""]', "binary"),
    ],
)
def test_unsendable_values_name_their_path(value: object, path: str, reason: str) -> None:
    with pytest.raises(InstantEncodeError, match=reason) as caught:
        to_json(value, name="args")
    error = caught.value
    assert error.path == path
    assert str(error).startswith(f"cannot send {path} as JSON: ")
    # Both kinds of builtin error, so existing `except TypeError/ValueError` code catches it.
    assert isinstance(error, InstantError)
    assert isinstance(error, TypeError)
    assert isinstance(error, ValueError)


def test_enum_with_an_unsendable_value_says_so() -> None:
    class Raw(enum.Enum):
        DATA = b"x"

    with pytest.raises(InstantEncodeError, match=r"the value of <Raw.DATA.*binary"):
        to_json({"r": Raw.DATA}, name="args")


def test_self_referencing_payloads_fail_clearly() -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(InstantEncodeError, match="nested too deeply or contains itself"):
        to_json(loop, name="args")


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'.encode()
