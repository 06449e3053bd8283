"""Ordered reads as index walks that stop after the rows they need.

A top-level query ordered by ``serverCreatedAt`` or by an indexed attribute reads its
rows straight from an index already in that order, so ``limit``/``first``/``last``,
``offset`` and cursors cost time in the rows returned (plus those skipped), not in the
size of the namespace, the way the real server's Postgres plans them.

The order is Instant's (server-semantics section 3): by the sort value, nulls (and
missing values) first ascending and last descending, ties broken by entity id in the
same direction. Rows come from up to three index ranges, read lazily in walk order:

- ``serverCreatedAt``: ``entities_by_creation`` ``(etype, created_tx, id)``;
- an attribute's values: ``triples_by_value`` ``(attr, vkey, entity)``, or
  ``triples_by_date_order`` ``(attr, vdate, entity)`` for dates;
- its null group: the ``vkey IS NULL`` range of ``triples_by_value`` merged by id with
  the entities the triples cannot show (`order_gaps`).

Keys live in ascending space: ``(group, value, id)`` with group 0 for the nulls and 1
for values (``serverCreatedAt`` rows are all group 1, valued by their transaction).
A ``where`` clause arrives as a per-row SQL predicate; a walk that tests more rows than
its budget without finishing reports that, so the caller can sort the matches instead.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .attrs import Attr

Key = tuple[int, Any, str]
# (entity id, created tx, sort value): the shape of the rows the query layer reads.
Row = tuple[str, int, Any]


@dataclass(frozen=True)
class Bound:
    """One end of the walked range, in ascending key space.

    A cursor bounds ``(group, value, eid)``; a ``where`` comparison on the order
    attribute bounds the value alone (``eid`` None); ``whole_group`` keeps or drops
    whole groups only (a comparison never matches the null group).
    """

    group: int
    value: Any = None
    eid: str | None = None
    inclusive: bool = False
    whole_group: bool = False

    @classmethod
    def at(cls, key: Key, *, inclusive: bool) -> Bound:
        return cls(key[0], key[1], key[2], inclusive)


@dataclass(frozen=True)
class Predicate:
    """A SQL test of ``e.id`` (the candidate row's entity) and its parameters."""

    sql: str
    params: tuple[Any, ...]


def row_key(row: Row, by_attr: bool) -> Key:
    if by_attr and row[2] is None:
        return (0, None, row[0])
    return (1, row[2], row[0])


@dataclass(frozen=True)
class _Source:
    """One index range: SQL selecting ``(id, created_tx, sort value)`` rows of a group."""

    group: int
    select: str  # up to WHERE, without bounds or ORDER BY
    params: tuple[Any, ...]
    value_column: str | None  # None for the null group (keyed by id alone)
    id_column: str


def _bound_sql(source: _Source, bound: Bound, lower: bool) -> tuple[str, list[Any]] | None:
    """The bound as a condition on ``source``; None when no row of it can pass."""
    if source.group != bound.group:
        # Whole groups sit on one side of the bound.
        passes = source.group > bound.group if lower else source.group < bound.group
        return ("", []) if passes else None
    if bound.whole_group:
        return "", []
    op = (">" if lower else "<") + ("=" if bound.inclusive else "")
    if source.value_column is None:
        return (
            (f" AND {source.id_column} {op} ?", [bound.eid]) if bound.eid is not None else ("", [])
        )
    if bound.eid is None:
        return f" AND {source.value_column} {op} ?", [bound.value]
    return (
        f" AND ({source.value_column}, {source.id_column}) {op} (?, ?)",
        [bound.value, bound.eid],
    )


class OrderWalk:
    """The index ranges of one namespace in one order."""

    def __init__(self, conn: sqlite3.Connection, etype: str, attr: Attr | None) -> None:
        self.conn = conn
        self.by_attr = attr is not None
        join = "CROSS JOIN entities e ON e.etype = ? AND e.id = {alias}.entity"
        self._sources: tuple[_Source, ...]
        if attr is None:
            self._sources = (
                _Source(
                    1,
                    "SELECT e.id, e.created_tx, e.created_tx{pred} "
                    "FROM entities e INDEXED BY entities_by_creation WHERE e.etype = ?",
                    (etype,),
                    "e.created_tx",
                    "e.id",
                ),
            )
            return
        if attr.checked_type == "date":
            column, index = "vdate", "triples_by_date_order"
        else:
            column, index = "vkey", "triples_by_value"
        self._sources = (
            # The null group: JSON nulls, then entities the triples cannot show.
            _Source(
                0,
                "SELECT t.entity, e.created_tx, NULL{pred} FROM triples t INDEXED BY "
                f"triples_by_value {join.format(alias='t')} "
                "WHERE t.attr = ? AND t.vkey IS NULL",
                (etype, attr.id),
                None,
                "t.entity",
            ),
            _Source(
                0,
                "SELECT g.entity, e.created_tx, NULL{pred} FROM order_gaps g "
                f"{join.format(alias='g')} WHERE g.attr = ?",
                (etype, attr.id),
                None,
                "g.entity",
            ),
            _Source(
                1,
                f"SELECT t.entity, e.created_tx, t.{column}{{pred}} FROM triples t INDEXED BY "
                f"{index} {join.format(alias='t')} "
                f"WHERE t.attr = ? AND t.{column} IS NOT NULL",
                (etype, attr.id),
                f"t.{column}",
                "t.entity",
            ),
        )

    def _rows(
        self,
        source: _Source,
        descending: bool,
        lower: Sequence[Bound],
        upper: Sequence[Bound],
        predicate: Predicate | None,
        cursors: list[sqlite3.Cursor],
    ) -> Iterator[tuple[Any, ...]]:
        pred_sql = f", ({predicate.sql})" if predicate is not None else ""
        sql = source.select.format(pred=pred_sql)
        params: list[Any] = [*(predicate.params if predicate is not None else ()), *source.params]
        ends = [(bound, True) for bound in lower] + [(bound, False) for bound in upper]
        for bound, is_lower in ends:
            condition = _bound_sql(source, bound, is_lower)
            if condition is None:
                return
            sql += condition[0]
            params += condition[1]
        direction = "DESC" if descending else "ASC"
        if source.value_column is not None:
            sql += f" ORDER BY {source.value_column} {direction}, {source.id_column} {direction}"
        else:
            sql += f" ORDER BY {source.id_column} {direction}"
        cursor = self.conn.execute(sql, params)
        cursors.append(cursor)
        yield from cursor

    def _candidates(
        self,
        descending: bool,
        lower: Sequence[Bound],
        upper: Sequence[Bound],
        predicate: Predicate | None,
        cursors: list[sqlite3.Cursor],
    ) -> Iterator[tuple[Any, ...]]:
        """Every row in the range, in walk order (lazily: each range opens on demand)."""
        groups: dict[int, list[_Source]] = {}
        for source in self._sources:
            groups.setdefault(source.group, []).append(source)
        for group in sorted(groups, reverse=descending):
            streams = [
                self._rows(source, descending, lower, upper, predicate, cursors)
                for source in groups[group]
            ]
            if len(streams) == 1:
                yield from streams[0]
            else:
                # Null-group ranges are each in id order; ids never repeat across them.
                yield from heapq.merge(*streams, key=lambda row: row[0], reverse=descending)

    def walk(
        self,
        *,
        descending: bool,
        lower: Sequence[Bound] = (),
        upper: Sequence[Bound] = (),
        predicate: Predicate | None = None,
        need: int | None = None,
        budget: int | None = None,
    ) -> tuple[list[Row], bool]:
        """Up to ``need`` matching rows in walk order, and whether the walk finished.

        It finishes when it has ``need`` rows or the range is exhausted; it gives up
        (``False``) once it has tested more than ``budget`` rows without finishing.
        """
        found: list[Row] = []
        if need is not None and need <= 0:
            return found, True
        cursors: list[sqlite3.Cursor] = []
        tested = 0
        try:
            for row in self._candidates(descending, lower, upper, predicate, cursors):
                if budget is not None and tested >= budget:
                    return found, False
                tested += 1
                if predicate is None or row[3]:
                    found.append((row[0], row[1], row[2]))
                    if need is not None and len(found) >= need:
                        return found, True
            return found, True
        finally:
            for cursor in cursors:
                cursor.close()
