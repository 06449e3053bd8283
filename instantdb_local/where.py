"""InstaQL ``where`` clauses -> a set expression of entity ids, rendered as SQL.

Each condition becomes a set of the root namespace's entity ids; ``and`` intersects,
``or`` unions, negations subtract from the namespace. Dotted paths are walked backwards
from the last attribute through each link, in whichever direction the label names, so
every step is an index lookup on ``(attr, vkey)`` or ``(entity, attr)``. Matching is
existential: one linked entity that matches is enough, as in Instant.

The compiled expression renders two ways with the same meaning:

- as a set (``SELECT ... AS id``), to drive a query from the matching ids;
- as a predicate on one id column (``EXISTS ...``), to test rows an ordered index walk
  produces one at a time, which is what lets an ordered, limited query stop early.

Validation raises the real server's messages; a label that does not exist anywhere on
the path makes the whole namespace empty (``Compiled.unknown``), as the real server's
guarded where-query does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import values
from .attrs import Attr, Catalog, Link
from .errors import ServerError, validation_failed
from .ids import is_uuid

# Given an etype, the ids the caller may not see (non-admin queries), or None.
HiddenIds = Callable[[str, Link], "frozenset[str] | None"]

_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = ("$in", "$not", "$ne", "$isNull", "$like", "$ilike", *_COMPARISONS)


# -- the set expression -----------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """``SELECT column AS id FROM table WHERE conditions``.

    ``conditions`` names the table's columns as ``{p}attr`` so the same text serves
    the set form (no prefix) and the predicate form (an alias prefix).
    """

    table: str  # "triples" | "entities"
    column: str  # "entity" | "vkey" | "id"
    conditions: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Hop:
    """Ids on the near side of a link whose far side is in ``inner``."""

    attr_id: str
    forward: bool  # near side is the link's forward (stored ``entity``) side
    inner: Expr


@dataclass(frozen=True)
class Without:
    """``inner`` minus ids the viewer may not see."""

    inner: Expr
    hidden_json: str


@dataclass(frozen=True)
class Combine:
    operator: str  # "UNION" | "INTERSECT" | "EXCEPT" (left-associative)
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Nothing:
    """The empty set."""


Expr = Rows | Hop | Without | Combine | Nothing

NOTHING = Nothing()


def _all(etype: str) -> Rows:
    return Rows("entities", "id", "{p}etype = ?", (etype,))


def _combine(operator: str, parts: list[Expr]) -> Expr:
    if len(parts) == 1:
        return parts[0]
    return Combine(operator, tuple(parts))


def render_set(expr: Expr) -> tuple[str, list[Any]]:
    """The expression as ``SELECT ... AS id`` SQL and its parameters."""
    params: list[Any] = []
    return _set_sql(expr, params), params


def _set_sql(expr: Expr, params: list[Any]) -> str:
    if isinstance(expr, Rows):
        params.extend(expr.params)
        conditions = expr.conditions.format(p="")
        return f"SELECT {expr.column} AS id FROM {expr.table} WHERE {conditions}"
    if isinstance(expr, Hop):
        params.append(expr.attr_id)
        inner = _set_sql(expr.inner, params)
        near, far = ("entity", "vkey") if expr.forward else ("vkey", "entity")
        return (
            f"SELECT {near} AS id FROM triples WHERE attr = ? AND {far} IN "
            f"(SELECT id FROM ({inner}))"
        )
    if isinstance(expr, Without):
        inner = _set_sql(expr.inner, params)
        params.append(expr.hidden_json)
        return f"SELECT id FROM ({inner}) WHERE id NOT IN (SELECT value FROM json_each(?))"
    if isinstance(expr, Combine):
        return f" {expr.operator} ".join(
            f"SELECT id FROM ({_set_sql(part, params)})" for part in expr.parts
        )
    return "SELECT NULL AS id WHERE 0"


def render_predicate(expr: Expr, column: str) -> tuple[str, list[Any]]:
    """The expression as a boolean SQL test of ``column`` (an id) and its parameters.

    ``column`` belongs to the enclosing query; every lookup is a correlated index probe
    (``(entity, attr)`` or ``(attr, vkey)``), so testing one row costs a few probes
    whatever the size of the matching set.
    """
    params: list[Any] = []
    aliases = (f"w{n}" for n in itertools.count())
    return _predicate_sql(expr, column, params, aliases), params


# A probe by the id column: which index answers it without scanning.
_PROBE_INDEX = {
    ("triples", "entity"): " INDEXED BY triples_by_entity",
    ("triples", "vkey"): " INDEXED BY triples_by_value",
    ("entities", "id"): "",
}


def _predicate_sql(expr: Expr, column: str, params: list[Any], aliases: Any) -> str:
    if isinstance(expr, Rows):
        alias = next(aliases)
        params.extend(expr.params)
        hint = _PROBE_INDEX[(expr.table, expr.column)]
        conditions = expr.conditions.format(p=f"{alias}.")
        return (
            f"EXISTS (SELECT 1 FROM {expr.table} {alias}{hint} "
            f"WHERE {conditions} AND {alias}.{expr.column} = {column})"
        )
    if isinstance(expr, Hop):
        alias = next(aliases)
        params.append(expr.attr_id)
        near, far = ("entity", "vkey") if expr.forward else ("vkey", "entity")
        hint = _PROBE_INDEX[("triples", near)]
        inner = _predicate_sql(expr.inner, f"{alias}.{far}", params, aliases)
        return (
            f"EXISTS (SELECT 1 FROM triples {alias}{hint} WHERE {alias}.attr = ? "
            f"AND {alias}.{near} = {column} AND {inner})"
        )
    if isinstance(expr, Without):
        params.append(expr.hidden_json)
        inner = _predicate_sql(expr.inner, column, params, aliases)
        return f"({column} NOT IN (SELECT value FROM json_each(?)) AND {inner})"
    if isinstance(expr, Combine):
        rendered = [_predicate_sql(part, column, params, aliases) for part in expr.parts]
        if expr.operator == "UNION":
            return "(" + " OR ".join(rendered) + ")"
        if expr.operator == "INTERSECT":
            return "(" + " AND ".join(rendered) + ")"
        return "(" + " AND NOT ".join(rendered) + ")"
    return "0"


@dataclass
class Compiled:
    """The ids of the root namespace matching a where clause."""

    expr: Expr
    unknown: bool  # an unknown attribute or link: the result is empty
    sql: str = field(init=False)
    params: list[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.sql, self.params = render_set(self.expr)

    def predicate(self, column: str) -> tuple[str, list[Any]]:
        return render_predicate(self.expr, column)


def query_error(message: str, where: Any) -> ServerError:
    return validation_failed("query", where, [{"message": message}])


def _render(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Unknown(Exception):
    """An unknown label: the namespace's result is empty."""


