"""The order gaps: entities an ordered index walk cannot reach through the triples.

Ordering by an attribute walks the triples indexes in order: ``(attr, vkey, entity)``
for values and JSON nulls, ``(attr, vdate, entity)`` for dates. Some entities of the
namespace have no entry there yet still sort with the nulls: those with no triple for
the attribute at all (written only through links, created by an empty update, or
created before the attribute existed; system attributes are never null-filled), and,
for a date attribute, values that are not dates (possible only after a schema change
made the attribute a date). ``order_gaps`` lists exactly those pairs, so the walk merges
them into the null group instead of scanning the namespace.

The invariant, for every attribute A that can be ordered by (`tracked`) and every
entity E of A's namespace::

    (A, E) in order_gaps  <=>  no triple (E, A) whose vkey is NULL or whose sort key
                               (vdate for dates, vkey otherwise) is not NULL

Writers keep it inside their own SQLite transaction: `after_writes` at the end of each
InstaML transaction, `sync_catalog` whenever attributes change. `expected_gaps` states
the invariant from scratch, for tests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from .attrs import Attr, Catalog
from .entities import IDS, id_list

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS order_gaps (
    attr   TEXT NOT NULL,
    entity TEXT NOT NULL,
    PRIMARY KEY (attr, entity)
) WITHOUT ROWID
"""


def tracked(attr: Attr) -> bool:
    """Whether ``order`` may name the attribute (what InstaQL validates), so the walk
    needs its gaps."""
    return (
        attr.indexed
        and attr.checked_type is not None
        and not attr.is_ref
        and not attr.is_id
        and attr.cardinality == "one"
    )


def _present(attr: Attr) -> str:
    """SQL (on ``e.id``): the entity has a triple one of the walk's index ranges holds."""
    reachable = (
        " AND (t.vkey IS NULL OR t.vdate IS NOT NULL)" if attr.checked_type == "date" else ""
    )
    return (
        "EXISTS (SELECT 1 FROM triples t INDEXED BY triples_by_entity "
        f"WHERE t.entity = e.id AND t.attr = ?{reachable})"
    )


def rebuild(conn: sqlite3.Connection, attr: Attr) -> None:
    """Recompute one attribute's gaps from the triples (schema changes, migrations)."""
    conn.execute("DELETE FROM order_gaps WHERE attr = ?", (attr.id,))
    if tracked(attr):
        conn.execute(
            "INSERT INTO order_gaps (attr, entity) SELECT ?, e.id FROM entities e "
            f"WHERE e.etype = ? AND NOT {_present(attr)}",
            (attr.id, attr.etype, attr.id),
        )


def rebuild_all(conn: sqlite3.Connection, catalog: Catalog) -> None:
    conn.execute("DELETE FROM order_gaps")
    for attr in catalog:
        if tracked(attr):
            rebuild(conn, attr)


def _signature(attr: Attr) -> tuple[object, ...]:
    return (tracked(attr), attr.etype, attr.checked_type == "date")


def sync_catalog(conn: sqlite3.Connection, before: Catalog, after: Catalog) -> None:
    """Rebuild the gaps of attributes that are new or whose ordering changed.

    Call it after the triples reflect the change (backfilled nulls, recomputed dates).
    """
    if before is after:
        return
    for attr in after:
        old = before.by_id(attr.id)
        changed = old is None or _signature(old) != _signature(attr)
        if changed and (tracked(attr) or (old is not None and tracked(old))):
            rebuild(conn, attr)
    for attr in before:
        if after.by_id(attr.id) is None and tracked(attr):
            conn.execute("DELETE FROM order_gaps WHERE attr = ?", (attr.id,))


def _has_gaps(conn: sqlite3.Connection, attr: Attr) -> bool:
    row = conn.execute("SELECT 1 FROM order_gaps WHERE attr = ? LIMIT 1", (attr.id,)).fetchone()
    return row is not None


def after_writes(
    conn: sqlite3.Connection,
    catalog: Catalog,
    tx: int,
    *,
    added: Mapping[str, Iterable[str]],
    written: Mapping[str, Sequence[str]],
    null_filled: Mapping[str, Sequence[str]],
    deleted: Mapping[str, Iterable[str]],
) -> None:
    """Bring the gaps up to date after one transaction's writes.

    ``added``: entities the transaction ensured exist (some may be new); ``written``:
    entities that got values; ``null_filled``: entities given a null for each missing
    indexed app attribute; ``deleted``: entities removed. Only a new entity can open a
    gap, and only a written value or a deletion can close one, so this costs nothing for
    the common case of new entities written with their values.
    """
    for etype in set(added) | set(written) | set(deleted):
        attrs = [a for a in catalog.attrs_of(etype) if tracked(a)]
        if not attrs:
            continue
        written_ids = id_list(written.get(etype, ()))
        deleted_ids = id_list(deleted.get(etype, ()))
        filled = set(null_filled.get(etype, ()))
        new_candidates = list(dict.fromkeys(added.get(etype, ())))
        for attr in attrs:
            if _has_gaps(conn, attr):
                if etype in written:
                    conn.execute(
                        "DELETE FROM order_gaps WHERE attr = ? AND entity IN ("
                        f"SELECT e.id FROM entities e WHERE e.etype = ? AND e.id IN {IDS} "
                        f"AND {_present(attr)})",
                        (attr.id, etype, written_ids, attr.id),
                    )
                if etype in deleted:
                    conn.execute(
                        f"DELETE FROM order_gaps WHERE attr = ? AND entity IN {IDS}",
                        (attr.id, deleted_ids),
                    )
            # Null-filling gives app attributes a triple, so only entities it skipped
            # (and every entity, for system attributes) can be new gaps.
            candidates = (
                new_candidates if attr.system else [i for i in new_candidates if i not in filled]
            )
            if candidates:
                conn.execute(
                    "INSERT OR IGNORE INTO order_gaps (attr, entity) SELECT ?, e.id "
                    f"FROM entities e WHERE e.etype = ? AND e.id IN {IDS} AND e.created_tx = ? "
                    f"AND NOT {_present(attr)}",
                    (attr.id, etype, id_list(candidates), tx, attr.id),
                )


def expected_gaps(conn: sqlite3.Connection, catalog: Catalog) -> set[tuple[str, str]]:
    """The gaps the invariant demands, computed from scratch (a test oracle)."""
    found: set[tuple[str, str]] = set()
    for attr in catalog:
        if not tracked(attr):
            continue
        rows = conn.execute(
            f"SELECT e.id FROM entities e WHERE e.etype = ? AND NOT {_present(attr)}",
            (attr.etype, attr.id),
        )
        found.update((attr.id, row[0]) for row in rows)
    return found


def stored_gaps(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {(row[0], row[1]) for row in conn.execute("SELECT attr, entity FROM order_gaps")}
