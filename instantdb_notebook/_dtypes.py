"""Typing a column: from the schema's declared type, or inferred conservatively.

The set of Python types in a column (``set(map(type, values))``, run in C) decides
everything; values are handed to pyarrow only with a type that fits all of them, because
pyarrow's own inference and casts are lossy at the edges ("1.0, True" becomes two
doubles, ``1.5`` cast to int64 becomes 1).

Without a schema:

==========================  ==========================================================
values (nulls aside)        column
==========================  ==========================================================
only strings                string
only ints                   int64 (larger than int64: object)
ints and floats             float64 (an int beyond 2**53 would lose digits: object)
only booleans               boolean
none at all                 object, all null
anything else               object, values untouched (mixed types, lists, objects)
==========================  ==========================================================

Strings are never parsed as dates unless the schema or ``parse_dates`` says so.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._errors import FrameError, SchemaMismatchWarning
from ._schema import InstantType
from ._shape import Column

if TYPE_CHECKING:
    from types import FrameType

    import pandas as pd

_NONE = type(None)
_NAT = -(2**63)  # the int64 behind NaT
_MAX_EPOCH_MS = 8.64e15  # JavaScript's Date range: 100,000,000 days either side of 1970
# "Z" or a numeric offset ending a string with a time of day ("...T10:00:00+02:00")
_ZONE_SUFFIX = re.compile(r":\d\d(?:[.,]\d+)?\s*(?:[zZ]|[+-]\d\d(?::?\d\d)?)$")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FLOAT_EXACT_INT = 2**53  # beyond this an int does not survive a trip through float64

_ALLOWED: dict[InstantType, frozenset[type]] = {
    "string": frozenset({str}),
    "number": frozenset({int, float}),
    "boolean": frozenset({bool}),
    "date": frozenset({int, float, str}),
    "json": frozenset(),
}


@dataclass
class TypedColumn:
    """A column ready to become a pandas or Arrow column.

    ``kind`` says what ``data`` holds: ``"arrow"`` a pyarrow array, ``"datetime"`` a pandas
    Series of ``datetime64[<unit>, UTC]``, ``"object"`` the Python values, untouched.
    """

    name: str
    kind: Literal["arrow", "datetime", "object"]
    data: Any


def type_column(column: Column, *, date_columns: Collection[str], parse_dates: bool) -> TypedColumn:
    """Type one column, warning (``SchemaMismatchWarning``) when its values defy the schema."""
    declared = column.declared
    if column.name in date_columns:
        declared = "date"
    elif declared == "date" and not parse_dates:
        declared = None  # keep the values as given; they are typed like undeclared ones
    values = column.values
    kinds = set(map(type, values)) if column.kinds is None else set(column.kinds)
    kinds.discard(_NONE)

    if declared == "json":
        return TypedColumn(column.name, "object", values)
    if declared is not None:
        allowed = _ALLOWED[declared]
        if not kinds <= allowed:
            example = next(v for v in values if type(v) not in allowed and v is not None)
            found = ", ".join(sorted(kind.__name__ for kind in kinds - allowed))
            _warn_mismatch(column.name, declared, f"holds {found} values (e.g. {example!r})")
        else:
            typed = _declared(column.name, values, kinds, declared)
            if typed is not None:
                return typed
            _warn_mismatch(column.name, declared, "holds numbers too large to store exactly")
    return _inferred(column.name, values, kinds)


def _declared(
    name: str, values: list[Any], kinds: set[type], declared: InstantType
) -> TypedColumn | None:
    import pyarrow as pa

    if declared == "string":
        return TypedColumn(name, "arrow", pa.array(values, type=pa.string()))
    if declared == "boolean":
        return TypedColumn(name, "arrow", pa.array(values, type=pa.bool_()))
    if declared == "number":
        array = _numbers(values, kinds, prefer_int=True)
        return None if array is None else TypedColumn(name, "arrow", array)
    return TypedColumn(name, "datetime", parse_date_column(name, values))


def _inferred(name: str, values: list[Any], kinds: set[type]) -> TypedColumn:
    import pyarrow as pa

    if kinds == {str}:
        return TypedColumn(name, "arrow", pa.array(values, type=pa.string()))
    if kinds == {bool}:
        return TypedColumn(name, "arrow", pa.array(values, type=pa.bool_()))
    if kinds and kinds <= {int, float}:
        array = _numbers(values, kinds, prefer_int=False)
        if array is not None:
            return TypedColumn(name, "arrow", array)
    return TypedColumn(name, "object", values)


def _numbers(values: list[Any], kinds: set[type], *, prefer_int: bool) -> Any:
    """An int64 or float64 array holding exactly these numbers, or None if neither can."""
    import pyarrow as pa

    if kinds <= {int}:
        try:
            return pa.array(values, type=pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            return None
    if int in kinds and any(
        type(v) is int and not -_FLOAT_EXACT_INT <= v <= _FLOAT_EXACT_INT for v in values
    ):
        return None
    doubles = pa.array(values, type=pa.float64())
    if prefer_int:
        # A safe cast fails unless every value is integral and fits: "Int64 when all integral".
        try:
            return doubles.cast(pa.int64())
        except pa.ArrowInvalid:
            pass
    return doubles


def parse_date_column(name: str, values: list[Any]) -> pd.Series:
    """Epoch milliseconds and date strings, possibly mixed, as one UTC datetime column.

    The unit is microseconds (every epoch-ms value and every ISO string with up to six
    fractional digits fits exactly), or nanoseconds when some string needs them.
    """
    import numpy as np
    import pandas as pd

    number_at = [i for i, v in enumerate(values) if type(v) is int or type(v) is float]
    string_at = [i for i, v in enumerate(values) if type(v) is str]
    micros = np.full(len(values), _NAT, dtype=np.int64)
    nanos: list[tuple[list[int], Any]] = []  # string groups that need nanoseconds

    if number_at:
        millis = np.array([values[i] for i in number_at], dtype=np.float64)
        finite = np.isfinite(millis)
        if finite.any() and np.abs(millis[finite]).max() > _MAX_EPOCH_MS:
            raise FrameError(
                f"column {name!r} holds dates, but some epoch-millisecond value is beyond "
                "the range of JavaScript dates; pass parse_dates=False to keep the values"
            )
        micros[np.asarray(number_at)[finite]] = np.rint(millis[finite] * 1000).astype(np.int64)
    for positions in _by_zone(string_at, values):
        parsed = _parse_date_strings(name, [values[i] for i in positions])
        wall = parsed.dt.tz_localize(None)  # UTC wall time, as plain datetime64
        if parsed.dt.unit == "ns":
            ticks = wall.to_numpy().view(np.int64)
            if (ticks % 1000).any():
                nanos.append((positions, ticks))
                continue
            micros[positions] = ticks // 1000
        else:
            micros[positions] = wall.dt.as_unit("us").to_numpy().view(np.int64)

    if not nanos:
        stamps: pd.Series = pd.Series(micros.view("datetime64[us]"), copy=False)
    else:
        known = micros != _NAT
        if known.any() and np.abs(micros[known]).max() >= 2**63 // 1000:
            raise FrameError(
                f"column {name!r} mixes nanosecond-precise dates with dates beyond the year "
                "2262, which no single datetime64 unit can hold; pass parse_dates=False"
            )
        ticks_ns = np.where(known, micros * 1000, _NAT)
        for positions, ticks in nanos:
            ticks_ns[positions] = ticks
        stamps = pd.Series(ticks_ns.view("datetime64[ns]"), copy=False)
    in_utc: pd.Series = stamps.dt.tz_localize("UTC")
    return in_utc


def _by_zone(string_at: list[int], values: list[Any]) -> list[list[int]]:
    """The positions of date strings with a zone, then of those without.

    Each group is parsed on its own: some pandas versions (2.3) apply the offset of one
    string to the zone-less strings after it when they are parsed together.
    """
    if not string_at:
        return []
    zoned = [i for i in string_at if _ZONE_SUFFIX.search(values[i])]
    if not zoned or len(zoned) == len(string_at):
        return [string_at]
    is_zoned = set(zoned)
    return [zoned, [i for i in string_at if i not in is_zoned]]


def _parse_date_strings(name: str, strings: list[str]) -> pd.Series:
    import pandas as pd

    series = pd.Series(strings, dtype=object)
    try:
        parsed = pd.to_datetime(series, format="ISO8601", utc=True)
    except (ValueError, OverflowError):
        # The server also accepts a few non-ISO forms ("2025/01/02", RFC 2822); let pandas
        # read those one by one.
        try:
            parsed = pd.to_datetime(series, format="mixed", utc=True)
        except (ValueError, OverflowError):
            parsed = None
    if parsed is not None and not parsed.isna().any():
        return parsed
    # pandas reads "" and "NaT" as missing: that would lose a value, so it is an error too.
    for text in strings:
        try:
            unreadable = pd.isna(pd.to_datetime(text, utc=True))
        except pd.errors.OutOfBoundsDatetime:
            raise FrameError(
                f"column {name!r} holds dates, but {text!r} is outside the range this pandas "
                f"version can hold (pandas 2 holds 1677-2262 only); upgrade pandas, or pass "
                "parse_dates=False to keep the values as given"
            ) from None
        except (ValueError, OverflowError):
            unreadable = True
        if unreadable:
            raise FrameError(
                f"column {name!r} holds dates, but {text!r} cannot be read as one; pass "
                "parse_dates=False to keep the values as given, or fix the data"
            )
    raise FrameError(
        f"column {name!r} holds dates that pandas cannot read together; pass "
        "parse_dates=False to keep the values as given"
    )


def _warn_mismatch(name: str, declared: InstantType, problem: str) -> None:
    warnings.warn(
        f"column {name!r} is declared {declared!r} in the schema but {problem}; it is typed "
        "from its values instead",
        SchemaMismatchWarning,
        stacklevel=_stacklevel_outside_package(),
    )


def _stacklevel_outside_package() -> int:
    """The ``stacklevel`` that points a warning at the caller's own code (a notebook cell),
    however deep in this package it was raised. Called by the function that warns."""
    level = 1
    frame: FrameType | None = sys._getframe(2)  # the caller of the function that warns
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level + 1
