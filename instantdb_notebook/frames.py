"""DataFrames and Arrow tables from InstantDB query results.

``to_dataframe`` turns one namespace of a query result (or of an ``ok`` subscription
payload) into a pandas DataFrame, ``to_dataframes`` turns a whole result into one frame
per namespace path with parent-id columns for joins, and ``to_arrow`` builds a
``pyarrow.Table`` with the same columns. See docs/dataframes.md for the full reference.

Importing this module imports neither pandas nor pyarrow; the functions do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._dtypes import TypedColumn, type_column
from ._errors import FrameError
from ._payload import Unwrapped, entities, pick_namespace, unwrap
from ._render import DTYPE_BACKENDS, DtypeBackend, arrow_column, pandas_column
from ._schema import read_schema
from ._shape import LINK_MODES, LinkMode, ShapeOptions, Table, shape

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["FrameInfo", "to_arrow", "to_dataframe", "to_dataframes"]


class FrameInfo(dict[str, Any]):
    """Where a frame came from, kept in ``df.attrs["instant"]``.

    As a mapping it holds ``namespace``, the namespace path of the rows (``"goals"``,
    ``"goals.todos"``), and ``page_info``, the subscription's page info for that namespace
    or None. Those are small and JSON-ready, because pandas writes ``attrs`` into Parquet
    files. Two attributes hold the rest: ``payload``, exactly what was passed in (query
    result or subscription payload), and ``linked``, the frames split out by
    ``links="separate"``, keyed by path.
    """

    def __init__(
        self,
        namespace: str,
        page_info: Mapping[str, Any] | None,
        payload: Mapping[str, Any],
        linked: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        super().__init__(namespace=namespace, page_info=page_info)
        self.payload = payload
        self.linked: Mapping[str, pd.DataFrame] = linked or {}

    @property
    def namespace(self) -> str:
        return str(self["namespace"])

    @property
    def page_info(self) -> Mapping[str, Any] | None:
        page_info: Mapping[str, Any] | None = self["page_info"]
        return page_info

    # pandas deep-copies ``attrs`` into the result of nearly every operation; copying a
    # whole query result each time would be slow, so the info is shared instead.
    def __copy__(self) -> FrameInfo:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrameInfo:
        return self

    def __repr__(self) -> str:
        return f"FrameInfo(namespace={self.namespace!r}, page_info={self.page_info!r})"


def to_dataframe(
    result: Mapping[str, Any],
    namespace: str | None = None,
    *,
    links: LinkMode = "nested",
    flatten: bool = True,
    sep: str = ".",
    index: str | None = "id",
    schema: Mapping[str, Any] | None = None,
    dtypes: Mapping[str, Any] | None = None,
    dtype_backend: DtypeBackend = "numpy_nullable",
    parse_dates: bool | Sequence[str] = True,
) -> pd.DataFrame:
    """One namespace of a query result as a DataFrame, one row per entity.

    ``result`` is a query result ``{namespace: [entities]}`` or a subscription payload
    (``{"type": "ok", "data": ...}``; an error payload raises ``ErrorPayloadError``).
    ``namespace`` picks the namespace; it may be left out when there is only one.

    ``links`` says what becomes of linked entities (nested lists): ``"nested"`` keeps the
    lists, ``"ids"`` keeps only their ids, ``"explode"`` makes one row per linked entity
    with its columns prefixed by the link label (``todos.title``), ``"separate"`` moves
    them to frames of their own in ``df.attrs["instant"].linked``.

    ``flatten`` spreads nested objects into columns joined by ``sep`` (``meta.owner``).
    ``index`` names the column used as the index (``None``: keep a RangeIndex).
    ``schema`` (the ``GET /admin/schema`` body, or ``{namespace: {attr: type}}``) types the
    columns; ``dtypes`` overrides pandas dtypes per column; ``dtype_backend`` is
    ``"numpy_nullable"`` (Int64, Float64, boolean, string), ``"pyarrow"`` or ``None``
    (plain NumPy). ``parse_dates`` parses the schema's date attributes (``True``), nothing
    (``False``), or the listed columns as well as the schema's.
    """
    options = _shape_options(links, flatten, sep, schema)
    typing = _Typing.of(dtype_backend, parse_dates, index)
    overrides = _check_dtypes(dtypes, "dtypes")
    unwrapped = unwrap(result)
    name = pick_namespace(unwrapped.tree, namespace)
    table = shape(entities(unwrapped.tree, name), name, options)

    frame = _frame(table, typing, overrides)
    # parse_dates and dtypes name the main frame's columns, not the linked frames'
    linked_typing = replace(typing, date_columns=frozenset())
    linked: dict[str, pd.DataFrame] = {}
    for child in table.linked.values():
        for path, part in _walk(child):
            linked[path] = _frame(part, linked_typing, None)
            linked[path].attrs["instant"] = _info(unwrapped, path, {})
    frame.attrs["instant"] = _info(unwrapped, name, linked)
    return frame


def to_dataframes(
    result: Mapping[str, Any],
    *,
    flatten: bool = True,
    sep: str = ".",
    index: str | None = "id",
    schema: Mapping[str, Any] | None = None,
    dtypes: Mapping[str, Mapping[str, Any]] | None = None,
    dtype_backend: DtypeBackend = "numpy_nullable",
    parse_dates: bool = True,
    parent_column: str = "{parent}_id",
) -> dict[str, pd.DataFrame]:
    """Every namespace of a result as its own frame, keyed by namespace path.

    A nested namespace (``"goals.todos"``) has one row per link: an entity linked from
    two parents appears twice, each time with its parent's id in the column named by
    ``parent_column`` (``{parent}`` is the parent's label: ``goals_id``), so
    ``todos.merge(goals, left_on="goals_id", right_index=True)`` joins them back.
    ``dtypes`` is keyed by namespace path, then column. The other options are those of
    ``to_dataframe``.
    """
    _check_parent_column(parent_column)
    options = _shape_options("separate", flatten, sep, schema, parent_column)
    typing = _Typing.of(dtype_backend, _check_bool(parse_dates, "parse_dates"), index)
    overrides = _check_nested_dtypes(dtypes)
    unwrapped = unwrap(result)
    frames: dict[str, pd.DataFrame] = {}
    for name in unwrapped.tree:
        top = shape(entities(unwrapped.tree, name), name, options)
        for path, table in _walk(top):
            frame = _frame(table, typing, overrides.pop(path, None))
            frame.attrs["instant"] = _info(unwrapped, path, {})
            frames[path] = frame
    if overrides:
        raise FrameError(
            f"dtypes names namespace paths the result does not have: {', '.join(overrides)}; "
            f"it has {', '.join(frames) or 'none'}"
        )
    return frames


def to_arrow(
    result: Mapping[str, Any],
    namespace: str | None = None,
    *,
    links: LinkMode = "nested",
    flatten: bool = True,
    sep: str = ".",
    schema: Mapping[str, Any] | None = None,
    parse_dates: bool | Sequence[str] = True,
) -> pa.Table:
    """One namespace as a ``pyarrow.Table`` with the columns ``to_dataframe`` would give
    (``id`` included as the first column, since Arrow has no index).

    Columns that pandas would keep as Python objects become Arrow lists and structs when
    Arrow can hold their values exactly, and JSON text otherwise (such fields carry the
    metadata ``{"instant.encoding": "json"}``). ``links="separate"`` is not available here:
    use ``to_dataframes``.
    """
    import json

    import pyarrow as pa

    if links == "separate":
        raise FrameError(
            "to_arrow returns one table, so links='separate' is not available; use "
            "links='explode', 'ids' or 'nested', or to_dataframes(result) for one frame per "
            "namespace"
        )
    options = _shape_options(links, flatten, sep, schema)
    typing = _Typing.of(None, parse_dates, None)
    unwrapped = unwrap(result)
    name = pick_namespace(unwrapped.tree, namespace)
    table = shape(entities(unwrapped.tree, name), name, options)

    fields = []
    arrays = []
    for column in typing.typed_columns(table):
        array, field_metadata = arrow_column(column)
        fields.append(pa.field(column.name, array.type, metadata=field_metadata))
        arrays.append(array)
    table_metadata = {"instant.namespace": name}
    page_info = _page_info(unwrapped, name)
    if page_info is not None:
        table_metadata["instant.page_info"] = json.dumps(page_info)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table_metadata))


def _shape_options(
    links: object,
    flatten: object,
    sep: object,
    schema: Mapping[str, Any] | None,
    parent_column: str = "{parent}_id",
) -> ShapeOptions:
    if links not in LINK_MODES:
        raise FrameError(f"links must be one of {', '.join(map(repr, LINK_MODES))}; got {links!r}")
    if not isinstance(sep, str) or not sep:
        raise FrameError(f"sep must be a non-empty string, got {sep!r}")
    return ShapeOptions(
        links=links,
        flatten=_check_bool(flatten, "flatten"),
        sep=sep,
        schema=read_schema(schema),
        parent_column=parent_column,
    )


@dataclass(frozen=True)
class _Typing:
    backend: DtypeBackend
    parse_dates: bool
    date_columns: frozenset[str]
    index: str | None

    @classmethod
    def of(cls, backend: object, parse_dates: object, index: object) -> _Typing:
        if backend not in DTYPE_BACKENDS:
            raise FrameError(
                f"dtype_backend must be 'numpy_nullable', 'pyarrow' or None; got {backend!r}"
            )
        if index is not None and not isinstance(index, str):
            raise FrameError(f"index must be a column name or None, got {index!r}")
        if isinstance(parse_dates, bool):
            return cls(backend, parse_dates, frozenset(), index)
        if (
            isinstance(parse_dates, Sequence)
            and not isinstance(parse_dates, str)
            and all(isinstance(name, str) for name in parse_dates)
        ):
            return cls(backend, True, frozenset(parse_dates), index)
        raise FrameError(
            f"parse_dates must be True, False or a list of column names; got {parse_dates!r}"
        )

    def typed_columns(self, table: Table) -> Iterator[TypedColumn]:
        if table.n_rows:
            _check_known_columns(table, self.date_columns, "parse_dates")
        for column in table.columns:
            yield type_column(column, date_columns=self.date_columns, parse_dates=self.parse_dates)


def _frame(table: Table, typing: _Typing, dtypes: Mapping[str, Any] | None) -> pd.DataFrame:
    import pandas as pd

    columns = {
        column.name: pandas_column(column, typing.backend) for column in typing.typed_columns(table)
    }
    index: pd.Index = pd.RangeIndex(table.n_rows)
    if typing.index is not None:
        index_values = columns.pop(typing.index, None)
        if index_values is None and table.n_rows:
            raise FrameError(
                f"the entities of {table.path!r} have no {typing.index!r} to use as the index; "
                "pass index=None for a plain RangeIndex, or index='<column>'"
            )
        index = pd.Index([] if index_values is None else index_values, name=typing.index)
    # Columns sharing the frame's very index object are taken as they are; otherwise
    # pandas would align (reindex and copy) each one.
    for series in columns.values():
        series.index = index
    frame: pd.DataFrame = pd.DataFrame(columns, index=index, copy=False)
    if dtypes:
        frame = _apply_dtypes(frame, table, dtypes)
    return frame


def _apply_dtypes(frame: pd.DataFrame, table: Table, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    if table.n_rows:
        _check_known_columns(table, dtypes, "dtypes")
    for name, dtype in dtypes.items():
        try:
            if name == frame.index.name:
                frame.index = frame.index.astype(dtype)
            elif name in frame.columns:
                frame[name] = frame[name].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise FrameError(f"cannot convert column {name!r} to {dtype!r}: {exc}") from exc
    return frame


def _check_known_columns(
    table: Table, names: Mapping[str, Any] | frozenset[str], what: str
) -> None:
    known = [column.name for column in table.columns]
    unknown = [name for name in names if name not in set(known)]
    if unknown:
        raise FrameError(
            f"{what} names columns that {table.path!r} does not have: "
            f"{', '.join(map(repr, unknown))}; its columns are {', '.join(map(repr, known))}"
        )


def _check_parent_column(template: object) -> None:
    try:
        valid = isinstance(template, str) and template.format(parent="p") != template
    except (KeyError, IndexError, ValueError):
        valid = False
    if not valid:
        raise FrameError(
            "parent_column must be a template containing '{parent}' and no other braces, "
            f"e.g. '{{parent}}_id'; got {template!r}"
        )


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise FrameError(f"{name} must be True or False, got {value!r}")
    return value


def _check_dtypes(dtypes: object, name: str) -> Mapping[str, Any] | None:
    if dtypes is None:
        return None
    if not isinstance(dtypes, Mapping) or not all(isinstance(key, str) for key in dtypes):
        raise FrameError(f"{name} must map column names to dtypes, got {dtypes!r}")
    return dtypes


def _check_nested_dtypes(dtypes: object) -> dict[str, Mapping[str, Any]]:
    if dtypes is None:
        return {}
    if not isinstance(dtypes, Mapping):
        raise FrameError(
            "dtypes must map namespace paths to {column: dtype} mappings, "
            f"got {type(dtypes).__name__}"
        )
    checked: dict[str, Mapping[str, Any]] = {}
    for path, per_column in dtypes.items():
        mapping = _check_dtypes(per_column, f"dtypes[{path!r}]")
        if mapping:
            checked[str(path)] = mapping
    return checked


def _walk(table: Table) -> Iterator[tuple[str, Table]]:
    """The table and every table split out of it, depth first."""
    yield table.path, table
    for child in table.linked.values():
        yield from _walk(child)


def _page_info(unwrapped: Unwrapped, path: str) -> Mapping[str, Any] | None:
    if unwrapped.page_info is None or "." in path:
        return None
    page_info = unwrapped.page_info.get(path)
    return page_info if isinstance(page_info, Mapping) else None


def _info(unwrapped: Unwrapped, path: str, linked: Mapping[str, pd.DataFrame]) -> FrameInfo:
    return FrameInfo(
        namespace=path,
        page_info=_page_info(unwrapped, path),
        payload=unwrapped.payload,
        linked=linked,
    )
