"""Properties of the conversion over random nested results (hypothesis).

The expected columns come from ``_expected_columns``, a direct statement of the
flattening rule: a key holding a non-empty object in some entity is spread into
``key.sub`` columns, and keeps a column of its own for whatever else it holds (if
anything but nulls). Every cell must equal the input value, or be missing where the
input is missing or null.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import pandas as pd
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from instantdb_notebook import to_arrow, to_dataframe, to_dataframes

# Attribute names never contain the separator, so flattened names cannot clash (that
# case is an error, tested on its own).
_KEYS = st.sampled_from(["a", "b", "c", "n", "when", "x y", "é"])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _results(draw: st.DrawFn) -> dict[str, Any]:
    """``{"items": [...]}``: entities with random attributes and a ``kids`` link whose
    children (possibly shared between parents) have attributes of their own."""
    pool = [
        {"id": f"k{i}", **draw(st.dictionaries(_KEYS, _JSON, max_size=3))}
        for i in range(draw(st.integers(0, 4)))
    ]
    items = []
    for position in range(draw(st.integers(0, 12))):
        entity: dict[str, Any] = {"id": f"e{position}"}
        entity.update(draw(st.dictionaries(_KEYS, _JSON, max_size=5)))
        if pool and draw(st.booleans()):
            entity["kids"] = draw(st.lists(st.sampled_from(pool), max_size=3))
        items.append(entity)
    return {"items": items}


def _expected_columns(rows: list[Any]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    keys = dict.fromkeys(key for row in rows if isinstance(row, dict) for key in row)
    for key in keys:
        values = [row.get(key) if isinstance(row, dict) else None for row in rows]
        if not any(isinstance(v, dict) and v for v in values):
            columns[key] = values
            continue
        rest = [None if isinstance(v, dict) and v else v for v in values]
        if any(v is not None for v in rest):
            columns[key] = rest
        for sub_key, sub_values in _expected_columns(values).items():
            columns[f"{key}.{sub_key}"] = sub_values
    return columns


def _missing(cell: Any) -> bool:
    return cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell))


def _same(actual: Any, expected: Any) -> bool:
    if expected is None:
        return _missing(actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is bool and actual == expected
    return bool(actual == expected)


@given(_results())
def test_one_row_per_entity_union_of_keys_as_columns_values_as_given(
    result: dict[str, Any],
) -> None:
    rows = result["items"]
    frame = to_dataframe(result, index=None)

    # An empty result still has the id column every entity would have.
    expected = _expected_columns(rows) if rows else {"id": []}
    assert len(frame) == len(rows)
    assert list(frame.columns) == list(expected)
    for name, values in expected.items():
        cells = frame[name].tolist()
        assert all(map(_same, cells, values)), (name, cells, values)


@given(_results())
def test_explode_repeats_each_entity_once_per_child(result: dict[str, Any]) -> None:
    rows = result["items"]
    frame = to_dataframe(result, links="explode", index=None)

    kids_per_row = [len(row.get("kids") or []) for row in rows]
    assert len(frame) == sum(max(1, n) for n in kids_per_row)
    if not rows:
        return
    expected_ids = [
        row["id"] for row, n in zip(rows, kids_per_row, strict=True) for _ in range(max(1, n))
    ]
    assert frame["id"].tolist() == expected_ids
    if "kids.id" in frame.columns:
        children = [kid["id"] for row in rows for kid in (row.get("kids") or [None]) if kid]
        assert [c for c in frame["kids.id"].tolist() if not _missing(c)] == children


@given(_results())
def test_to_dataframes_parent_ids_rebuild_every_link(result: dict[str, Any]) -> None:
    frames = to_dataframes(result)
    kids = frames.get("items.kids")
    if kids is None:
        assert all(not row.get("kids") for row in result["items"])
        return
    rebuilt: dict[str, list[str]] = defaultdict(list)
    for parent, child in zip(kids["items_id"], kids.index, strict=True):
        rebuilt[parent].append(child)
    for row in result["items"]:
        assert rebuilt.get(row["id"], []) == [kid["id"] for kid in row.get("kids") or []]


def _without_nulls(value: Any) -> Any:
    """Arrow reads a struct back with every field, so missing and null are alike."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@given(_results())
def test_to_arrow_holds_the_same_values(result: dict[str, Any]) -> None:
    rows = result["items"]
    table = to_arrow(result)
    if not rows:
        assert table.schema == pa.schema([pa.field("id", pa.string())])
        return
    expected = _expected_columns(rows)

    assert table.num_rows == len(rows)
    assert table.column_names == list(expected)
    for name, values in expected.items():
        field = table.schema.field(name)
        cells = table.column(name).to_pylist()
        if field.metadata == {b"instant.encoding": b"json"}:
            assert field.type == pa.string()
            cells = [None if c is None else json.loads(c) for c in cells]
        for cell, value in zip(cells, values, strict=True):
            assert _same(_without_nulls(cell), _without_nulls(value)), (name, cell, value)
