"""Entities as rows of triples: reading records, following links, writing values.

Functions here take the connection to use, so the same code serves committed reads and
the uncommitted state inside a write transaction. Lists of ids are passed to SQLite as
one JSON array (``json_each``), never as thousands of bound parameters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from . import values
from .attrs import Attr, Catalog, Link

IDS = "(SELECT value FROM json_each(?))"


def id_list(ids: Iterable[str]) -> str:
    return json.dumps(list(ids))


def existing_ids(conn: sqlite3.Connection, etype: str, ids: Iterable[str]) -> set[str]:
    rows = conn.execute(
        f"SELECT id FROM entities WHERE etype = ? AND id IN {IDS}", (etype, id_list(ids))
    )
    return {row[0] for row in rows}


def exists(conn: sqlite3.Connection, etype: str, eid: str) -> bool:
    row = conn.execute("SELECT 1 FROM entities WHERE etype = ? AND id = ?", (etype, eid))
    return row.fetchone() is not None


def created_order(conn: sqlite3.Connection, etype: str, ids: Iterable[str]) -> dict[str, int]:
    rows = conn.execute(
        f"SELECT id, created_tx FROM entities WHERE etype = ? AND id IN {IDS}",
        (etype, id_list(ids)),
    )
    return {row[0]: int(row[1]) for row in rows}


def fetch_records(
    conn: sqlite3.Connection,
    catalog: Catalog,
    etype: str,
    ids: Sequence[str],
    *,
    known_to_exist: bool = False,
) -> dict[str, dict[str, Any]]:
    """Entity objects (``id`` + every cardinality-one value) for ids that exist.

    ``known_to_exist`` skips the existence check for ids just read from ``entities``.
    """
    if not ids:
        return {}
    if known_to_exist:
        records: dict[str, dict[str, Any]] = {eid: {"id": eid} for eid in ids}
    else:
        present = existing_ids(conn, etype, ids)
        records = {eid: {"id": eid} for eid in ids if eid in present}
    labels, labels_json = catalog.record_labels(etype)
    if not records or not labels:
        return records
    rows = conn.execute(
        f"SELECT entity, attr, vtype, vkey, value FROM triples WHERE entity IN {IDS} "
        f"AND attr IN {IDS}",
        (id_list(records), labels_json),
    )
    string = values.STRING
    for entity, attr_id, vtype, vkey, text in rows:
        # A string's key is the string itself: no JSON to decode.
        records[entity][labels[attr_id]] = vkey if vtype == string else json.loads(text)
    return records


def fetch_record(
    conn: sqlite3.Connection, catalog: Catalog, etype: str, eid: str
) -> dict[str, Any] | None:
    return fetch_records(conn, catalog, etype, [eid]).get(eid)


def linked_pairs(
    conn: sqlite3.Connection, link: Link, parent_ids: Sequence[str]
) -> list[tuple[str, str]]:
    """``(parent, child)`` pairs along a link, for all parents in one query."""
    if not parent_ids:
        return []
    if link.forward:
        rows = conn.execute(
            f"SELECT entity, vkey FROM triples WHERE attr = ? AND entity IN {IDS}",
            (link.attr.id, id_list(parent_ids)),
        )
    else:
        rows = conn.execute(
            f"SELECT vkey, entity FROM triples WHERE attr = ? AND vkey IN {IDS}",
            (link.attr.id, id_list(parent_ids)),
        )
    return [(row[0], row[1]) for row in rows]


def attr_values(conn: sqlite3.Connection, attr: Attr, ids: Sequence[str]) -> list[tuple[str, Any]]:
    if not ids:
        return []
    rows = conn.execute(
        f"SELECT entity, value FROM triples WHERE attr = ? AND entity IN {IDS}",
        (attr.id, id_list(ids)),
    )
    return [(row[0], json.loads(row[1])) for row in rows]


def walk(
    conn: sqlite3.Connection, catalog: Catalog, etype: str, eid: str | None, path: str
) -> list[Any]:
    """Values reached from an entity along a dotted path (``data.ref("goal.status")``).

    Every segment but the last is a link label; the last is an attribute, ``id`` or a
    link (whose ids are returned). Unknown labels give ``[]``.
    """
    if eid is None or not path:
        return []
    segments = path.split(".")
    current_type, current_ids = etype, [eid]
    for segment in segments[:-1]:
        link = catalog.link(current_type, segment)
        if link is None:
            return []
        reached = list(dict.fromkeys(child for _, child in linked_pairs(conn, link, current_ids)))
        current_type = link.target_etype
        present = existing_ids(conn, current_type, reached)
        current_ids = [i for i in reached if i in present]
    last = segments[-1]
    if last == "id":
        return list(current_ids)
    link = catalog.link(current_type, last)
    if link is not None:
        return list(dict.fromkeys(child for _, child in linked_pairs(conn, link, current_ids)))
    attr = catalog.forward(current_type, last)
    if attr is None:
        return []
    return [value for _, value in attr_values(conn, attr, current_ids)]


# -- writes ----------------------------------------------------------------------------


def ensure_entity(conn: sqlite3.Connection, etype: str, eid: str, tx: int) -> bool:
    """Create the entity's id row if missing; True when it was created."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO entities (etype, id, created_tx) VALUES (?, ?, ?)",
        (etype, eid, tx),
    )
    return cursor.rowcount > 0


