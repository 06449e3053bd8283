"""Facts of the live wire format that every live module shares (live-protocol section 0).

Messages are JSON objects keyed the way the real server keys them (kebab-case, ``?``
suffixes kept). This module holds the few shapes more than one feature emits: the
ISN string, ``error`` events and the redaction of secrets in echoed messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from instantdb_local import errors
from instantdb_local.errors import ServerError

# Fields of a client message that are credentials: echoed back as this placeholder.
_SECRET_FIELDS = frozenset({"reconnect-token", "sse_token", "sse-token"})
REDACTED = "<redacted>"


def isn(tx_id: int) -> str:
    """The ISN string of a transaction: ``0/0/<tx id in uppercase hex>``.

    The real ISN is a replication slot plus a Postgres LSN; clients treat it as opaque,
    and counting transactions keeps the same total order.
    """
    return f"0/0/{tx_id:X}"


def dumps(message: Any) -> str:
    """Compact JSON, the form every SSE ``data:`` line carries."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def redacted(message: Mapping[str, Any]) -> dict[str, Any]:
    """``message`` with its credentials replaced, fit to echo or log."""
    return {k: (REDACTED if k in _SECRET_FIELDS else v) for k, v in message.items()}


def error_event(original: Mapping[str, Any], error: ServerError) -> dict[str, Any]:
    """The ``error`` event for a failed client message (live-protocol section 1.4)."""
    event: dict[str, Any] = {
        "op": "error",
        "status": error.status,
        "client-event-id": original.get("client-event-id"),
        "original-event": redacted(original),
    }
    if error.type is not None:
        event["type"] = error.type
    event["message"] = error.message
    event["hint"] = error.hint
    return event


def crash_event(original: Mapping[str, Any]) -> dict[str, Any]:
    """The ``error`` event for a bug: no type, a generic message, as the real server."""
    generic = errors.unknown()
    return {
        "op": "error",
        "status": 500,
        "client-event-id": original.get("client-event-id"),
        "original-event": redacted(original),
        "message": generic.message,
        "hint": generic.hint,
    }


def op_error(op: str, original: Mapping[str, Any], message: str, **hint: Any) -> ServerError:
    """``Validation failed for <op>: <message>``, the form stream and room errors take."""
    error = errors.validation_failed(op, redacted(original), [{"message": message}])
    if hint and error.hint is not None:
        error.hint.update(hint)
    return error
