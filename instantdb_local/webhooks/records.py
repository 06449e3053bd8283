"""What an event carries: its records, computed from a transaction's change record with
the webhook's current namespaces and actions, and the idempotency keys.

Both keys are UUIDs made of the first 16 bytes of a SHA-256 (version bits untouched), so
they stay the same across retries and resends:

- payload key: SHA-256(webhook id, 16 bytes ‖ ISN, 12 bytes)
- record key: SHA-256(namespace ‖ action ‖ entity id, 16 bytes ‖ ISN, 12 bytes)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .isn import isn_bytes

__all__ = ["encode", "kinds", "matches", "payload_key", "payload_records", "record_key"]


def _key(*parts: bytes) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(b"".join(parts)).digest()[:16]))


def payload_key(webhook_id: str, isn: int) -> str:
    return _key(uuid.UUID(webhook_id).bytes, isn_bytes(isn))


def record_key(namespace: str, action: str, entity_id: str, isn: int) -> str:
    try:
        entity = uuid.UUID(entity_id).bytes
    except ValueError:
        entity = entity_id.encode("utf-8")  # ids are UUIDs; never fail a delivery over one
    return _key(namespace.encode("utf-8"), action.encode("utf-8"), entity, isn_bytes(isn))


def encode(changes: Iterable[Mapping[str, Any]]) -> str:
    """A transaction's change records as the store keeps them (JSON text)."""
    return json.dumps(list(changes), ensure_ascii=False)


def kinds(changes: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The ``(namespace, action)`` pairs of change records: what `matches` reads."""
    return {(c["namespace"], c["action"]) for c in changes}


def matches(
    kinds: Iterable[tuple[str, str]], namespaces: Sequence[str], actions: Sequence[str]
) -> bool:
    """Whether any ``(namespace, action)`` pair of a transaction is one of the
    webhook's namespaces, with one of its actions."""
    return any(namespace in namespaces and action in actions for namespace, action in kinds)


def payload_records(
    changes: Iterable[Mapping[str, Any]],
    namespaces: Sequence[str],
    actions: Sequence[str],
    isn: int,
) -> list[dict[str, Any]]:
    """The records a webhook receives for a transaction, in the transaction's order."""
    return [
        {
            "namespace": c["namespace"],
            "id": c["id"],
            "action": c["action"],
            "before": c["before"],
            "after": c["after"],
            "idempotencyKey": record_key(c["namespace"], c["action"], c["id"], isn),
        }
        for c in changes
        if c["namespace"] in namespaces and c["action"] in actions
    ]
