"""CEL values as plain Python, plus the few types Python lacks.

CEL value      Python
-------------  ------------------------------------------------------------
null           None
bool           bool
int            int (int64 range checked on arithmetic)
uint           `UInt` (an int subclass)
double         float
string         str
bytes          bytes
list           list (anything that is a list or tuple)
map            a `Mapping`; `StrictMap` for map literals written in the rule
timestamp      `Timestamp` (nanoseconds since the epoch, UTC)
duration       `Duration` (nanoseconds)
type           `CelType`

Maps handed in by the host (``data``, ``auth``...) are *lenient*: a missing key reads
as null, as in Instant. Map literals written in a rule keep CEL's strict lookups.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from instantdb_local._cel._errors import CelEvaluationError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

_NANOS = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MIN_TIMESTAMP_NANOS = -62135596800 * _NANOS  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_NANOS = 253402300800 * _NANOS - 1  # 9999-12-31T23:59:59.999999999Z
_MAX_DURATION_NANOS = 315576000000 * _NANOS


class UInt(int):
    """A CEL ``uint``; kept distinct from ``int`` because CEL never mixes them."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


class StrictMap(dict[Any, Any]):
    """A map literal from the rule text: CEL's strict key lookups apply."""

    __slots__ = ()


@dataclass(frozen=True, order=True)
class Timestamp:
    nanos: int

    @classmethod
    def checked(cls, nanos: int) -> Timestamp:
        if not _MIN_TIMESTAMP_NANOS <= nanos <= _MAX_TIMESTAMP_NANOS:
            raise CelEvaluationError("timestamp out of range", "NUMERIC_OVERFLOW")
        return cls(nanos)

    @classmethod
    def from_datetime(cls, value: dt.datetime) -> Timestamp:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - _EPOCH
        nanos = (delta.days * 86400 + delta.seconds) * _NANOS + delta.microseconds * 1000
        return cls.checked(nanos)

    @classmethod
    def from_millis(cls, millis: int | float) -> Timestamp:
        return cls.checked(int(millis * 1_000_000))

    def to_datetime(self, tz: dt.tzinfo = dt.timezone.utc) -> dt.datetime:
        seconds, nanos = divmod(self.nanos, _NANOS)
        moment = _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
        return moment.astimezone(tz)

    @property
    def millis(self) -> int:
        return self.nanos // 1_000_000

    def isoformat(self) -> str:
        """RFC 3339 in UTC, with as many fractional digits as needed (none if whole)."""
        seconds, nanos = divmod(self.nanos, _NANOS)
        moment = _EPOCH + dt.timedelta(seconds=seconds)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if nanos:
            text += "." + f"{nanos:09d}".rstrip("0")
        return text + "Z"


@dataclass(frozen=True, order=True)
class Duration:
    nanos: int

    @classmethod
    def checked(cls, nanos: int) -> Duration:
        if not -_MAX_DURATION_NANOS <= nanos <= _MAX_DURATION_NANOS:
            raise CelEvaluationError("duration out of range", "NUMERIC_OVERFLOW")
        return cls(nanos)

    def text(self) -> str:
        """CEL's string form: seconds with a trailing ``s`` (``"1.5s"``)."""
        sign = "-" if self.nanos < 0 else ""
        seconds, nanos = divmod(abs(self.nanos), _NANOS)
        fraction = ("." + f"{nanos:09d}".rstrip("0")) if nanos else ""
        return f"{sign}{seconds}{fraction}s"


@dataclass(frozen=True)
class CelType:
    name: str

    def __str__(self) -> str:
        return self.name


TYPE_NAMES = (
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
)
TYPES = {name: CelType(name) for name in TYPE_NAMES}

_TYPE_NAME_BY_CLASS: dict[type, str] = {
    type(None): "null_type",
    bool: "bool",
    int: "int",
    UInt: "uint",
    float: "double",
    str: "string",
    bytes: "bytes",
    list: "list",
    tuple: "list",
    dict: "map",
    StrictMap: "map",
    Timestamp: "google.protobuf.Timestamp",
    Duration: "google.protobuf.Duration",
    CelType: "type",
}


def type_name(value: object) -> str:
    name = _TYPE_NAME_BY_CLASS.get(type(value))
    if name is not None:
        return name
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


# Types that need no conversion when read out of host data.
_NATIVE = frozenset(
    {type(None), bool, int, float, str, list, dict, UInt, StrictMap, Timestamp, Duration, bytes}
)


def from_host(value: Any) -> Any:
    """Bring a value read from host data into CEL's vocabulary.

    The engine hands over JSON, which needs nothing; anything else (a UUID, a datetime,
    a tuple) is converted the way the real server shows it to rules: UUIDs and dates
    as strings.
    """
    kind = type(value)
    if kind in _NATIVE:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return value
    return value


def to_plain(value: Any) -> Any:
    """A CEL result as JSON-ready Python (timestamps become RFC 3339 strings)."""
    kind = type(value)
    if kind in (type(None), bool, str, float):
        return value
    if kind is int or kind is UInt:
        return int(value)
    if kind is Timestamp:
        return value.isoformat()
    if kind is Duration:
        return value.text()
    if kind is CelType:
        return value.name
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(to_plain(k)): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return from_host(value)


# -- equality and ordering ------------------------------------------------------------------

_NUMBERS = (int, UInt, float)


def _is_number(value: object) -> bool:
    kind = type(value)
    return kind is int or kind is float or kind is UInt


def equals(left: Any, right: Any) -> bool:
    """CEL equality: values of different types are unequal (numbers compare by value)."""
    left_kind, right_kind = type(left), type(right)
    if left_kind is right_kind and left_kind in (str, int, bool, type(None)):
        return bool(left == right)
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if left is None or right is None:
        return left is right
    if isinstance(left, (list, tuple)):
        if not isinstance(right, (list, tuple)) or len(left) != len(right):
            return False
        return all(equals(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping):
        if not isinstance(right, Mapping) or len(left) != len(right):
            return False
        for key, value in left.items():
            match = _find_key(right, key)
            if match is _MISSING or not equals(from_host(value), from_host(match)):
                return False
        return True
    if type_name(left) != type_name(right):
        return False
    return bool(from_host(left) == from_host(right))


_MISSING = object()


def _find_key(mapping: Mapping[Any, Any], key: Any) -> Any:
    if key in mapping:
        return mapping[key]
    if _is_number(key):
        for candidate, value in mapping.items():
            if _is_number(candidate) and candidate == key:
                return value
    return _MISSING


def compare(function: str, left: Any, right: Any) -> int:
    """-1, 0 or 1, or a no-overload error for values CEL cannot order."""
    from instantdb_local._cel._errors import no_overload

    if _is_number(left) and _is_number(right):
        if isinstance(left, float) and math.isnan(left):
            raise CelEvaluationError("NaN cannot be ordered", "INVALID_ARGUMENT")
        if isinstance(right, float) and math.isnan(right):
            raise CelEvaluationError("NaN cannot be ordered", "INVALID_ARGUMENT")
    elif type(left) is not type(right) or type(left) not in (
        str,
        bytes,
        bool,
        Timestamp,
        Duration,
    ):
        raise no_overload(function, left, right)
    return (left > right) - (left < right)  # type: ignore[no-any-return]


def is_map(value: object) -> bool:
    return type(value) is dict or type(value) is StrictMap or isinstance(value, Mapping)


def is_list(value: object) -> bool:
    return type(value) is list or isinstance(value, tuple)