def triple_row(
    attr: Attr, eid: str, value: Any, tx: int, text: str | None = None
) -> tuple[Any, ...]:
    """The triples row for a value; ``text`` is its JSON if already made."""
    vtype, vkey = values.key_of(value)
    vdate = values.parse_date_ms(value) if attr.checked_type == "date" else None
    return (eid, attr.id, vtype, vkey, values.dumps(value) if text is None else text, vdate, tx)


INSERT_TRIPLE = (
    "INSERT INTO triples (entity, attr, vtype, vkey, value, vdate, created_tx) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def set_value(conn: sqlite3.Connection, attr: Attr, eid: str, value: Any, tx: int) -> None:
    """Replace the cardinality-one value of ``attr`` on ``eid``."""
    conn.execute("DELETE FROM triples WHERE entity = ? AND attr = ?", (eid, attr.id))
    conn.execute(INSERT_TRIPLE, triple_row(attr, eid, value, tx))


def get_value(conn: sqlite3.Connection, attr: Attr, eid: str) -> tuple[bool, Any]:
    row = conn.execute(
        "SELECT value FROM triples WHERE entity = ? AND attr = ? LIMIT 1", (eid, attr.id)
    ).fetchone()
    return (False, None) if row is None else (True, json.loads(row[0]))


def has_ref(conn: sqlite3.Connection, attr: Attr, source: str, target: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM triples WHERE entity = ? AND attr = ? AND vkey = ?",
        (source, attr.id, target),
    ).fetchone()
    return row is not None


def add_ref(conn: sqlite3.Connection, attr: Attr, source: str, target: str, tx: int) -> None:
    """Link ``source -> target`` (forward orientation); a has-one link replaces its target."""
    if attr.cardinality == "one":
        conn.execute(
            "DELETE FROM triples WHERE entity = ? AND attr = ? AND vkey IS NOT ?",
            (source, attr.id, target),
        )
    if not has_ref(conn, attr, source, target):
        conn.execute(INSERT_TRIPLE, triple_row(attr, source, target, tx))


def remove_ref(conn: sqlite3.Connection, attr: Attr, source: str, target: str) -> None:
    conn.execute(
        "DELETE FROM triples WHERE entity = ? AND attr = ? AND vkey = ?",
        (source, attr.id, target),
    )


def unique_holder(
    conn: sqlite3.Connection, attr: Attr, value: Any, *, besides: str | None = None
) -> str | None:
    """Another entity already holding ``value`` in a unique attribute (nulls never clash)."""
    if value is None:
        return None
    vtype, vkey = values.key_of(value)
    row = conn.execute(
        "SELECT entity FROM triples WHERE attr = ? AND vkey = ? AND vtype = ? "
        "AND entity IS NOT ? LIMIT 1",
        (attr.id, vkey, vtype, besides),
    ).fetchone()
    return None if row is None else str(row[0])


def lookup(conn: sqlite3.Connection, attr: Attr, value: Any) -> str | None:
    """The entity whose ``attr`` holds ``value`` (attr is unique)."""
    if attr.checked_type == "date":
        ms = values.parse_date_ms(value)
        if ms is not None:
            row = conn.execute(
                "SELECT entity FROM triples WHERE attr = ? AND vdate = ? LIMIT 1",
                (attr.id, ms),
            ).fetchone()
            return None if row is None else str(row[0])
    return unique_holder(conn, attr, value)


def fill_indexed_nulls(
    conn: sqlite3.Connection, catalog: Catalog, etype: str, ids: Iterable[str], tx: int
) -> None:
    """Give written entities an explicit null for each indexed attribute they lack.

    The real server does this for the app's own indexed blob attributes, so such
    attributes read back as ``null`` rather than absent.
    """
    targets = [
        a
        for a in catalog.attrs_of(etype)
        if a.indexed and not a.system and not a.is_ref and not a.is_id
    ]
    id_json = id_list(ids)
    for attr in targets:
        conn.execute(
            "INSERT INTO triples (entity, attr, vtype, vkey, value, vdate, created_tx) "
            f"SELECT e.id, ?, ?, NULL, 'null', NULL, ? FROM entities e "
            f"WHERE e.etype = ? AND e.id IN {IDS} AND NOT EXISTS ("
            "SELECT 1 FROM triples t WHERE t.entity = e.id AND t.attr = ?)",
            (attr.id, values.NULL, tx, etype, id_json, attr.id),
        )


def backfill_indexed_nulls(conn: sqlite3.Connection, attr: Attr, tx: int) -> None:
    """Null-fill every existing entity of a namespace for a newly indexed attribute."""
    conn.execute(
        "INSERT INTO triples (entity, attr, vtype, vkey, value, vdate, created_tx) "
        "SELECT e.id, ?, ?, NULL, 'null', NULL, ? FROM entities e WHERE e.etype = ? "
        "AND NOT EXISTS (SELECT 1 FROM triples t WHERE t.entity = e.id AND t.attr = ?)",
        (attr.id, values.NULL, tx, attr.etype, attr.id),
    )


def recompute_dates(conn: sqlite3.Connection, attr: Attr) -> None:
    """Refresh the date key of an attribute whose checked type changed."""
    if attr.checked_type == "date":
        conn.execute("UPDATE triples SET vdate = instant_date_ms(value) WHERE attr = ?", (attr.id,))
    else:
        conn.execute("UPDATE triples SET vdate = NULL WHERE attr = ?", (attr.id,))
