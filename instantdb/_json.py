"""What may be sent as JSON, and how it is converted.

Payload values (transaction args, queries, rule params, lookup values) are converted to
plain JSON types once, when they enter the SDK, so that

* an unsupported value fails at the line that introduced it, with its path in the
  payload (``args["meta"]["when"]``) and what to do instead, never as a bare TypeError
  from :mod:`json` at send time;
* a builder chunk holds its own copy: mutating the dict you passed afterwards does not
  change what is sent.

The policy (documented in docs/api.md):

==========================  =====================================================
value                       sent as
==========================  =====================================================
str, int, bool, None        itself
float                       itself; NaN and infinities are rejected
datetime (aware or naive)   ``isoformat()`` (the server reads a naive one as UTC)
date                        ``isoformat()``
UUID                        ``str(uuid)``
Decimal                     int when integral, else float; NaN/inf rejected
Enum                        its ``value``, converted by these same rules
Mapping                     dict; keys must be str
list, tuple                 list
set, frozenset              sorted list (an error when the items cannot be ordered)
numpy scalars               ``.item()``, converted by these same rules
anything else (bytes, ...)  `InstantEncodeError`
==========================  =====================================================
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any

from ._arguments import short_repr
from ._errors import InstantEncodeError, InstantTypeError

__all__ = ["dumps", "mapping_to_json", "to_json"]


class _Unencodable(Exception):
    """Raised deep in the conversion; collects the path while unwinding.

    Building the path only on failure keeps the common case free of bookkeeping.
    """

    def __init__(self, problem: str, advice: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.advice = advice
        self.keys: list[str | int | None] = []  # innermost first; None marks a set element


def to_json(value: object, *, name: str) -> Any:
    """Return ``value`` converted to plain JSON types (a fresh copy of containers).

    ``name`` is how the value is called in error messages (``"args"``, ``"query"``).
    Raises `InstantEncodeError` naming the offending path.
    """
    try:
        return _convert(value)
    except _Unencodable as failure:
        path = name + "".join(_path_step(key) for key in reversed(failure.keys))
        raise InstantEncodeError(
            f"cannot send {path} as JSON: {failure.problem}. {failure.advice}", path=path
        ) from None
    except RecursionError:
        raise InstantEncodeError(
            f"cannot send {name} as JSON: it is nested too deeply or contains itself.",
            path=name,
        ) from None


def mapping_to_json(value: object, *, method: str, name: str) -> dict[str, Any]:
    """`to_json` for an argument that must be a dict, e.g. ``update(args)``."""
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InstantTypeError(
            f"{method}() takes a dict for {name}, got {type(value).__name__}: {short_repr(value)}"
        )
    converted: dict[str, Any] = to_json(value, name=name)
    return converted


def dumps(value: Any) -> bytes:
    """Encode already-converted JSON (from `to_json`): compact, UTF-8, no NaN."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Only a lone surrogate ("\ud800", from text decoded with errors="surrogateescape"
        # or a bad escape) cannot be UTF-8. Found only now, so the common case pays nothing.
        where, char = _lone_surrogate(value)
        raise InstantEncodeError(
            f"cannot send body{where} as JSON: it holds a lone surrogate ({char!r}), which "
            "is not valid UTF-8. Fix how the text was decoded, e.g. "
            "bytes.decode('utf-8', errors='replace').",
            path=f"body{where}",
        ) from None


def _lone_surrogate(value: Any) -> tuple[str, str]:
    """The path of the first string (key or value) holding a lone surrogate, and that
    character. Iterative, as payloads may be deep."""
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            for char in item:
                if "\ud800" <= char <= "\udfff":
                    return path, char
        elif isinstance(item, dict):
            for key, child in item.items():
                step = path + _path_step(key)
                pending.append((child, step))
                pending.append((key, step + " (the key)"))
        elif isinstance(item, (list, tuple)):
            pending.extend((child, path + _path_step(i)) for i, child in enumerate(item))
    return "", "?"


def _path_step(key: str | int | None) -> str:
    if key is None:
        return "[<set element>]"
    if isinstance(key, int):
        return f"[{key}]"
    return "[" + json.dumps(key, ensure_ascii=False) + "]"


_PLAIN = frozenset({str, int, bool, type(None)})


