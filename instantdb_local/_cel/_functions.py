"""CEL's functions: the standard library, the string and math extensions, and
Instant's additions (``timestamp()`` on any Instant date or epoch ms, ``getTime()``).

Each `Function` carries its implementation and its overload signatures. The checker
uses the signatures to reject calls that can never succeed (``'a'.startsWith(1)``);
the implementations check their arguments again at run time, since most values in a
rule (``data.x``) are only known then.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from instantdb_local._cel._dates import parse_date
from instantdb_local._cel._errors import CelEvaluationError, no_overload
from instantdb_local._cel._values import (
    INT64_MAX,
    INT64_MIN,
    TYPES,
    UINT64_MAX,
    CelType,
    Duration,
    Timestamp,
    UInt,
    from_host,
    is_list,
    is_map,
    type_name,
)

# A signature is (parameter types, result type); for methods the target comes first.
# Type names are the checker's: int uint double string bytes bool null list map
# timestamp duration type dyn ("dyn" matches anything).
Signature = tuple[tuple[str, ...], str]


@dataclass(frozen=True)
class Function:
    name: str
    impl: Callable[..., Any]
    signatures: tuple[Signature, ...]
    variadic: bool = False  # math.greatest / math.least take any number of numbers


def _sig(*entries: str) -> tuple[Signature, ...]:
    """``"int,int->int"`` shorthand for signatures."""
    out: list[Signature] = []
    for entry in entries:
        params, result = entry.split("->")
        out.append((tuple(p for p in params.split(",") if p), result))
    return tuple(out)


# -- helpers ----------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_str(value: object) -> bool:
    return type(value) is str


def _check_int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise CelEvaluationError("integer overflow", "NUMERIC_OVERFLOW")
    return value


def _arity(name: str, args: tuple[Any, ...], *counts: int) -> None:
    if len(args) not in counts:
        raise no_overload(name, *args)


def _strings(name: str, *values: Any) -> None:
    if not all(type(v) is str for v in values):
        raise no_overload(name, *values)


# -- size and strings -------------------------------------------------------------------------


def size(value: Any) -> int:
    if type(value) is str or type(value) is bytes or is_list(value) or is_map(value):
        return len(value)
    raise no_overload("size", value)


def contains(text: Any, part: Any) -> bool:
    _strings("contains", text, part)
    return part in text


def starts_with(text: Any, prefix: Any) -> bool:
    _strings("startsWith", text, prefix)
    return text.startswith(prefix)  # type: ignore[no-any-return]


def ends_with(text: Any, suffix: Any) -> bool:
    _strings("endsWith", text, suffix)
    return text.endswith(suffix)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise CelEvaluationError(
            f"invalid regular expression {pattern!r}: {exc}", "BAD_FORMAT"
        ) from None


def matches(text: Any, pattern: Any) -> bool:
    _strings("matches", text, pattern)
    # CEL's matches() is RE2's partial match: the pattern may match anywhere.
    return _regex(pattern).search(text) is not None


def char_at(text: Any, index: Any) -> str:
    if type(text) is not str or not _is_int(index):
        raise no_overload("charAt", text, index)
    if not 0 <= index <= len(text):
        raise CelEvaluationError(f"index out of range: {index}", "INDEX_OUT_OF_BOUNDS")
    return text[index : index + 1]


def index_of(text: Any, part: Any, *start: Any) -> int:
    _arity("indexOf", start, 0, 1)
    _strings("indexOf", text, part)
    offset = start[0] if start else 0
    if not _is_int(offset):
        raise no_overload("indexOf", text, part, offset)
    if not 0 <= offset <= len(text):
        raise CelEvaluationError(f"index out of range: {offset}", "INDEX_OUT_OF_BOUNDS")
    return text.find(part, offset)  # type: ignore[no-any-return]


def last_index_of(text: Any, part: Any, *end: Any) -> int:
    _arity("lastIndexOf", end, 0, 1)
    _strings("lastIndexOf", text, part)
    last = end[0] if end else len(text)
    if not _is_int(last):
        raise no_overload("lastIndexOf", text, part, last)
    if not 0 <= last <= len(text):
        raise CelEvaluationError(f"index out of range: {last}", "INDEX_OUT_OF_BOUNDS")
    return text.rfind(part, 0, last + len(part))  # type: ignore[no-any-return]


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def lower_ascii(text: Any) -> str:
    _strings("lowerAscii", text)
    return text.translate(_ASCII_LOWER)  # type: ignore[no-any-return]


def upper_ascii(text: Any) -> str:
    _strings("upperAscii", text)
    return text.translate(_ASCII_UPPER)  # type: ignore[no-any-return]


def replace(text: Any, old: Any, new: Any, *limit: Any) -> str:
    _arity("replace", limit, 0, 1)
    _strings("replace", text, old, new)
    count = limit[0] if limit else -1
    if not _is_int(count):
        raise no_overload("replace", text, old, new, count)
    return text.replace(old, new, count if count >= 0 else -1)  # type: ignore[no-any-return]


def split(text: Any, separator: Any, *limit: Any) -> list[str]:
    _arity("split", limit, 0, 1)
    _strings("split", text, separator)
    count = limit[0] if limit else -1
    if not _is_int(count):
        raise no_overload("split", text, separator, count)
    if count == 0:
        return []
    if separator == "":
        chars = list(text)
        if 0 < count < len(chars):
            return [*chars[: count - 1], "".join(chars[count - 1 :])]
        return chars
    return text.split(separator, count - 1 if count > 0 else -1)  # type: ignore[no-any-return]


def substring(text: Any, start: Any, *end: Any) -> str:
    _arity("substring", end, 0, 1)
    stop = end[0] if end else (len(text) if type(text) is str else 0)
    if type(text) is not str or not _is_int(start) or not _is_int(stop):
        raise no_overload("substring", text, start, *end)
    if not 0 <= start <= stop <= len(text):
        raise CelEvaluationError(
            f"substring out of range: [{start}:{stop}] of a string of length {len(text)}",
            "INDEX_OUT_OF_BOUNDS",
        )
    return text[start:stop]


def trim(text: Any) -> str:
    _strings("trim", text)
    return text.strip()  # type: ignore[no-any-return]


def reverse(text: Any) -> str:
    _strings("reverse", text)
    return text[::-1]  # type: ignore[no-any-return]


def join(items: Any, *separator: Any) -> str:
    _arity("join", separator, 0, 1)
    sep = separator[0] if separator else ""
    if not is_list(items) or type(sep) is not str:
        raise no_overload("join", items, *separator)
    parts = [from_host(item) for item in items]
    if not all(type(p) is str for p in parts):
        raise CelEvaluationError("join() needs a list of strings", "NO_MATCHING_OVERLOAD")
    return sep.join(parts)


def quote(text: Any) -> str:
    _strings("strings.quote", text)
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\r":
            escaped.append("\\r")
        elif char == "\t":
            escaped.append("\\t")
        elif ord(char) < 0x20:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


# -- math -----------------------------------------------------------------------------------


def _number(name: str, value: Any) -> None:
    kind = type(value)
    if kind is not int and kind is not float and kind is not UInt:
        raise no_overload(name, value)


def _extreme(name: str, pick: Callable[[Any, Any], bool], args: tuple[Any, ...]) -> Any:
    values: Any = args
    if len(args) == 1 and is_list(args[0]):
        values = [from_host(v) for v in args[0]]
    if not values:
        raise CelEvaluationError(f"{name}() needs at least one number", "INVALID_ARGUMENT")
    best = values[0]
    _number(name, best)
    for value in values[1:]:
        _number(name, value)
        if pick(value, best):
            best = value
    return best


def greatest(*args: Any) -> Any:
    return _extreme("math.greatest", lambda a, b: a > b, args)


def least(*args: Any) -> Any:
    return _extreme("math.least", lambda a, b: a < b, args)


def absolute(value: Any) -> Any:
    _number("math.abs", value)
    if type(value) is int:
        return _check_int64(abs(value))
    return type(value)(abs(value))


def sign(value: Any) -> Any:
    _number("math.sign", value)
    if type(value) is float:
        return value if math.isnan(value) else float((value > 0) - (value < 0))
    return type(value)((value > 0) - (value < 0))


def _double_fn(name: str, fn: Callable[[float], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if type(value) is not float:
            raise no_overload(name, value)
        return fn(value)

    return apply


def _round_half_away(value: float) -> float:
    if math.isnan(value) or math.isinf(value):
        return value
    return float(math.floor(value + 0.5)) if value >= 0 else -float(math.floor(-value + 0.5))


def _sqrt(value: Any) -> float:
    _number("math.sqrt", value)
    return math.sqrt(value) if value >= 0 else math.nan


# -- conversions -------------------------------------------------------------------------------


def to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is UInt:
        return _check_int64(int(value))
    if kind is float:
        if math.isnan(value) or not -(2.0**63) <= value < 2.0**63:
            raise CelEvaluationError("double out of int range", "NUMERIC_OVERFLOW")
        return int(value)
    if kind is str:
        try:
            return _check_int64(int(value, 10))
        except ValueError:
            raise CelEvaluationError(f"cannot convert {value!r} to int", "BAD_FORMAT") from None
    if kind is Timestamp:
        return value.nanos // 1_000_000_000  # type: ignore[no-any-return]
    raise no_overload("int", value)


def to_uint(value: Any) -> UInt:
    kind = type(value)
    if kind is UInt:
        return value  # type: ignore[no-any-return]
    if kind is int:
        if value < 0:
            raise CelEvaluationError("int out of uint range", "NUMERIC_OVERFLOW")
        return UInt(value)
    if kind is float:
        if math.isnan(value) or not 0 <= value < 2.0**64:
            raise CelEvaluationError("double out of uint range", "NUMERIC_OVERFLOW")
        return UInt(int(value))
    if kind is str:
        try:
            parsed = int(value, 10)
        except ValueError:
            raise CelEvaluationError(f"cannot convert {value!r} to uint", "BAD_FORMAT") from None
        if not 0 <= parsed <= UINT64_MAX:
            raise CelEvaluationError("uint out of range", "NUMERIC_OVERFLOW")
        return UInt(parsed)
    raise no_overload("uint", value)


def to_double(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is UInt:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            raise CelEvaluationError(f"cannot convert {value!r} to double", "BAD_FORMAT") from None
    raise no_overload("double", value)


def format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def to_string(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is UInt:
        return str(int(value))
    if kind is float:
        return format_double(value)
    if kind is bytes:
        try:
            return value.decode("utf-8")  # type: ignore[no-any-return]
        except UnicodeDecodeError:
            raise CelEvaluationError("bytes are not valid UTF-8", "BAD_FORMAT") from None
    if kind is Timestamp:
        return value.isoformat()  # type: ignore[no-any-return]
    if kind is Duration:
        return value.text()  # type: ignore[no-any-return]
    if kind is CelType:
        return value.name  # type: ignore[no-any-return]
    raise no_overload("string", value)


_TRUE_STRINGS = frozenset({"true", "TRUE", "True", "t", "1"})
_FALSE_STRINGS = frozenset({"false", "FALSE", "False", "f", "0"})


def to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str:
        if value in _TRUE_STRINGS:
            return True
        if value in _FALSE_STRINGS:
            return False
        raise CelEvaluationError(f"cannot convert {value!r} to bool", "BAD_FORMAT")
    raise no_overload("bool", value)


def to_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8")
    raise no_overload("bytes", value)


def to_timestamp(value: Any) -> Timestamp:
    """Instant's ``timestamp()``: any date string it parses, or epoch milliseconds."""
    kind = type(value)
    if kind is Timestamp:
        return value  # type: ignore[no-any-return]
    if kind is str:
        parsed = parse_date(value)
        if parsed is None:
            raise CelEvaluationError(f"Failed to parse timestamp: {value!r}", "BAD_FORMAT")
        return parsed
    if kind is int or kind is float:
        if kind is float and (math.isnan(value) or math.isinf(value)):
            raise CelEvaluationError("timestamp out of range", "NUMERIC_OVERFLOW")
        return Timestamp.from_millis(value)
    raise no_overload("timestamp", value)