@dataclass
class _Path:
    hops: list[Link]  # links from the root to the etype that holds the last segment
    etype: str  # the etype holding the last segment
    last: str
    attr: Attr | None  # the blob attribute compared, when the last segment is one
    link: Link | None  # when the last segment is a link label
    is_id: bool


class WhereCompiler:
    def __init__(
        self, catalog: Catalog, etype: str, where: Any, hidden: HiddenIds | None = None
    ) -> None:
        self.catalog = catalog
        self.etype = etype
        self.where = where
        self.hidden = hidden
        self.unknown = False

    def compile(self) -> Compiled:
        expr = self._map(self.where)
        return Compiled(expr, self.unknown)

    # -- structure -------------------------------------------------------------------

    def _map(self, where: Any) -> Expr:
        if not isinstance(where, Mapping):
            raise query_error("The `where` clause must be a map.", self.where)
        parts: list[Expr] = []
        for key, value in where.items():
            if key in ("or", "and"):
                parts.append(self._combinator(key, value))
            else:
                parts.append(self._condition(str(key), value))
        if not parts:
            return _all(self.etype)
        return _combine("INTERSECT", parts)

    def _combinator(self, key: str, value: Any) -> Expr:
        if not isinstance(value, list):
            raise query_error(f"The `{key}` clause must be a list of conditions.", self.where)
        if not value:
            raise query_error(f"The list of `{key}` conditions can't be empty.", self.where)
        return _combine("UNION" if key == "or" else "INTERSECT", [self._map(v) for v in value])

    def _condition(self, key: str, value: Any) -> Expr:
        try:
            path = self._resolve(key)
        except _Unknown:
            # Keep validating the value's shape, then empty the namespace.
            self.unknown = True
            self._check_operator_shape(key, value)
            return NOTHING
        if isinstance(value, Mapping):
            self._check_operator_shape(key, value)
            ranges = {op: arg for op, arg in value.items() if op in _COMPARISONS}
            parts = [
                self._operator(path, key, op, arg)
                for op, arg in value.items()
                if op not in _COMPARISONS
            ]
            if ranges:
                # Bounds on one attribute form one index range scan, not an intersection.
                parts.append(self._compare(path, key, ranges))
            return _combine("INTERSECT", parts)
        return self._equals(path, key, value)

    def _check_operator_shape(self, key: str, value: Any) -> None:
        if value is None:
            raise query_error(
                f"The `where` value for `{key}` can't be null. Use `$isNull` instead.", self.where
            )
        if isinstance(value, Mapping):
            if not value:
                raise query_error(f"The `where` value for `{key}` is an empty map.", self.where)
            for op in value:
                if op not in _OPERATORS:
                    raise query_error(
                        f"Unsupported operator `{op}` in the `where` clause for `{key}`.",
                        self.where,
                    )
        elif isinstance(value, list):
            raise query_error(
                f"The `where` value for `{key}` must be a string, number, boolean or operator "
                f"map. Got {_render(value)}.",
                self.where,
            )

    # -- paths -------------------------------------------------------------------------

    def _resolve(self, key: str) -> _Path:
        segments = key.split(".")
        etype = self.etype
        hops: list[Link] = []
        for segment in segments[:-1]:
            link = self.catalog.link(etype, segment)
            if link is None:
                raise _Unknown
            hops.append(link)
            etype = link.target_etype
        last = segments[-1]
        if last == "id":
            if not self.catalog.has_etype(etype):
                raise _Unknown
            return _Path(hops, etype, last, None, None, True)
        link = self.catalog.link(etype, last)
        if link is not None:
            return _Path(hops, etype, last, None, link, False)
        attr = self.catalog.forward(etype, last)
        if attr is None:
            raise _Unknown
        return _Path(hops, etype, last, attr, None, False)

    def _through_hops(self, path: _Path, final: Expr) -> Expr:
        """Map a set of ids of the path's last etype back to ids of the root etype."""
        current = final
        for link in reversed(path.hops):
            current = Hop(link.attr.id, link.forward, self._without_hidden(link, current))
        return current

    def _without_hidden(self, link: Link, ids: Expr) -> Expr:
        if self.hidden is None:
            return ids
        hidden = self.hidden(link.target_etype, link)
        if not hidden:
            return ids
        return Without(ids, json.dumps(sorted(hidden)))

    # -- leaves ------------------------------------------------------------------------

    def _not_null(self, path: _Path) -> Expr:
        """Root ids with a non-null value at the end of the path."""
        final: Expr
        if path.is_id:
            final = _all(path.etype)
        elif path.link is not None:
            final = self._link_ids(path.link, None)
        else:
            assert path.attr is not None
            final = Rows(
                "triples", "entity", "{p}attr = ? AND {p}vtype != ?", (path.attr.id, values.NULL)
            )
        return self._through_hops(path, final)

    def _is_null(self, path: _Path) -> Expr:
        # Missing values, null values and missing hops all count as null.
        return _combine("EXCEPT", [_all(self.etype), self._not_null(path)])

    def _link_ids(self, link: Link, target: str | None) -> Expr:
        """Ids of the link's own side that link to ``target`` (any target when None)."""
        column, other = ("entity", "vkey") if link.forward else ("vkey", "entity")
        if target is None:
            return Rows("triples", column, "{p}attr = ?", (link.attr.id,))
        return Rows(
            "triples", column, f"{{p}}attr = ? AND {{p}}{other} = ?", (link.attr.id, target)
        )

    def _check_uuid(self, path: _Path, key: str, value: Any) -> str:
        if not is_uuid(value):
            raise query_error(
                f"Expected {path.last} to be a uuid, got {_render(value)}", self.where
            )
        return str(value).lower()

    def _equals_final(self, path: _Path, key: str, value: Any) -> Expr:
        """Ids of the last etype whose value at the last segment equals ``value``."""
        if path.is_id:
            eid = self._check_uuid(path, key, value)
            return Rows("entities", "id", "{p}etype = ? AND {p}id = ?", (path.etype, eid))
        if path.link is not None:
            return self._link_ids(path.link, self._check_uuid(path, key, value))
        attr = path.attr
        assert attr is not None
        if value is None:
            raise query_error(
                f"The `where` value for `{key}` can't be null. Use `$isNull` instead.", self.where
            )
        self._check_type(attr, value, plain_equality=True)
        if attr.checked_type == "date" and attr.indexed:
            return Rows(
                "triples",
                "entity",
                "{p}attr = ? AND {p}vdate = ?",
                (attr.id, values.parse_date_ms(value)),
            )
        vtype, vkey = values.key_of(value)
        return Rows(
            "triples",
            "entity",
            "{p}attr = ? AND {p}vkey = ? AND {p}vtype = ?",
            (attr.id, vkey, vtype),
        )

    def _equals(self, path: _Path, key: str, value: Any) -> Expr:
        self._check_operator_shape(key, value)
        return self._through_hops(path, self._equals_final(path, key, value))

    def _operator(self, path: _Path, key: str, op: str, arg: Any) -> Expr:
        if op == "$isNull":
            if not isinstance(arg, bool):
                raise query_error(
                    f"The `$isNull` value for `{key}` must be a boolean. Got {_render(arg)}.",
                    self.where,
                )
            return self._is_null(path) if arg else self._not_null(path)
        if op in ("$not", "$ne"):
            return self._not_equal(path, key, arg)
        if op == "$in":
            return self._in(path, key, arg)
        if op in ("$like", "$ilike"):
            return self._like(path, key, op, arg)
        return self._compare(path, key, {op: arg})

    def _in(self, path: _Path, key: str, arg: Any) -> Expr:
        if not isinstance(arg, list):
            raise query_error(f"The `$in` value for `{key}` must be a list.", self.where)
        parts: list[Expr] = []
        for item in arg:
            if item is None:
                if path.attr is None or not path.attr.indexed:
                    name = f"{path.etype}.{path.last}"
                    raise query_error(
                        f"Only indexed attrs can check for `nil` in `$in`. {name} is not indexed.",
                        self.where,
                    )
                parts.append(self._is_null(path))
            else:
                parts.append(self._through_hops(path, self._equals_final(path, key, item)))
        if not parts:
            return NOTHING
        return _combine("UNION", parts)

    def _not_equal(self, path: _Path, key: str, arg: Any) -> Expr:
        if arg is None:
            raise query_error(
                f"The `$not` value for `{key}` can't be null. Use `$isNull` instead.", self.where
            )
        equal = self._equals_final(path, key, arg)
        everything: Expr
        if path.is_id:
            everything = _all(path.etype)
        elif path.link is not None:
            everything = self._link_ids(path.link, None)
        else:
            assert path.attr is not None
            everything = Rows(
                "triples", "entity", "{p}attr = ? AND {p}vtype != ?", (path.attr.id, values.NULL)
            )
        # A value that differs, or no value at all (the server's isNull branch).
        differs = self._through_hops(path, _combine("EXCEPT", [everything, equal]))
        return _combine("UNION", [differs, self._is_null(path)])

    def _require_indexed_typed(self, path: _Path, what: str) -> Attr:
        attr = path.attr
        name = f"{path.etype}.{path.last}"
        if attr is None:
            raise query_error(f"The `{name}` attribute can't be used with {what}.", self.where)
        if not attr.indexed:
            raise query_error(f"The `{name}` attribute must be indexed to use {what}.", self.where)
        if attr.checked_type is None:
            raise query_error(
                f"The `{name}` attribute must have an enforced type to use {what}.", self.where
            )
        return attr

    def _compare(self, path: _Path, key: str, bounds: Mapping[str, Any]) -> Expr:
        attr = self._require_indexed_typed(path, "comparison operators")
        is_date = attr.checked_type == "date"
        conditions = "{p}attr = ?"
        params: list[Any] = [attr.id]
        for op, arg in bounds.items():
            self._check_type(attr, arg, plain_equality=False)
            if is_date:
                conditions += f" AND {{p}}vdate {_COMPARISONS[op]} ?"
                params.append(values.parse_date_ms(arg, allow_words=True))
            else:
                vtype, vkey = values.key_of(arg)
                conditions += f" AND {{p}}vtype = ? AND {{p}}vkey {_COMPARISONS[op]} ?"
                params += [vtype, vkey]
        return self._through_hops(path, Rows("triples", "entity", conditions, tuple(params)))

    def _like(self, path: _Path, key: str, op: str, arg: Any) -> Expr:
        name = f"{path.etype}.{path.last}"
        if not isinstance(arg, str):
            raise query_error(
                f"The {op} value for `{name}` must be a string, but the query got the value "
                f"`{_render(arg)}` of type `{values.json_type(arg)}`.",
                self.where,
            )
        attr = self._require_indexed_typed(path, op)
        if attr.checked_type != "string":
            raise query_error(
                f"The `{name}` attribute must have type `string` to use {op}.", self.where
            )
        final = Rows(
            "triples",
            "entity",
            "{p}attr = ? AND {p}vtype = ? AND instant_like({p}vkey, ?, ?)",
            (attr.id, values.STRING, arg, int(op == "$ilike")),
        )
        return self._through_hops(path, final)

    def _check_type(self, attr: Attr, value: Any, *, plain_equality: bool) -> None:
        checked = attr.checked_type
        if checked is None:
            return
        if checked == "date":
            words_ok = not plain_equality
            if values.is_date_word(value) and not words_ok:
                ok = False
            else:
                ok = values.parse_date_ms(value, allow_words=words_ok) is not None
            if not ok:
                raise query_error(
                    f"The data type of `{attr.display}` is `date`, but the query got value "
                    f"`{_render(value)}` of type `{values.json_type(value)}`.",
                    self.where,
                )
            return
        if not values.matches_checked_type(checked, value):
            raise query_error(
                f"The data type of `{attr.display}` is `{checked}`, but the query got the value "
                f"`{_render(value)}` of type `{values.json_type(value)}`.",
                self.where,
            )


def compile_where(
    catalog: Catalog, etype: str, where: Any, hidden: HiddenIds | None = None
) -> Compiled:
    return WhereCompiler(catalog, etype, where, hidden).compile()
