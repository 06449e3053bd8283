"""Typed columns to pandas Series (per dtype backend) and to Arrow arrays."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ._dtypes import TypedColumn
from ._errors import FrameError

if TYPE_CHECKING:
    import pandas as pd

DtypeBackend = Literal["numpy_nullable", "pyarrow"] | None
DTYPE_BACKENDS: tuple[DtypeBackend, ...] = ("numpy_nullable", "pyarrow", None)

# Field metadata marking an Arrow column whose values are JSON text (see arrow_column).
JSON_ENCODING = {b"instant.encoding": b"json"}


def pandas_column(column: TypedColumn, backend: DtypeBackend) -> pd.Series:
    import pandas as pd
    import pyarrow as pa

    if column.kind == "object":
        # dtype=object also stops pandas 3 from turning a column of strings into `str`.
        objects: pd.Series = pd.Series(column.data, dtype=object)
        return objects
    if column.kind == "datetime":
        series: pd.Series = column.data
        if backend == "pyarrow":
            unit = series.dt.unit
            return series.astype(pd.ArrowDtype(pa.timestamp(unit, tz="UTC")))
        return series
    converted: pd.Series = column.data.to_pandas(types_mapper=_types_mapper(backend))
    return converted


def _types_mapper(backend: DtypeBackend) -> Callable[[Any], Any] | None:
    import pandas as pd
    import pyarrow as pa

    if backend == "pyarrow":
        return pd.ArrowDtype
    if backend == "numpy_nullable":
        return {
            pa.int64(): pd.Int64Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
            pa.string(): pd.StringDtype(),
        }.get
    return None  # pandas' own defaults: int64 (float64 with nulls), object/str, bool


def arrow_column(column: TypedColumn) -> tuple[Any, dict[bytes, bytes] | None]:
    """An Arrow array for the column, and field metadata when its values are JSON text.

    Object columns of lists and objects (nested links, json attributes) get Arrow's own
    inference, so linked entities become list<struct>. Anything Arrow cannot hold exactly
    (a column mixing ints and strings, or a field mixing booleans and floats, which
    Arrow's inference would turn into doubles) is stored as JSON text instead.
    """
    import pyarrow as pa

    if column.kind == "arrow":
        return column.data, None
    if column.kind == "datetime":
        return pa.Array.from_pandas(column.data), None
    values: list[Any] = column.data
    kinds = set(map(type, values))
    if kinds <= {list, dict, type(None)}:
        try:
            array = pa.array(values)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            pass
        else:
            if not _has_floats(array.type) or _same_values(array.to_pylist(), values):
                return array, None
    elif not kinds - {type(None)}:
        return pa.nulls(len(values)), None
    try:
        text = [None if v is None else json.dumps(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise FrameError(
            f"column {column.name!r} mixes types Arrow cannot hold in one column, and some "
            f"value cannot be written as JSON either ({exc}); use to_dataframe() instead"
        ) from exc
    return pa.array(text, type=pa.string()), JSON_ENCODING


def _has_floats(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_floating(arrow_type):
        return True
    return any(_has_floats(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


def _same_values(converted: Any, original: Any) -> bool:
    """Whether Arrow gave back the values it was given: no bool or big int became a float.

    A struct reads back with every field, so a key missing from the original must read
    back as None.
    """
    if type(original) is dict:
        return type(converted) is dict and all(
            _same_values(value, original.get(key)) for key, value in converted.items()
        )
    if type(original) is list:
        return (
            type(converted) is list
            and len(converted) == len(original)
            and all(map(_same_values, converted, original))
        )
    if type(original) is bool or type(converted) is bool:
        return type(converted) is type(original) and converted == original
    return bool(converted == original)