_DURATION_UNITS = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,
    "ns": 1,
}


def parse_duration(text: str) -> Duration:
    """Go-style durations as CEL writes them: ``1h30m``, ``-1.5s``, ``250ms``."""
    rest = text
    negative = rest.startswith("-")
    if rest[:1] in "+-":
        rest = rest[1:]
    if rest == "0":
        return Duration(0)
    total = 0
    if not rest:
        raise CelEvaluationError(f"invalid duration: {text!r}", "BAD_FORMAT")
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, rest = rest[:i], rest[i:]
        j = 0
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        unit, rest = rest[:j], rest[j:]
        if not number or number == "." or number.count(".") > 1 or unit not in _DURATION_UNITS:
            raise CelEvaluationError(f"invalid duration: {text!r}", "BAD_FORMAT")
        whole, _, fraction = number.partition(".")
        scale = _DURATION_UNITS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
    return Duration.checked(-total if negative else total)


def to_duration(value: Any) -> Duration:
    if type(value) is Duration:
        return value
    if type(value) is str:
        return parse_duration(value)
    raise no_overload("duration", value)


def cel_type(value: Any) -> CelType:
    return TYPES.get(type_name(value)) or CelType(type_name(value))


# -- timestamp and duration accessors ----------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _timezone(name: str) -> dt.tzinfo:
    if name[:1] in "+-" and len(name) in (5, 6):
        sign = -1 if name[0] == "-" else 1
        digits = name[1:].replace(":", "")
        if len(digits) == 4 and digits.isdigit():
            offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            return dt.timezone(sign * offset)
    if name.upper() == "UTC":
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CelEvaluationError(f"unknown time zone: {name!r}", "BAD_FORMAT") from None


