"""Entity ids and lookups.

A lookup names an entity by a unique attribute instead of its id. It is a string,
``"lookup__" + attribute + "__" + JSON(value)``, so it can stand anywhere an id can:
as the entity of a transaction chunk (where the builder turns it into the
``[attribute, value]`` pair the server expects) and as a link target (where it is sent
as the string itself and parsed by the server).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ._errors import InstantTypeError, InstantValueError
from ._json import to_json

__all__ = ["LOOKUP_PREFIX", "id", "is_lookup", "lookup", "parse_lookup"]

LOOKUP_PREFIX = "lookup__"
_SEPARATOR = "__"


def id() -> str:
    """A new random entity id (a UUID v4 string)."""
    return str(uuid.uuid4())


def lookup(attribute: str, value: object) -> str:
    """A reference to the entity whose unique ``attribute`` equals ``value``.

    ``value`` is encoded as compact JSON with raw UTF-8 (as the JS SDK does), after the
    usual conversions (datetime -> ISO string, UUID -> str, ...).
    """
    check_lookup_attribute(attribute)
    if _SEPARATOR in attribute or attribute.endswith("_"):
        # The string is split at the first "__" after the prefix, so neither "a__b" nor
        # "a_" (which would read as "a" followed by "___...") survives the round trip.
        raise InstantValueError(
            f"lookup({attribute!r}, ...): an attribute containing '__' or ending in '_' "
            "cannot be written as a lookup string, because the string is split at the first "
            "'__'. Use db.tx.<namespace>.lookup(attribute, value) to address the entity."
        )
    encoded = json.dumps(
        to_json(value, name="lookup value"), ensure_ascii=False, separators=(",", ":")
    )
    return LOOKUP_PREFIX + attribute + _SEPARATOR + encoded


def check_lookup_attribute(attribute: object) -> str:
    if not isinstance(attribute, str):
        raise InstantTypeError(
            f"a lookup attribute must be a str, got {type(attribute).__name__}: {attribute!r}"
        )
    if not attribute:
        raise InstantValueError("a lookup attribute must not be empty")
    return attribute


def is_lookup(value: object) -> bool:
    """True for strings made by `lookup`."""
    return isinstance(value, str) and value.startswith(LOOKUP_PREFIX)


def parse_lookup(text: str) -> tuple[str, Any]:
    """``(attribute, value)`` from a lookup string.

    The attribute ends at the first ``__`` after the prefix; the rest is the JSON value,
    so values may contain ``__`` but attribute names cannot contain it or end in ``_``
    (use ``db.tx.<namespace>.lookup(attribute, value)`` for such an attribute).
    """
    body = text[len(LOOKUP_PREFIX) :] if text.startswith(LOOKUP_PREFIX) else None
    if body is None:
        raise InstantValueError(f"{text!r} is not a lookup string (they start with 'lookup__')")
    attribute, separator, encoded = body.partition(_SEPARATOR)
    if not separator or not attribute:
        raise InstantValueError(
            f"{text!r} is not a valid lookup: expected 'lookup__<attribute>__<json value>'. "
            "Build lookups with instantdb.lookup(attribute, value)."
        )
    try:
        value = json.loads(encoded)
    except ValueError:
        raise InstantValueError(
            f"{text!r} is not a valid lookup: the part after the attribute is not JSON. "
            "Build lookups with instantdb.lookup(attribute, value)."
        ) from None
    return attribute, value