def _convert(value: object) -> Any:
    kind = type(value)
    # Exact-type checks first, and the cheap ones before the ABC check: almost every
    # value in a payload is a plain str, number, dict or list.
    if kind in _PLAIN:
        return value
    if kind is float:
        return _finite(value)  # type: ignore[arg-type]
    if kind is dict:
        return _convert_mapping(value)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return _convert_items(value)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return _convert_mapping(value)
    return _convert_other(value)


def _convert_mapping(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in mapping.items():
        if type(key) is not str:
            key = _mapping_key(key)
        if type(item) in _PLAIN:  # inlined fast path: no call per scalar
            out[key] = item
            continue
        try:
            out[key] = _convert(item)
        except _Unencodable as failure:
            failure.keys.append(key)
            raise
    return out


def _mapping_key(key: object) -> str:
    if isinstance(key, str):  # a str subclass, e.g. a str-valued Enum member's value
        return str.__str__(key)
    raise _Unencodable(
        f"a key is a {type(key).__name__} ({key!r}), but JSON object keys must be str",
        "Convert the keys to str.",
    )


def _convert_items(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for index, item in enumerate(items):
        if type(item) in _PLAIN:  # inlined fast path: no call per scalar
            out.append(item)
            continue
        try:
            out.append(_convert(item))
        except _Unencodable as failure:
            failure.keys.append(index)
            raise
    return out


def _finite(number: float) -> float:
    if math.isfinite(number):
        return float(number)
    raise _Unencodable(
        f"{number!r} is not a finite number and JSON has no NaN or infinity",
        "Send None (null) for a missing number, or leave the key out.",
    )


def _convert_other(value: object) -> Any:
    # Order matters: bool is an int, datetime is a date, IntEnum is an int.
    if isinstance(value, Enum):
        try:
            return _convert(value.value)
        except _Unencodable as failure:
            failure.problem = f"the value of {value!r}: {failure.problem}"
            raise
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # subclasses, e.g. numpy.float64
        return _finite(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, datetime):
        if value != value:  # pandas.NaT is a datetime that equals nothing
            raise _Unencodable("a not-a-time value (NaT)", "Send None (null) for a missing time.")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, (set, frozenset)):
        return _sorted_set(value)
    if isinstance(value, (list, tuple)):
        return _convert_items(value)
    if _is_numpy_scalar(value):
        return _convert(value.item())  # type: ignore[attr-defined]
    raise _Unencodable(*_unsupported(value))


def _decimal(number: Decimal) -> int | float:
    if not number.is_finite():
        raise _Unencodable(
            f"Decimal({str(number)!r}) is not a finite number",
            "Send None (null) for a missing number.",
        )
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def _sorted_set(items: set[Any] | frozenset[Any]) -> list[Any]:
    converted: list[Any] = []
    for item in items:
        try:
            converted.append(_convert(item))
        except _Unencodable as failure:
            failure.keys.append(None)
            raise
    try:
        # Sorting makes the payload deterministic, which set iteration order is not.
        return sorted(converted)
    except TypeError:
        raise _Unencodable(
            "a set whose items cannot be sorted (mixed types?), so its order would be random",
            "Pass a list in the order you want.",
        ) from None


def _is_numpy_scalar(value: object) -> bool:
    # Checked by module name so that numpy is never imported by the SDK.
    return (
        type(value).__module__ == "numpy"
        and hasattr(value, "item")
        and not hasattr(value, "__len__")
    )


def _unsupported(value: object) -> tuple[str, str]:
    kind = type(value).__name__
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (
            f"{kind} is binary data and JSON has no binary type",
            "Decode it to str (or base64-encode it), or upload it as a file with "
            "db.storage.upload_file().",
        )
    if isinstance(value, time):
        return (
            "a time of day without a date is ambiguous",
            "Send value.isoformat() as a string, or a full datetime.",
        )
    if type(value).__module__ == "numpy":
        return (f"numpy.{kind} is an array, not a single value", "Convert it with .tolist().")
    if isinstance(value, complex):
        return ("complex numbers have no JSON form", "Send the parts as two numbers.")
    return (
        f"{kind} is not a JSON type",
        "Convert it to str, int, float, bool, None, a list or a dict first.",
    )