def _moment(name: str, value: Any, zone: tuple[Any, ...]) -> dt.datetime:
    _arity(name, zone, 0, 1)
    if type(value) is not Timestamp or (zone and type(zone[0]) is not str):
        raise no_overload(name, value, *zone)
    return value.to_datetime(_timezone(zone[0]) if zone else dt.timezone.utc)


def _timestamp_part(name: str, part: Callable[[dt.datetime], int]) -> Callable[..., int]:
    def apply(value: Any, *zone: Any) -> int:
        return part(_moment(name, value, zone))

    return apply


def _time_part(
    name: str, part: Callable[[dt.datetime], int], duration_unit: int
) -> Callable[..., int]:
    """Accessors shared by timestamps (a field of the time) and durations (a total)."""

    def apply(value: Any, *zone: Any) -> int:
        if type(value) is Duration and not zone:
            whole = abs(value.nanos) // duration_unit
            return whole if value.nanos >= 0 else -whole
        return part(_moment(name, value, zone))

    return apply


def get_time(value: Any) -> int:
    """Instant's ``getTime()``: epoch milliseconds, like JavaScript's Date."""
    if type(value) is not Timestamp:
        raise no_overload("getTime", value)
    return value.millis


def _milliseconds(value: Any, *zone: Any) -> int:
    if type(value) is Duration and not zone:
        whole = abs(value.nanos) // 1_000_000
        return whole if value.nanos >= 0 else -whole
    _moment("getMilliseconds", value, zone)
    return (value.nanos // 1_000_000) % 1000  # type: ignore[no-any-return]


# -- registries --------------------------------------------------------------------------------

_TS = ("timestamp->int", "timestamp,string->int")

GLOBAL_FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("size", size, _sig("string->int", "bytes->int", "list->int", "map->int")),
        Function("matches", matches, _sig("string,string->bool")),
        Function(
            "int",
            to_int,
            _sig("int->int", "uint->int", "double->int", "string->int", "timestamp->int"),
        ),
        Function("uint", to_uint, _sig("uint->uint", "int->uint", "double->uint", "string->uint")),
        Function(
            "double",
            to_double,
            _sig("double->double", "int->double", "uint->double", "string->double"),
        ),
        Function(
            "string",
            to_string,
            _sig(
                "string->string",
                "bool->string",
                "int->string",
                "uint->string",
                "double->string",
                "bytes->string",
                "timestamp->string",
                "duration->string",
                "type->string",
            ),
        ),
        Function("bool", to_bool, _sig("bool->bool", "string->bool")),
        Function("bytes", to_bytes, _sig("bytes->bytes", "string->bytes")),
        Function(
            "timestamp",
            to_timestamp,
            _sig(
                "timestamp->timestamp", "string->timestamp", "int->timestamp", "double->timestamp"
            ),
        ),
        Function("duration", to_duration, _sig("duration->duration", "string->duration")),
        Function("dyn", lambda value: value, _sig("dyn->dyn")),
        Function("type", cel_type, _sig("dyn->type")),
        Function("math.greatest", greatest, _sig("list->dyn", "dyn->dyn"), variadic=True),
        Function("math.least", least, _sig("list->dyn", "dyn->dyn"), variadic=True),
        Function("math.abs", absolute, _sig("int->int", "uint->uint", "double->double")),
        Function("math.sign", sign, _sig("int->int", "uint->uint", "double->double")),
        Function(
            "math.ceil",
            _double_fn("math.ceil", lambda v: float(math.ceil(v)) if math.isfinite(v) else v),
            _sig("double->double"),
        ),
        Function(
            "math.floor",
            _double_fn("math.floor", lambda v: float(math.floor(v)) if math.isfinite(v) else v),
            _sig("double->double"),
        ),
        Function("math.round", _double_fn("math.round", _round_half_away), _sig("double->double")),
        Function(
            "math.trunc",
            _double_fn("math.trunc", lambda v: float(math.trunc(v)) if math.isfinite(v) else v),
            _sig("double->double"),
        ),
        Function("math.isNaN", _double_fn("math.isNaN", math.isnan), _sig("double->bool")),
        Function("math.isInf", _double_fn("math.isInf", math.isinf), _sig("double->bool")),
        Function("math.isFinite", _double_fn("math.isFinite", math.isfinite), _sig("double->bool")),
        Function("math.sqrt", _sqrt, _sig("int->double", "uint->double", "double->double")),
        Function("strings.quote", quote, _sig("string->string")),
    ]
}

