"""Entities to columns: the union of keys, flattened objects, and links per link mode.

The work is done column by column over plain Python lists with C-level loops
(``map(dict.get, rows, repeat(key))``, ``set(map(type, values))``), which is where CPython
is fastest; nothing here imports pandas or pyarrow. Typing the columns is ``_dtypes``' job.

Rules, in the order they apply to each key of a namespace:

1. A key is a *link* when the schema says so (and its values are lists, objects or null),
   or, without a schema for that namespace, when every value is a list (or null), every
   item of every list is an object carrying an ``id`` (or ``{}``, which the server returns
   for a dangling link), and at least one item has an ``id``. Without a schema, a key whose
   lists are all empty is therefore an attribute: nothing shows it is a link.
2. Otherwise, with ``flatten``, a key holding non-empty objects becomes one column per
   sub-key (``meta.owner``), recursively. The key keeps a column of its own only for the
   values that are not non-empty objects (scalars, lists, ``{}``), when there are any, so
   nothing is lost and no all-empty column is added.
3. Anything else is one column, named by the key.

Attributes the schema declares but no entity holds are all-null columns of their type,
and an empty result still has its ``id`` column (ids are strings), so an empty page has
the columns and types a full one would. Columns then take one fixed order: ``id``, the
declared attributes in the schema's order, then everything else in order of first
appearance. The server returns each entity's keys in no particular order, and Arrow
tables only concatenate when their fields are in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import contains
from typing import TYPE_CHECKING, Any, Literal

from ._errors import ColumnNameClashError
from ._payload import as_entities
from ._schema import InstantType, SchemaIndex

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

LinkMode = Literal["nested", "ids", "explode", "separate"]
LINK_MODES: tuple[LinkMode, ...] = ("nested", "ids", "explode", "separate")

_NONE = type(None)
_EMPTY: dict[str, Any] = {}


@dataclass
class Column:
    """One output column: its name, one value per row (None when absent), its declared type."""

    name: str
    values: list[Any]
    declared: InstantType | None = None
    # set(map(type, values)) when already known (None may be missing from it)
    kinds: set[type] | None = None


@dataclass
class Table:
    """A namespace's rows as columns, before typing."""

    path: str
    columns: list[Column]
    n_rows: int
    # For each row, the position of the entity it came from; None while rows and entities
    # are one to one (explode makes one row per linked child).
    origin: list[int] | None = None
    # links="separate": one table per link, keyed by namespace path, each nested the same way
    linked: dict[str, Table] = field(default_factory=dict)


@dataclass(frozen=True)
class ShapeOptions:
    links: LinkMode
    flatten: bool
    sep: str
    schema: SchemaIndex
    # names the column holding the parent's id in a separate table; {parent} is its label
    parent_column: str = "{parent}_id"


@dataclass
class _Link:
    """A link key waiting to be joined (explode) or split out (separate)."""

    label: str
    values: list[Any]


def shape(rows: list[dict[str, Any]], path: str, options: ShapeOptions) -> Table:
    """The columns of one namespace's entities, shaped by the link mode."""
    declared = options.schema.declared_columns(path)
    link_labels = options.schema.link_labels(path)
    slots: list[Column | _Link] = []
    # dict.fromkeys over all rows' keys: the union of keys in order of first appearance,
    # so a key seen only in the last row is kept like any other.
    # Keys are looked up as they are and named as strings; stringifying the union (a few
    # keys) rather than every row's keys saves a pass over the data.
    keys: dict[Any, None] = dict.fromkeys(chain.from_iterable(rows))
    names: dict[str, None] = dict.fromkeys(map(str, keys))
    for key in keys:
        values = list(map(dict.get, rows, repeat(key)))
        kinds = set(map(type, values))
        name = key if type(key) is str else str(key)
        if _is_link(name, values, kinds, link_labels):
            slots.append(_link_slot(name, values, options.links))
        else:
            slots.extend(_flatten(name, values, kinds, declared, options))
    slots.extend(_schema_only_columns(slots, declared, len(rows), options.sep))
    if not rows:
        # Every entity has an id, and ids are strings: typed so, the id column of an empty
        # result matches a full one's (a schema's own "id" record has no checked type).
        slots = [slot for slot in slots if not (isinstance(slot, Column) and slot.name == "id")]
        slots.insert(0, Column("id", [], declared.get("id") or "string"))

    table = Table(path=path, columns=[s for s in slots if isinstance(s, Column)], n_rows=len(rows))
    # Every plain column exists before the first join, so an explode repeats all of them;
    # a link's own columns then go where the link's key was.
    at = 0
    for slot in slots:
        if isinstance(slot, Column):
            at += 1
        elif options.links == "explode":
            at += _explode_into(table, slot, at, path, options)
        else:
            _separate_into(table, slot, rows, path, options)
    _check_unique_names(table, options)
    _put_in_order(table, names, declared, options.sep)
    return table


