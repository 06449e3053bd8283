"""Entity ids and lookup references as they arrive on the wire."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOOKUP_PREFIX = "lookup__"


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def normalize_uuid(value: str) -> str:
    return str(uuid.UUID(value))


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class LookupRef:
    """``[attr, value]``: the entity whose unique ``attr`` holds ``value``."""

    label: str  # may be dotted: "owner.id" looks up through a has-one link
    value: Any

    def key(self) -> tuple[str, str]:
        return (self.label, json.dumps(self.value, sort_keys=True))


def parse_lookup_string(text: str) -> LookupRef | None:
    """``lookup__<attr>__<json value>``, the Python SDK's lookup sentinel."""
    if not text.startswith(LOOKUP_PREFIX):
        return None
    rest = text[len(LOOKUP_PREFIX) :]
    label, sep, encoded = rest.partition("__")
    if not sep or not label:
        return None
    try:
        value = json.loads(encoded)
    except ValueError:
        return None
    return LookupRef(label, value)


def parse_eid(raw: Any) -> str | LookupRef | None:
    """A step's entity id: a UUID, a lookup ref in any wire form, or None if invalid."""
    if isinstance(raw, str):
        if is_uuid(raw):
            return normalize_uuid(raw)
        return parse_lookup_string(raw)
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
        return LookupRef(raw[0], raw[1])
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((label, value),) = raw.items()
        if isinstance(label, str):
            return LookupRef(label, value)
    return None


def parse_link_target(raw: Any) -> str | LookupRef | None:
    """A link target: a UUID, a ``{attr: value}`` map or a lookup string."""
    if isinstance(raw, str):
        if is_uuid(raw):
            return normalize_uuid(raw)
        return parse_lookup_string(raw)
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((label, value),) = raw.items()
        if isinstance(label, str):
            return LookupRef(label, value)
    return None