MEMBER_FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("size", size, _sig("string->int", "bytes->int", "list->int", "map->int")),
        Function("contains", contains, _sig("string,string->bool")),
        Function("startsWith", starts_with, _sig("string,string->bool")),
        Function("endsWith", ends_with, _sig("string,string->bool")),
        Function("matches", matches, _sig("string,string->bool")),
        Function("charAt", char_at, _sig("string,int->string")),
        Function("indexOf", index_of, _sig("string,string->int", "string,string,int->int")),
        Function(
            "lastIndexOf", last_index_of, _sig("string,string->int", "string,string,int->int")
        ),
        Function("lowerAscii", lower_ascii, _sig("string->string")),
        Function("upperAscii", upper_ascii, _sig("string->string")),
        Function(
            "replace",
            replace,
            _sig("string,string,string->string", "string,string,string,int->string"),
        ),
        Function("split", split, _sig("string,string->list", "string,string,int->list")),
        Function("substring", substring, _sig("string,int->string", "string,int,int->string")),
        Function("trim", trim, _sig("string->string")),
        Function("reverse", reverse, _sig("string->string")),
        Function("join", join, _sig("list->string", "list,string->string")),
        Function("getTime", get_time, _sig("timestamp->int")),
        Function("getFullYear", _timestamp_part("getFullYear", lambda m: m.year), _sig(*_TS)),
        Function("getMonth", _timestamp_part("getMonth", lambda m: m.month - 1), _sig(*_TS)),
        Function("getDate", _timestamp_part("getDate", lambda m: m.day), _sig(*_TS)),
        Function(
            "getDayOfMonth", _timestamp_part("getDayOfMonth", lambda m: m.day - 1), _sig(*_TS)
        ),
        Function(
            "getDayOfWeek",
            _timestamp_part("getDayOfWeek", lambda m: (m.weekday() + 1) % 7),
            _sig(*_TS),
        ),
        Function(
            "getDayOfYear",
            _timestamp_part("getDayOfYear", lambda m: m.timetuple().tm_yday - 1),
            _sig(*_TS),
        ),
        Function(
            "getHours",
            _time_part("getHours", lambda m: m.hour, 3600 * 10**9),
            _sig(*_TS, "duration->int"),
        ),
        Function(
            "getMinutes",
            _time_part("getMinutes", lambda m: m.minute, 60 * 10**9),
            _sig(*_TS, "duration->int"),
        ),
        Function(
            "getSeconds",
            _time_part("getSeconds", lambda m: m.second, 10**9),
            _sig(*_TS, "duration->int"),
        ),
        Function("getMilliseconds", _milliseconds, _sig(*_TS, "duration->int")),
    ]
}

# Names that refer to types, usable as values (``type(x) == string``).
TYPE_IDENTIFIERS: Mapping[str, CelType] = {
    "bool": TYPES["bool"],
    "int": TYPES["int"],
    "uint": TYPES["uint"],
    "double": TYPES["double"],
    "string": TYPES["string"],
    "bytes": TYPES["bytes"],
    "list": TYPES["list"],
    "map": TYPES["map"],
    "null_type": TYPES["null_type"],
    "type": TYPES["type"],
}