def _put_in_order(
    table: Table, keys: Mapping[str, None], declared: Mapping[str, Any], sep: str
) -> None:
    """Sort the columns: ``id``, then the declared attributes in the schema's order, then
    the other keys in order of first appearance.

    A column goes where the key it came from goes, so flattened (``meta.owner``) and
    exploded (``todos.text``) columns stay together, in the order they were made (the
    sort is stable).
    """
    rank: dict[str, int] = {"id": 0}
    for name in declared:
        rank.setdefault(_source_key(name, keys, sep), len(rank))
    for key in keys:
        rank.setdefault(key, len(rank))
    if len(table.columns) > 1:
        table.columns.sort(key=lambda column: _rank_of(column.name, rank, sep))


def _source_key(name: str, keys: Mapping[str, Any], sep: str) -> str:
    """The key a column name comes from: itself, or its longest prefix that is a key
    (``meta`` for ``meta.owner``); the name itself when neither is."""
    if name in keys or sep not in name:
        return name
    parts = name.split(sep)
    for end in range(len(parts) - 1, 0, -1):
        prefix = sep.join(parts[:end])
        if prefix in keys:
            return prefix
    return name


def _rank_of(name: str, rank: Mapping[str, int], sep: str) -> int:
    position = rank.get(_source_key(name, rank, sep))
    return len(rank) if position is None else position


def _is_link(
    name: str, values: list[Any], kinds: set[type], link_labels: frozenset[str] | None
) -> bool:
    if link_labels is not None:
        # A has-one link that the query did not nest comes back as a plain id string: that
        # is an attribute column, not a link to follow.
        return name in link_labels and kinds <= {list, dict, _NONE} and kinds != {_NONE}
    if list not in kinds or not kinds <= {list, _NONE}:
        return False
    items = list(chain.from_iterable(filter(None, values)))
    if not items or set(map(type, items)) != {dict}:
        return False
    if all(map(contains, items, repeat("id"))):
        return True
    with_id = sum(1 for item in items if "id" in item)
    return with_id > 0 and with_id + sum(1 for item in items if not item) == len(items)


def _link_slot(name: str, values: list[Any], links: LinkMode) -> Column | _Link:
    if links == "nested":
        return Column(name, values, "json")
    if links == "ids":
        return Column(name, [_ids(value) for value in values], "json")
    return _Link(name, values)


def _ids(value: Any) -> Any:
    # An array link becomes a list of ids; a single linked object (results fetched with
    # inference) becomes its id; null stays null.
    if type(value) is list:
        return [child.get("id") for child in value]
    if type(value) is dict:
        return value.get("id")
    return value


def _linked_table(
    link: _Link, path: str, options: ShapeOptions
) -> tuple[npt.NDArray[np.intp], Table]:
    """For each linked entity (in order) the position of its parent, and their table.

    The table always has an ``id`` column, even when every linked entity is dangling
    (``{}``), so that linked frames can always be indexed and joined by id.
    """
    import numpy as np

    child_path = f"{path}.{link.label}"
    # A single linked object (results fetched with inference) counts as a list of one.
    lists = [v if type(v) is list else [v] if type(v) is dict else () for v in link.values]
    kids = list(chain.from_iterable(lists))
    lengths = np.fromiter(map(len, lists), dtype=np.intp, count=len(lists))
    parents = np.repeat(np.arange(len(lists), dtype=np.intp), lengths)
    child = shape(as_entities(kids, child_path), child_path, options)
    if not any(column.name == "id" for column in child.columns):
        child.columns.insert(0, Column("id", [None] * child.n_rows))
    return parents, child


