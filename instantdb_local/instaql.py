"""InstaQL: validate a query, run each namespace in SQL, build the result tree.

Top-level namespaces are filtered, ordered and paginated in SQL; only the final page's
entities are read. Nested links are fetched one query per level for all parents at
once, filtered by their own ``where`` in SQL and sorted in memory (the real server
sorts nested arrays in memory too, and ignores a nested ``limit``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import entities, values
from .attrs import Attr, Catalog, Link
from .entities import IDS, id_list
from .errors import ServerError, param_malformed, validation_failed
from .ordered_walk import Bound, OrderWalk, Predicate, Row, row_key
from .where import Compiled, HiddenIds, compile_where, query_error

FileUrl = Callable[[str, dict[str, Any]], str]

_ALLOWED_OPTIONS = frozenset(
    {
        "where",
        "order",
        "limit",
        "first",
        "last",
        "offset",
        "before",
        "after",
        "beforeInclusive",
        "afterInclusive",
        "aggregate",
        "fields",
    }
)
_TOP_LEVEL_ONLY = ("offset", "before", "after")
_PAGINATION = ("limit", "first", "last", "offset", "before", "after")
RULE_PARAMS_KEY = "$$ruleParams"
_RANGE_OPERATORS = ("$gt", "$gte", "$lt", "$lte")
_EMPTY_PAGE_INFO: dict[str, Any] = {
    "start-cursor": None,
    "end-cursor": None,
    "has-next-page?": False,
    "has-previous-page?": False,
}


@dataclass(frozen=True)
class WalkPolicy:
    """When a filtered, limited query walks its order index instead of sorting matches.

    Up to ``small_match_set`` matches are read and sorted (cheap, and a walk would test
    many rows to find so few). Past that the walk tests rows in order and gives up after
    ``budget_base + budget_per_row * (offset + limit)`` of them, falling back to the
    sort, so a filter whose matches all sit at the far end costs a bounded extra.
    """

    # Sorting costs about 2-4 us a match and testing a walked row about 1-2 us, so a
    # walk that gives up has cost about what sorting the smallest set it walks for does.
    small_match_set: int = 250
    budget_base: int = 1000
    budget_per_row: int = 8

    def budget(self, need: int) -> int:
        return self.budget_base + self.budget_per_row * need


DEFAULT_WALK_POLICY = WalkPolicy()


def default_file_url(location_id: str, record: dict[str, Any]) -> str:
    return f"/storage/files/{location_id}"


class QueryAccess(Protocol):
    """Permission hooks a non-admin query runs through (see `access.QueryRules`)."""

    def visible(self, etype: str, records: dict[str, dict[str, Any]]) -> set[str]: ...

    def fields(self, etype: str, record: dict[str, Any]) -> dict[str, Any]: ...

    def hidden_ids(self, etype: str, link: Link) -> frozenset[str] | None: ...


@dataclass
class Node:
    """One validated (sub)query: its options and child links."""

    etype: str
    where: Any = None
    order_field: str = "serverCreatedAt"
    order_desc: bool = False
    limit: int | None = None
    last: int | None = None
    offset: int = 0
    before: list[Any] | None = None
    after: list[Any] | None = None
    before_inclusive: bool = False
    after_inclusive: bool = False
    aggregate: str | None = None
    fields: list[str] | None = None
    children: dict[str, Node] = field(default_factory=dict)
    raw: Any = None
    # The where clause compiled for an admin run against one catalog snapshot, so a
    # cached query (see `AppEngine`) skips recompiling it.
    compiled_for: tuple[Catalog, Compiled] | None = field(default=None, repr=False, compare=False)

    @property
    def paginated(self) -> bool:
        return (
            self.limit is not None
            or self.last is not None
            or self.before is not None
            or self.after is not None
            or bool(self.offset)
        )


# -- validation --------------------------------------------------------------------------


# The real server reads these as Java longs; a larger number fails its spec, and here
# it would overflow SQLite's integers.
_MAX_LONG = 2**63 - 1


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_LONG


def _cursor_parts_ok(cursor: list[Any]) -> bool:
    # [entity id, attr id, value, created tx]: the ids are strings and the tx a long, or
    # the cursor cannot have come from page-info (and would not bind as SQL parameters).
    eid, attr_id, _value, created = cursor
    created_ok = isinstance(created, int) and not isinstance(created, bool)
    return (
        isinstance(eid, str)
        and isinstance(attr_id, str)
        and created_ok
        and -_MAX_LONG - 1 <= created <= _MAX_LONG
    )


def parse_query(query: Any, *, is_admin: bool) -> tuple[dict[str, Node], dict[str, Any]]:
    """Validate a whole query; returns its namespaces and the ``$$ruleParams``."""
    if not isinstance(query, Mapping):
        raise param_malformed(["body", "query"], query)
    rule_params = query.get(RULE_PARAMS_KEY) or {}
    if not isinstance(rule_params, Mapping):
        raise validation_failed(
            "query", query, [{"message": "`$$ruleParams` must be a map.", "in": [RULE_PARAMS_KEY]}]
        )
    nodes: dict[str, Node] = {}
    for etype, sub in query.items():
        if etype == RULE_PARAMS_KEY:
            continue
        nodes[str(etype)] = _parse_node(str(etype), sub, query, top=True, is_admin=is_admin)
    return nodes, dict(rule_params)


def _parse_node(etype: str, sub: Any, query: Any, *, top: bool, is_admin: bool) -> Node:
    if not isinstance(sub, Mapping):
        raise validation_failed("query", query, [{"expected": "map?", "in": [etype]}])
    node = Node(etype=etype, raw=sub)
    options = sub.get("$", {})
    if not isinstance(options, Mapping):
        raise validation_failed("query", query, [{"expected": "map?", "in": [etype, "$"]}])
    unknown = [k for k in options if k not in _ALLOWED_OPTIONS]
    if unknown:
        raise query_error(
            "We only support `where`, `order`, `limit`, `offset`, `before`, and `after` clauses.",
            query,
        )
    if not top and any(k in options for k in _TOP_LEVEL_ONLY):
        raise query_error(
            "We currently only support `offset`, `before`, and `after` clauses on the "
            "top-level field.",
            query,
        )
    counts = [k for k in ("limit", "first", "last") if k in options]
    if len(counts) > 1:
        raise query_error(f"Only provide one of `{counts[0]}` or `{counts[1]}`.", query)
    for key in counts:
        if not _positive_int(options[key]):
            raise query_error(
                f"The {key} field must be a positive integer. Got {json.dumps(options[key])}.",
                query,
            )
    if top:
        if "last" in options:
            node.last = options["last"]
        elif counts:
            node.limit = options[counts[0]]
    if "offset" in options:
        offset = options["offset"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= _MAX_LONG:
            raise query_error(
                f"The offset field must be a non-negative integer. Got {json.dumps(offset)}.",
                query,
            )
        node.offset = offset
    for key in ("before", "after"):
        if key in options:
            cursor = options[key]
            if not (isinstance(cursor, list) and len(cursor) == 4 and _cursor_parts_ok(cursor)):
                raise query_error(f"Invalid {key} cursor: expected a cursor from page-info.", query)
            setattr(node, key, cursor)
        inclusive = f"{key}Inclusive"
        if inclusive in options:
            if not isinstance(options[inclusive], bool):
                raise query_error(f"The `{inclusive}` field must be a boolean.", query)
            setattr(node, f"{key}_inclusive", options[inclusive])
    if "order" in options:
        order = options["order"]
        if not isinstance(order, Mapping) or len(order) != 1:
            raise query_error("The `order` clause must be a map with exactly one field.", query)
        ((order_field, direction),) = order.items()
        if direction not in ("asc", "desc"):
            raise query_error(
                'We only support "asc" or "desc" in the `order` clause. '
                f"Got {json.dumps(direction)}.",
                query,
            )
        node.order_field = str(order_field)
        node.order_desc = direction == "desc"
    if "fields" in options:
        fields = options["fields"]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise query_error("The `fields` property should be an array of field names.", query)
        node.fields = list(fields)
    if "aggregate" in options:
        if options["aggregate"] != "count":
            raise query_error("The only supported aggregate is `count`.", query)
        if not is_admin:
            raise query_error("Aggregates are currently only available for admin queries.", query)
        if any(k != "$" for k in sub):
            raise query_error("Aggregates can't be combined with nested queries.", query)
        node.aggregate = "count"
    node.where = options.get("where")
    for label, child in sub.items():
        if label == "$":
            continue
        node.children[str(label)] = _parse_node(
            str(label), child, query, top=False, is_admin=is_admin
        )
    return node


# -- execution --------------------------------------------------------------------------


@dataclass
class QueryRun:
    conn: sqlite3.Connection
    catalog: Catalog
    inference: bool = False
    access: QueryAccess | None = None
    file_url: FileUrl = default_file_url
    walk_policy: WalkPolicy = field(default_factory=lambda: DEFAULT_WALK_POLICY)

    def run(self, nodes: Mapping[str, Node]) -> tuple[dict[str, Any], dict[str, Any]]:
        result: dict[str, Any] = {}
        page_info: dict[str, Any] = {}
        aggregate: dict[str, Any] = {}
        for name, node in nodes.items():
            self._check_children(node)
            rows, info, count = self._top_level(node)
            result[name] = rows
            if info is not None:
                page_info[name] = info
            if count is not None:
                aggregate[name] = {"count": count}
        return result, {"page-info": page_info, "aggregate": aggregate}

    def _check_children(self, node: Node) -> None:
        """A child key naming a plain attribute is an error (an unknown one is not)."""
        for label, child in node.children.items():
            if self.catalog.link(node.etype, label) is None:
                attr = self.catalog.forward(node.etype, label)
                if attr is not None:
                    raise query_error(
                        f"{node.etype}.{label} needs to be a link", {node.etype: node.raw}
                    )
            else:
                link = self.catalog.link(node.etype, label)
                assert link is not None
                child.etype = link.target_etype
                self._check_children(child)

    def _hidden(self) -> HiddenIds | None:
        return self.access.hidden_ids if self.access is not None else None

    def _compile(self, node: Node, etype: str) -> Compiled:
        """The node's where clause compiled; reused across admin runs on one catalog
        (a non-admin compilation depends on what the viewer may see, so never kept)."""
        if self.access is not None:
            return compile_where(self.catalog, etype, node.where, self._hidden())
        kept = node.compiled_for
        if kept is not None and kept[0] is self.catalog:
            return kept[1]
        compiled = compile_where(self.catalog, etype, node.where, None)
        node.compiled_for = (self.catalog, compiled)
        return compiled

    # -- top level -------------------------------------------------------------------

    def _order_attr(self, node: Node) -> Attr | None:
        if node.order_field == "serverCreatedAt":
            return None
        attr = self.catalog.forward(node.etype, node.order_field)
        name = f"{node.etype}.{node.order_field}"
        if attr is None:
            raise query_error(
                f"There is no `{node.order_field}` attribute for {node.etype}.", node.raw
            )
        if not attr.indexed:
            raise query_error(
                f"The `{name}` attribute is not indexed. Only indexed and typed attributes can "
                "be used to order by.",
                node.raw,
            )
        if attr.checked_type is None or attr.is_ref:
            raise query_error(
                f"The `{name}` attribute is not typed. Only typed and indexed attributes can be "
                "used to order by.",
                node.raw,
            )
        if attr.cardinality != "one":
            raise query_error(
                f"The `{name}` attribute has cardinality many. Only attributes with cardinality "
                "one can be used to order by.",
                node.raw,
            )
        return attr

    def _top_level(self, node: Node) -> tuple[list[Any], dict[str, Any] | None, int | None]:
        order_attr = self._order_attr(node)
        id_attr = self.catalog.id_attr(node.etype)
        empty_info = _EMPTY_PAGE_INFO if node.paginated else None
        if id_attr is None:
            return [], empty_info, 0 if node.aggregate else None
        compiled = None
        if node.where is not None:
            compiled = self._compile(node, node.etype)
            if compiled.unknown:
                return [], empty_info, 0 if node.aggregate else None
        bounds = self._walk_bounds(node, order_attr, id_attr)
        planned = self._walk_plan(node, order_attr, id_attr, compiled, bounds)
        if planned is None:
            planned = self._sorted_plan(node, order_attr, id_attr, compiled)
        rows, info = planned
        count: int | None = None
        if node.aggregate:
            _sort_sql, base_from, base_params = self._base(node, order_attr, compiled)
            count = int(
                self.conn.execute(f"SELECT count(*) {base_from}", base_params).fetchone()[0]
            )
        return self._materialize(node, [row[0] for row in rows]), info, count

    # -- the walk plan: read the order index until the page is full -------------------

    def _walk_bounds(
        self, node: Node, order_attr: Attr | None, id_attr: Attr
    ) -> tuple[list[Bound], list[Bound]]:
        """The cursors as the walked range's ends (ascending key space); checks them."""
        lower: list[Bound] = []
        upper: list[Bound] = []
        expected = (order_attr or id_attr).id
        for key, cursor, inclusive in (
            ("after", node.after, node.after_inclusive),
            ("before", node.before, node.before_inclusive),
        ):
            if cursor is None:
                continue
            if cursor[1] != expected:
                raise query_error(
                    f"Invalid {key} cursor. The query orders by `{node.order_field}`, but the "
                    "cursor was made for a different order.",
                    node.raw,
                )
            value, eid = self._cursor_key(order_attr, cursor)
            group = 0 if order_attr is not None and value is None else 1
            bound = Bound(group, value, eid, inclusive)
            if (key == "after") != node.order_desc:
                lower.append(bound)
            else:
                upper.append(bound)
        return lower, upper

    @staticmethod
    def _where_bounds(node: Node, order_attr: Attr | None) -> tuple[list[Bound], list[Bound]]:
        """Comparisons the ``where`` makes on the order attribute itself, as walk bounds.

        Only a necessary condition (the walk still tests the whole ``where``), so a
        filter like ``{"n": {"$gte": 100}}`` ordered by ``n`` starts at 100 instead of
        testing every smaller value and every null first. Call after `compile_where`,
        which has validated the values.
        """
        lower: list[Bound] = []
        upper: list[Bound] = []
        if order_attr is None or not isinstance(node.where, Mapping):
            return lower, upper
        condition = node.where.get(order_attr.label)
        if not isinstance(condition, Mapping):
            return lower, upper
        for op, arg in condition.items():
            if op not in _RANGE_OPERATORS:
                continue
            if order_attr.checked_type == "date":
                key = values.parse_date_ms(arg, allow_words=True)
            else:
                key = values.key_of(arg)[1]
            inclusive = op.endswith("e")
            (lower if op.startswith("$g") else upper).append(Bound(1, key, None, inclusive))
            # No null or missing value satisfies a comparison.
            lower.append(Bound(1, whole_group=True))
        return lower, upper

    def _walk_plan(
        self,
        node: Node,
        order_attr: Attr | None,
        id_attr: Attr,
        compiled: Compiled | None,
        bounds: tuple[list[Bound], list[Bound]],
    ) -> tuple[list[Row], dict[str, Any] | None] | None:
        """Rows and page info from an ordered index walk, or None to sort instead.

        Without ``where`` every row of the walk matches. With one, the walk tests each
        row against the where predicate; it is only worth it when matches are many
        (few matches sort cheaply) and gives up after a budget of tested rows, since
        matches may all sit at the far end of the order.
        """
        take = node.last if node.last is not None else node.limit
        need = None if take is None else node.offset + take
        predicate: Predicate | None = None
        budget: int | None = None
        necessary: tuple[list[Bound], list[Bound]] = ([], [])
        if compiled is not None:
            policy = self.walk_policy
            if need is None or self._matches_at_most(compiled, policy.small_match_set):
                return None
            sql, params = compiled.predicate("e.id")
            predicate = Predicate(sql, tuple(params))
            budget = policy.budget(need)
            necessary = self._where_bounds(node, order_attr)
        walk = OrderWalk(self.conn, node.etype, order_attr)
        lower, upper = bounds[0] + necessary[0], bounds[1] + necessary[1]
        descending = node.order_desc != (node.last is not None)
        found, finished = walk.walk(
            descending=descending,
            lower=lower,
            upper=upper,
            predicate=predicate,
            need=need,
            budget=budget,
        )
        if not finished:
            return None
        rows = found[node.offset :]
        if node.last is not None:
            rows.reverse()
        if not node.paginated:
            return rows, None
        info = self._walk_page_info(
            node, order_attr, id_attr, rows, walk, predicate, budget, necessary
        )
        return None if info is None else (rows, info)

    def _matches_at_most(self, compiled: Compiled, limit: int) -> bool:
        row = self.conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM ({compiled.sql}) LIMIT ?)",
            [*compiled.params, limit + 1],
        ).fetchone()
        return int(row[0]) <= limit

    def _walk_page_info(
        self,
        node: Node,
        order_attr: Attr | None,
        id_attr: Attr,
        rows: list[Row],
        walk: OrderWalk,
        predicate: Predicate | None,
        budget: int | None,
        necessary: tuple[list[Bound], list[Bound]],
    ) -> dict[str, Any] | None:
        if not rows:
            return dict(_EMPTY_PAGE_INFO)

        def beyond(row: Row, greater: bool) -> bool | None:
            # Any match strictly past the row, whatever the cursors and offset.
            edge = Bound.at(row_key(row, order_attr is not None), inclusive=False)
            found, finished = walk.walk(
                descending=not greater,
                lower=[edge, *necessary[0]] if greater else necessary[0],
                upper=necessary[1] if greater else [edge, *necessary[1]],
                predicate=predicate,
                need=1,
                budget=budget,
            )
            return True if found else (False if finished else None)

        has_next = beyond(rows[-1], not node.order_desc)
        has_previous = beyond(rows[0], node.order_desc)
        if has_next is None or has_previous is None:
            return None
        return self._page_cursors(order_attr, id_attr, rows, has_next, has_previous)

    def _page_cursors(
        self,
        order_attr: Attr | None,
        id_attr: Attr,
        rows: list[Row],
        has_next: bool,
        has_previous: bool,
    ) -> dict[str, Any]:
        attr_id = (order_attr or id_attr).id
        stored: dict[str, Any] = {}
        if order_attr is not None:
            edges = [rows[0][0], rows[-1][0]]
            stored = dict(entities.attr_values(self.conn, order_attr, edges))

        def cursor(row: Row) -> list[Any]:
            value = row[0] if order_attr is None else stored.get(row[0])
            return [row[0], attr_id, value, row[1]]

        return {
            "start-cursor": cursor(rows[0]),
            "end-cursor": cursor(rows[-1]),
            "has-next-page?": has_next,
            "has-previous-page?": has_previous,
        }

    # -- the sorted plan: order every match in SQL -------------------------------------

    def _base(
        self, node: Node, order_attr: Attr | None, compiled: Compiled | None
    ) -> tuple[str, str, list[Any]]:
        """``(sort column, FROM ... WHERE ..., params)`` of the namespace's matching rows."""
        if order_attr is None:
            sort_sql, join_sql, join_params = "e.created_tx", "", []
        else:
            sort_sql = "o.vdate" if order_attr.checked_type == "date" else "o.vkey"
            # Without INDEXED BY, SQLite may pick the covering triples_by_value index on
            # `attr` alone and scan every value of the attribute for each entity, which
            # makes ordering quadratic in the namespace's size.
            join_sql = (
                " LEFT JOIN triples o INDEXED BY triples_by_entity"
                " ON o.entity = e.id AND o.attr = ?"
            )
            join_params = [order_attr.id]
        if compiled is None:
            return (
                sort_sql,
                f"FROM entities e{join_sql} WHERE e.etype = ?",
                [
                    *join_params,
                    node.etype,
                ],
            )
        # Drive the plan from the matching ids (an index lookup) rather than scanning
        # the namespace in creation order and testing each id.
        base_from = (
            f"FROM (SELECT DISTINCT id FROM ({compiled.sql})) w "
            f"CROSS JOIN entities e ON e.etype = ? AND e.id = w.id{join_sql} WHERE 1"
        )
        return sort_sql, base_from, [*compiled.params, node.etype, *join_params]

    def _sorted_plan(
        self, node: Node, order_attr: Attr | None, id_attr: Attr, compiled: Compiled | None
    ) -> tuple[list[Row], dict[str, Any] | None]:
        sort_sql, base_from, base_params = self._base(node, order_attr, compiled)
        cursor_sql, cursor_params = self._cursor_bounds(node, order_attr, sort_sql)
        descending = node.order_desc
        take = node.limit
        if node.last is not None:
            descending = not descending
            take = node.last
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT e.id, e.created_tx, {sort_sql} {base_from}{cursor_sql} "
            f"ORDER BY {sort_sql} {direction}, e.id {direction}"
        )
        params = [*base_params, *cursor_params]
        if take is not None or node.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [take if take is not None else -1, node.offset]
        rows: list[Row] = self.conn.execute(sql, params).fetchall()
        if node.last is not None:
            rows.reverse()
        if not node.paginated:
            return rows, None
        if not rows:
            return rows, dict(_EMPTY_PAGE_INFO)

        def exists_beyond(row: Row, later: bool) -> bool:
            clause, params = _beyond(sort_sql, later, False, row[2], row[0])
            found = self.conn.execute(
                f"SELECT 1 {base_from} AND {clause} LIMIT 1", [*base_params, *params]
            ).fetchone()
            return found is not None

        has_next = exists_beyond(rows[-1], not node.order_desc)
        has_previous = exists_beyond(rows[0], node.order_desc)
        return rows, self._page_cursors(order_attr, id_attr, rows, has_next, has_previous)

    @staticmethod
    def _cursor_key(order_attr: Attr | None, cursor: list[Any]) -> tuple[Any, str]:
        eid, _attr_id, value, created = cursor
        if order_attr is None:
            return created, str(eid)
        if value is None:
            return None, str(eid)
        if order_attr.checked_type == "date":
            return values.parse_date_ms(value), str(eid)
        return values.key_of(value)[1], str(eid)

    def _cursor_bounds(
        self, node: Node, order_attr: Attr | None, sort_sql: str
    ) -> tuple[str, list[Any]]:
        """The cursors as SQL conditions (already checked by `_walk_bounds`)."""
        sql, params = "", []
        for key, cursor, inclusive in (
            ("after", node.after, node.after_inclusive),
            ("before", node.before, node.before_inclusive),
        ):
            if cursor is None:
                continue
            later = (key == "after") != node.order_desc
            value, eid = self._cursor_key(order_attr, cursor)
            clause, clause_params = _beyond(sort_sql, later, inclusive, value, eid)
            sql += f" AND {clause}"
            params += clause_params
        return sql, params

    # -- materialising ---------------------------------------------------------------

    def _materialize(self, node: Node, ids: Sequence[str]) -> list[Any]:
        # The ids were just read from `entities`, in this same snapshot.
        records = entities.fetch_records(
            self.conn, self.catalog, node.etype, ids, known_to_exist=True
        )
        records = self._visible(node.etype, records)
        ordered = [records[i] for i in ids if i in records]
        return self._objects(node, ordered)

    def _visible(self, etype: str, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if self.access is None or not records:
            return records
        keep = self.access.visible(etype, records)
        return {i: r for i, r in records.items() if i in keep}

    def _objects(self, node: Node, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        objects = [self._project(node, record) for record in records]
        if not node.children or not objects:
            for obj in objects:
                for label in node.children:
                    obj[label] = self._empty_link(node.etype, label)
            return objects
        parent_ids = [obj["id"] for obj in objects]
        for label, child in node.children.items():
            link = self.catalog.link(node.etype, label)
            if link is None:
                for obj in objects:
                    obj[label] = []
                continue
            grouped = self._children(link, child, parent_ids)
            for obj in objects:
                kids = [dict(k) for k in grouped.get(obj["id"], [])]
                if self.inference and link.singular:
                    obj[label] = kids[0] if kids else None
                else:
                    obj[label] = kids
        return objects

    def _empty_link(self, etype: str, label: str) -> Any:
        link = self.catalog.link(etype, label)
        if self.inference and link is not None and link.singular:
            return None
        return []

    def _project(self, node: Node, record: dict[str, Any]) -> dict[str, Any]:
        if self.access is not None:
            record = self.access.fields(node.etype, record)
        obj = dict(record)
        is_files = node.etype == "$files"
        if is_files and isinstance(record.get("location-id"), str):
            obj["url"] = self.file_url(record["location-id"], record)
        if node.fields is not None:
            wanted = set(node.fields) | {"id"}
            obj = {k: v for k, v in obj.items() if k in wanted}
        return obj

    def _children(
        self, link: Link, child: Node, parent_ids: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        pairs = entities.linked_pairs(self.conn, link, parent_ids)
        child_ids = list(dict.fromkeys(c for _, c in pairs))
        etype = link.target_etype
        if child.where is not None and child_ids:
            compiled = self._compile(child, etype)
            if compiled.unknown:
                child_ids = []
            else:
                rows = self.conn.execute(
                    f"SELECT id FROM ({compiled.sql}) WHERE id IN {IDS}",
                    [*compiled.params, id_list(child_ids)],
                )
                matching = {row[0] for row in rows}
                child_ids = [c for c in child_ids if c in matching]
        records = entities.fetch_records(self.conn, self.catalog, etype, child_ids)
        records = self._visible(etype, records)
        ordered = self._sorted(etype, child, list(records.values()))
        objects = self._objects(child, ordered)
        by_id = {obj["id"]: obj for obj in objects}
        position = {obj["id"]: i for i, obj in enumerate(objects)}
        grouped: dict[str, list[dict[str, Any]]] = {}
        for parent, kid in pairs:
            if kid in by_id:
                grouped.setdefault(parent, []).append(by_id[kid])
        for kids in grouped.values():
            kids.sort(key=lambda k: position[k["id"]])
        return grouped

    def _sorted(
        self, etype: str, node: Node, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if node.order_field == "serverCreatedAt":
            created = entities.created_order(self.conn, etype, [r["id"] for r in records])
            return sorted(
                records,
                key=lambda r: (created.get(r["id"], 0), r["id"]),
                reverse=node.order_desc,
            )
        attr = self.catalog.forward(etype, node.order_field)
        as_date = attr is not None and attr.checked_type == "date"
        name = node.order_field
        return sorted(
            records,
            key=lambda r: (values.sort_key(r.get(name), as_date=as_date), r["id"]),
            reverse=node.order_desc,
        )


def _beyond(
    sort_sql: str, later: bool, inclusive: bool, value: Any, eid: str
) -> tuple[str, list[Any]]:
    """SQL for "sorts after (or before) ``(value, eid)``" with nulls sorting first."""
    id_op = (">=" if inclusive else ">") if later else ("<=" if inclusive else "<")
    if later:
        if value is None:
            return f"({sort_sql} IS NOT NULL OR e.id {id_op} ?)", [eid]
        return (
            f"({sort_sql} > ? OR ({sort_sql} = ? AND e.id {id_op} ?))",
            [value, value, eid],
        )
    if value is None:
        return f"({sort_sql} IS NULL AND e.id {id_op} ?)", [eid]
    return (
        f"({sort_sql} IS NULL OR {sort_sql} < ? OR ({sort_sql} = ? AND e.id {id_op} ?))",
        [value, value, eid],
    )


def run_query(
    conn: sqlite3.Connection,
    catalog: Catalog,
    nodes: Mapping[str, Node],
    *,
    inference: bool = False,
    access: QueryAccess | None = None,
    file_url: FileUrl = default_file_url,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(result tree, {"page-info", "aggregate"})`` for validated query nodes."""
    return QueryRun(conn, catalog, inference, access, file_url).run(nodes)


__all__ = ["Node", "QueryAccess", "ServerError", "parse_query", "run_query"]
