"""Type aliases for annotating code that uses the SDK. Results are plain dicts and lists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._tx import Chunks, TxChunk

__all__ = [
    "Chunks",
    "DebugResult",
    "Query",
    "QueryResult",
    "RuleParams",
    "Rules",
    "Schema",
    "TransactResult",
    "TxChunk",
]

Query = Mapping[str, Any]
"""An InstaQL query: ``{"goals": {"$": {"where": {...}}, "todos": {}}}``."""

QueryResult = dict[str, Any]
"""``{namespace: [entity, ...]}``, entities as dicts with linked entities nested."""

RuleParams = Mapping[str, Any]
"""Values for permission rules, read there as ``ruleParams``."""

Rules = Mapping[str, Any]
"""Permission rules to check against instead of the app's (debug helpers only)."""

TransactResult = dict[str, Any]
"""``{"tx-id": <int>}``."""

DebugResult = dict[str, Any]
"""What the debug helpers return (top-level keys in snake_case; see docs/api.md)."""

Schema = dict[str, Any]
"""The app schema from ``db.schema()``: ``{"blobs": {ns: {attr: ...}}, "refs": {...}}``."""