def _flatten(
    name: str,
    values: list[Any],
    kinds: set[type],
    declared: Mapping[str, InstantType | None],
    options: ShapeOptions,
) -> list[Column]:
    # A column written "json" in a type mapping is kept whole: the user asked for objects.
    if dict not in kinds or not options.flatten or declared.get(name) == "json":
        return [Column(name, values, declared.get(name), kinds)]
    objects = values if kinds == {dict} else [v if type(v) is dict else _EMPTY for v in values]
    sub_keys = dict.fromkeys(chain.from_iterable(objects))
    if not sub_keys:  # only {} (and maybe scalars): nothing to spread out
        return [Column(name, values, declared.get(name), kinds)]

    columns: list[Column] = []
    if kinds != {dict} or not all(values):
        rest = [None if type(v) is dict and v else v for v in values]
        if any(v is not None for v in rest):
            columns.append(Column(name, rest, declared.get(name)))
    for sub_key in sub_keys:
        sub_values = list(map(dict.get, objects, repeat(sub_key)))
        sub_name = f"{name}{options.sep}{sub_key}"
        columns.extend(
            _flatten(sub_name, sub_values, set(map(type, sub_values)), declared, options)
        )
    return columns


def _schema_only_columns(
    slots: list[Column | _Link], declared: Mapping[str, InstantType | None], n_rows: int, sep: str
) -> list[Column]:
    """All-null columns for declared attributes that no entity holds, so the shape of a
    frame does not depend on which optional attributes happen to be set."""
    present = {slot.name if isinstance(slot, Column) else slot.label for slot in slots}
    flattened = {name.split(sep, 1)[0] for name in present if sep in name}
    return [
        Column(name, [None] * n_rows, kind)
        for name, kind in declared.items()
        if name not in present and name not in flattened
    ]


def _explode_into(table: Table, link: _Link, at: int, path: str, options: ShapeOptions) -> int:
    """Join the link's rows to the table's (one row per child, one null row when none),
    inserting the child's columns at ``at``; returns how many columns were inserted."""
    import numpy as np

    parent_of_kid, child = _linked_table(link, path, options)
    child_entity = parent_of_kid if child.origin is None else parent_of_kid[child.origin]
    n_entities = len(link.values)
    counts = np.bincount(child_entity, minlength=n_entities)
    # Child rows are grouped by entity and in entity order, since kids were gathered so.
    starts = np.cumsum(counts) - counts
    row_entity = (
        np.arange(table.n_rows) if table.origin is None else np.asarray(table.origin, np.intp)
    )
    row_counts = counts[row_entity]
    repeats = np.maximum(row_counts, 1)
    total = int(repeats.sum())
    first_out = np.cumsum(repeats) - repeats
    within = np.arange(total) - np.repeat(first_out, repeats)
    child_index = np.repeat(starts[row_entity], repeats) + within
    child_index[np.repeat(row_counts == 0, repeats)] = -1

    if total != table.n_rows:
        parent_index = np.repeat(np.arange(table.n_rows), repeats)
        picks = parent_index.tolist()
        for column in table.columns:
            column.values = list(map(column.values.__getitem__, picks))
        table.origin = row_entity[parent_index].tolist()
    prefix = f"{link.label}{options.sep}"
    picks = child_index.tolist()
    table.columns[at:at] = [
        Column(
            prefix + column.name,
            list(map([*column.values, None].__getitem__, picks)),  # -1 picks the None
            column.declared,
            column.kinds,  # -1 adds only None, which typing ignores
        )
        for column in child.columns
    ]
    table.n_rows = total
    return len(child.columns)


def _separate_into(
    table: Table,
    link: _Link,
    rows: list[dict[str, Any]],
    path: str,
    options: ShapeOptions,
) -> None:
    """Split the link out into a table of its own, with the parent's id on every row."""
    kid_parent, child = _linked_table(link, path, options)
    parent_label = path.rsplit(".", 1)[-1]
    parent_name = options.parent_column.format(parent=parent_label)
    if any(column.name == parent_name for column in child.columns):
        raise ColumnNameClashError(
            f"the entities of {child.path!r} already have a column {parent_name!r}, the name "
            "chosen for their parent's id",
            keyword="parent_column",
            example="_{parent}_id",
        )
    parent_ids = [rows[position].get("id") for position in kid_parent.tolist()]
    child.columns.insert(0, Column(parent_name, parent_ids))
    table.linked[child.path] = child


def _check_unique_names(table: Table, options: ShapeOptions) -> None:
    seen: set[str] = set()
    for column in table.columns:
        if column.name in seen:
            raise ColumnNameClashError(
                f"two columns of {table.path!r} would both be named {column.name!r} (an "
                f"attribute whose name contains {options.sep!r} clashes with a flattened or "
                "linked one)",
                keyword="sep",
                example="__",
            )
        seen.add(column.name)
