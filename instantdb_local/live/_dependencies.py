"""Which namespaces a query reads, so a commit elsewhere does not recompute it.

A query depends on its top-level namespaces, on the namespaces its nested links reach
and on those its dotted ``where`` paths pass through. Whenever that cannot be told
for sure (a label the catalog does not know yet, a malformed query), the answer is
None, which callers read as "every namespace": recomputing too often only costs time,
while a missed dependency would leave a subscriber with a stale result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from instantdb_local.attrs import Catalog

RULE_PARAMS_KEY = "$$ruleParams"


def query_namespaces(catalog: Catalog, query: Any) -> frozenset[str] | None:
    """The namespaces ``query`` reads, or None when they cannot be told."""
    if not isinstance(query, Mapping):
        return None
    found: set[str] = set()
    for etype, node in query.items():
        if etype == RULE_PARAMS_KEY:
            continue
        if not _walk(catalog, str(etype), node, found):
            return None
    return frozenset(found)


def _walk(catalog: Catalog, etype: str, node: Any, found: set[str]) -> bool:
    found.add(etype)
    if not isinstance(node, Mapping):
        return False
    for key, child in node.items():
        if key == "$":
            where = child.get("where") if isinstance(child, Mapping) else None
            if where is not None and not _where(catalog, etype, where, found):
                return False
            continue
        link = catalog.link(etype, str(key))
        if link is None or not _walk(catalog, link.target_etype, child, found):
            return False
    return True


def _where(catalog: Catalog, etype: str, where: Any, found: set[str]) -> bool:
    if not isinstance(where, Mapping):
        return False
    for key, value in where.items():
        if key in ("or", "and"):
            if not isinstance(value, list):
                return False
            if not all(_where(catalog, etype, clause, found) for clause in value):
                return False
            continue
        current = etype
        labels = str(key).split(".")
        for position, label in enumerate(labels):
            link = catalog.link(current, label)
            if link is None:
                # Only the last label may be a plain attribute (or `id`).
                if position < len(labels) - 1:
                    return False
                break
            current = link.target_etype
            found.add(current)
    return True
