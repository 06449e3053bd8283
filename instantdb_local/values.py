"""JSON attribute values <-> the typed columns SQLite indexes, checked types, dates.

Every triple stores its value three ways:

- ``value``: the JSON text exactly as written, returned verbatim by queries;
- ``vtype`` + ``vkey``: an equality/ordering key. Numbers are SQLite numbers (so
  ``1 == 1.0``), strings are text, booleans 0/1 and objects/arrays canonical JSON text.
  ``vtype`` keeps ``1``, ``"1"`` and ``true`` apart, which plain SQLite comparison would
  not; JSON ``null`` has a NULL key, which SQLite sorts first ascending and last
  descending, exactly Instant's null ordering;
- ``vdate``: epoch milliseconds, only for attributes whose checked type is ``date``, so
  dates written as ISO strings and as epoch ms compare as instants.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from json.encoder import encode_basestring
from typing import Any

# vtype codes stored in the triples table.
NULL = "z"
NUMBER = "n"
STRING = "s"
BOOLEAN = "b"
JSON = "j"  # object or array

CHECKED_TYPES = ("string", "number", "boolean", "date")

_INT64 = 2**63


_STORAGE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON text for storage; rejects NaN/Infinity, which JSON cannot carry.

    Scalars (most stored values) skip the encoder's setup: the text is what
    ``json.dumps`` gives for them, exact subclasses excluded.
    """
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return _STORAGE_ENCODER.encode(value)


def canonical(value: Any) -> str:
    """Key-sorted JSON text, the equality key of objects and arrays."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def json_type(value: Any) -> str:
    """The JSON type name Instant's messages use."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def key_of(value: Any) -> tuple[str, Any]:
    """``(vtype, vkey)``: the typed equality key of a JSON value."""
    if value is None:
        return NULL, None
    if isinstance(value, bool):
        return BOOLEAN, int(value)
    if isinstance(value, int):
        # SQLite integers are 64-bit; larger ones compare as floats.
        return NUMBER, value if -_INT64 <= value < _INT64 else float(value)
    if isinstance(value, float):
        return NUMBER, value
    if isinstance(value, str):
        return STRING, value
    return JSON, canonical(value)


def contains_nul(value: Any) -> bool:
    """Whether a string anywhere in the value holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    return False


def has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    return False


# -- checked types -----------------------------------------------------------------


def matches_checked_type(checked_type: str | None, value: Any) -> bool:
    """Whether a written value satisfies an attribute's checked type (null always does)."""
    if checked_type is None or value is None:
        return True
    if checked_type == "string":
        return isinstance(value, str)
    if checked_type == "number":
        return is_number(value)
    if checked_type == "boolean":
        return isinstance(value, bool)
    if checked_type == "date":
        return parse_date_ms(value) is not None
    return True


# -- dates -------------------------------------------------------------------------

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_WORDS = ("now", "today", "tomorrow", "yesterday", "epoch", "infinity", "-infinity")


def is_date_word(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in _DATE_WORDS


def _word_ms(word: str, now: datetime) -> float | None:
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=timezone.utc)
    if word == "now":
        return now.timestamp() * 1000
    if word == "today":
        return midnight.timestamp() * 1000
    if word == "tomorrow":
        return (midnight + timedelta(days=1)).timestamp() * 1000
    if word == "yesterday":
        return (midnight - timedelta(days=1)).timestamp() * 1000
    if word == "epoch":
        return 0.0
    if word == "infinity":
        return math.inf
    if word == "-infinity":
        return -math.inf
    return None


def parse_date_ms(value: Any, *, allow_words: bool = False) -> float | None:
    """Epoch milliseconds for a date value, or None when it is not a date.

    Accepts epoch-ms numbers, ISO 8601 strings with or without a zone (no zone means
    UTC), bare ``YYYY-MM-DD`` and RFC 2822 strings. ``allow_words`` also accepts
    ``now``/``today``/``tomorrow``/``yesterday``/``epoch``/``infinity``.
    """
    if is_number(value):
        number = float(value)
        return number if math.isfinite(number) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if allow_words and is_date_word(text):
        return _word_ms(text.lower(), datetime.now(timezone.utc))
    if _DATE_ONLY.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp() * 1000


def date_ms_of_json(text: str | None) -> float | None:
    """`parse_date_ms` of a stored JSON text (registered as a SQLite function)."""
    if text is None:
        return None
    try:
        return parse_date_ms(json.loads(text))
    except ValueError:
        return None


# -- LIKE --------------------------------------------------------------------------

_LIKE_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def like_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    """A regex for an SQL LIKE pattern (``%``, ``_``, backslash escapes, as Postgres)."""
    cached = _LIKE_CACHE.get((pattern, case_insensitive))
    if cached is not None:
        return cached
    parts: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    compiled = re.compile("".join(parts), flags)
    if len(_LIKE_CACHE) > 256:
        _LIKE_CACHE.clear()
    _LIKE_CACHE[(pattern, case_insensitive)] = compiled
    return compiled


def sql_like(value: Any, pattern: str | None, case_insensitive: int) -> int:
    """SQLite function: LIKE/ILIKE of a string key (non-strings never match)."""
    if not isinstance(value, str) or pattern is None:
        return 0
    return 1 if like_regex(pattern, bool(case_insensitive)).fullmatch(value) else 0


# -- in-memory ordering (nested subqueries) --------------------------------------------


def sort_key(value: Any, *, as_date: bool = False) -> tuple[int, Any]:
    """A total order over JSON values: null first, then booleans, numbers, strings, JSON."""
    if value is None:
        return (0, 0)
    if as_date:
        ms = parse_date_ms(value)
        if ms is not None:
            return (2, ms)
    if isinstance(value, bool):
        return (1, int(value))
    if is_number(value):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, canonical(value))
