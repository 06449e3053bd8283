"""Typing frames from a schema: dtypes, dates, empty results, backends and overrides."""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from instantdb_notebook import (
    FrameError,
    SchemaMismatchWarning,
    to_arrow,
    to_dataframe,
    to_dataframes,
)
from tests.notebook.frames_data import GOALS_SCHEMA, cells, goals_result

UTC = "UTC"


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def _result() -> dict[str, Any]:
    return {
        "goals": [
            {
                "id": "g1",
                "title": "Ship",
                "priority": 2,
                "done": True,
                "createdAt": 1_735_689_600_000,  # 2025-01-01T00:00:00Z as epoch ms
                "meta": {"owner": "ann"},
                "todos": [{"id": "t1", "text": "a", "dueDate": "2025-03-01"}],
            },
            {
                "id": "g2",
                "title": "Rest",
                "done": False,
                "createdAt": "2025-01-02T03:04:05.123Z",
                "todos": [],
            },
        ]
    }


# --- the server's schema ------------------------------------------------------------


def test_server_schema_types_every_checked_attribute() -> None:
    frame = to_dataframe(_result(), schema=GOALS_SCHEMA)

    assert frame["title"].dtype == "string"
    assert frame["priority"].dtype == "Int64"
    assert cells(frame, "priority") == [2, None]
    assert frame["done"].dtype == "boolean"
    assert str(frame["createdAt"].dtype) == "datetime64[us, UTC]"
    assert frame["createdAt"].tolist() == [
        _ts("2025-01-01T00:00:00"),
        _ts("2025-01-02T03:04:05.123"),
    ]
    # meta has no checked type: flattened and typed from its values
    assert frame["meta.owner"].dtype == "string"


def test_the_schema_body_and_its_inner_object_are_both_accepted() -> None:
    from_body = to_dataframe(_result(), schema=GOALS_SCHEMA)
    from_inner = to_dataframe(_result(), schema=GOALS_SCHEMA["schema"])
    pd.testing.assert_frame_equal(from_body, from_inner)


def test_refs_type_linked_namespaces_when_exploded_or_separated() -> None:
    exploded = to_dataframe(_result(), links="explode", schema=GOALS_SCHEMA)
    assert str(exploded["todos.dueDate"].dtype) == "datetime64[us, UTC]"
    assert exploded["todos.dueDate"].tolist()[0] == _ts("2025-03-01")
    # declared todo attributes no todo holds are still columns, typed
    assert exploded["todos.done"].dtype == "boolean"

    frames = to_dataframes(_result(), schema=GOALS_SCHEMA)
    assert str(frames["goals.todos"]["dueDate"].dtype) == "datetime64[us, UTC]"


def test_a_has_one_link_that_was_not_nested_is_an_id_attribute() -> None:
    # The server returns an un-nested has-one link as the linked id (server-semantics 3.1).
    schema = {
        "refs": {
            "todos-owner-$users-todos": {
                "forward-identity": ["r1", "todos", "owner"],
                "reverse-identity": ["r2", "$users", "todos"],
            }
        },
        "blobs": {"todos": {"text": {"checked-data-type": "string"}}},
    }
    result = {"todos": [{"id": "t1", "text": "a", "owner": "u1"}]}
    frame = to_dataframe(result, links="explode", schema=schema)
    assert list(frame.columns) == ["text", "owner"]
    assert frame.loc["t1", "owner"] == "u1"


def test_single_linked_objects_from_inference_follow_the_schema() -> None:
    # With inference a has-one link is one object (or null), not a list.
    schema = {
        "refs": {
            "todos-goal-goals-todos": {
                "forward-identity": ["r1", "todos", "goal"],
                "reverse-identity": ["r2", "goals", "todos"],
            }
        },
        "blobs": {"goals": {"title": {"checked-data-type": "string"}}},
    }
    result = {
        "todos": [{"id": "t1", "goal": {"id": "g1", "title": "Ship"}}, {"id": "t2", "goal": None}]
    }
    exploded = to_dataframe(result, links="explode", schema=schema)
    assert cells(exploded, "goal.id") == ["g1", None]
    assert cells(exploded, "goal.title") == ["Ship", None]
    assert cells(to_dataframe(result, links="ids", schema=schema), "goal") == ["g1", None]
    # without the schema that object is just a nested object
    assert list(to_dataframe(result, links="explode").columns) == ["goal.id", "goal.title"]


def test_malformed_server_schemas_are_rejected_with_the_part_named() -> None:
    bad_ref = {"refs": {"k": {"forward-identity": ["a", "goals"]}}, "blobs": {}}
    with pytest.raises(FrameError, match=r"refs\['k'\] should have 'forward-identity'"):
        to_dataframe(_result(), schema=bad_ref)
    with pytest.raises(FrameError, match="schema must be"):
        to_dataframe(_result(), schema=["goals"])  # type: ignore[arg-type]


# --- a mapping of type names ----------------------------------------------------------


def test_a_type_mapping_types_columns_including_nested_paths_and_flattened_names() -> None:
    schema = {
        "goals": {"createdAt": "date", "priority": "number", "meta.owner": "json"},
        "goals.todos": {"dueDate": "date"},
    }
    frame = to_dataframe(_result(), links="explode", schema=schema)
    assert str(frame["createdAt"].dtype) == "datetime64[us, UTC]"
    assert frame["meta.owner"].dtype == object
    assert str(frame["todos.dueDate"].dtype) == "datetime64[us, UTC]"


def test_any_means_json_and_unknown_type_names_are_rejected() -> None:
    frame = to_dataframe(_result(), schema={"goals": {"title": "any"}})
    assert frame["title"].dtype == object
    with pytest.raises(FrameError, match=r"schema\['goals'\]\['title'\] is 'text'; expected one"):
        to_dataframe(_result(), schema={"goals": {"title": "text"}})
    with pytest.raises(FrameError, match=r"schema\['goals'\] should map attribute names"):
        to_dataframe(_result(), schema={"goals": "string"})


def test_numbers_are_int64_when_all_integral_and_float64_otherwise() -> None:
    schema = {"t": {"whole": "number", "part": "number", "none": "number"}}
    rows = [
        {"id": "1", "whole": 1.0, "part": 1, "none": None},
        {"id": "2", "whole": 3, "part": 0.5},
        {"id": "3"},
    ]
    frame = to_dataframe({"t": rows}, schema=schema)
    assert frame["whole"].dtype == "Int64"
    assert cells(frame, "whole") == [1, 3, None]
    assert frame["part"].dtype == "Float64"
    assert cells(frame, "part") == [1.0, 0.5, None]
    assert frame["none"].dtype == "Int64"
    assert frame["none"].isna().all()


def test_values_that_defy_the_schema_warn_and_are_kept() -> None:
    schema = {"t": {"n": "number", "s": "string", "b": "boolean", "d": "date"}}
    rows = [{"id": "1", "n": True, "s": 5, "b": 1, "d": False}]
    with pytest.warns(SchemaMismatchWarning) as caught:
        frame = to_dataframe({"t": rows}, schema=schema)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 4
    assert {w.filename for w in caught} == {__file__}  # points at the caller's line
    assert messages[0].startswith("column 'b' is declared 'boolean' in the schema but holds int")
    # each column is typed from its values instead: nothing is coerced or lost
    assert frame["n"].dtype == "boolean"
    assert frame["n"].tolist() == [True]
    assert frame["s"].dtype == "Int64"
    assert frame["s"].tolist() == [5]
    assert frame["b"].tolist() == [1]
    assert frame["d"].dtype == "boolean"
    assert frame["d"].tolist() == [False]


def test_numbers_too_large_for_the_declared_type_warn_and_are_kept() -> None:
    rows = [{"id": "1", "n": 2**64}, {"id": "2", "n": 0.5}]
    with pytest.warns(SchemaMismatchWarning, match="'n' is declared 'number' .* too large"):
        frame = to_dataframe({"t": rows}, schema={"t": {"n": "number"}})
    assert frame["n"].dtype == object
    assert frame["n"].tolist() == [2**64, 0.5]


def test_no_warning_when_the_values_fit() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_dataframe(goals_result(50), schema=GOALS_SCHEMA, links="explode")


# --- dates ---------------------------------------------------------------------------


def test_mixed_date_encodings_become_one_utc_column() -> None:
    values = [
        1_735_689_600_000,  # epoch ms
        1_735_689_600_000.5,  # fractional ms
        "2025-01-01",  # bare date
        "2025-01-01T02:00:00+02:00",  # offset
        "2025-01-01T00:00:00",  # no zone: UTC
        "2025-01-01T00:00:00.000123Z",  # microseconds
        "2025/01/01",  # a non-ISO form the server accepts
        None,
    ]
    rows = [{"id": str(i), "d": v} for i, v in enumerate(values)]
    frame = to_dataframe({"t": rows}, schema={"t": {"d": "date"}})

    assert str(frame["d"].dtype) == "datetime64[us, UTC]"
    midnight = _ts("2025-01-01")
    assert frame["d"].tolist()[:7] == [
        midnight,
        midnight + pd.Timedelta(microseconds=500),
        midnight,
        midnight,
        midnight,
        midnight + pd.Timedelta(microseconds=123),
        midnight,
    ]
    assert frame["d"].isna().tolist() == [False] * 7 + [True]


def test_nanosecond_strings_keep_their_digits() -> None:
    rows = [{"id": "1", "d": "2025-01-01T00:00:00.000000001Z"}, {"id": "2", "d": 0}]
    frame = to_dataframe({"t": rows}, schema={"t": {"d": "date"}})
    assert str(frame["d"].dtype) == "datetime64[ns, UTC]"
    assert frame["d"].tolist() == [
        _ts("2025-01-01") + pd.Timedelta(nanoseconds=1),
        _ts("1970-01-01"),
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1e16], "beyond the range of JavaScript dates"),
        # pandas 2 cannot parse a string past 2262 at all; pandas 3 can, but not in ns
        (
            ["2025-01-01T00:00:00.000000001Z", "3000-01-01"],
            "beyond the year 2262|'3000-01-01' is outside the range",
        ),
    ],
)
def test_dates_no_datetime64_can_hold_are_an_error(values: list[Any], message: str) -> None:
    rows = [{"id": str(i), "d": v} for i, v in enumerate(values)]
    with pytest.raises(FrameError, match=message):
        to_dataframe({"t": rows}, schema={"t": {"d": "date"}})


@pytest.mark.parametrize("bad", ["not a date", ""])
def test_an_unreadable_date_is_an_error_naming_it(bad: str) -> None:
    rows = [{"id": "1", "d": "2025-01-01"}, {"id": "2", "d": bad}]
    with pytest.raises(FrameError, match=f"column 'd' holds dates, but {bad!r} cannot be read"):
        to_dataframe({"t": rows}, schema={"t": {"d": "date"}})


def test_strings_are_never_guessed_to_be_dates_without_being_asked() -> None:
    rows = [{"id": "1", "d": "2025-01-01"}, {"id": "2", "d": "2025-01-02T00:00:00Z"}]
    assert to_dataframe({"t": rows})["d"].dtype == "string"
    parsed = to_dataframe({"t": rows}, parse_dates=["d"])
    assert str(parsed["d"].dtype) == "datetime64[us, UTC]"
    kept = to_dataframe({"t": rows}, schema={"t": {"d": "date"}}, parse_dates=False)
    assert kept["d"].tolist() == ["2025-01-01", "2025-01-02T00:00:00Z"]
    with pytest.raises(FrameError, match="parse_dates names columns that 't' does not have: 'e'"):
        to_dataframe({"t": rows}, parse_dates=["e"])


# --- empty results and schema-only columns ------------------------------------------


def test_an_empty_result_keeps_the_schema_columns_and_dtypes() -> None:
    frame = to_dataframe({"goals": []}, schema=GOALS_SCHEMA)
    assert len(frame) == 0
    assert frame.index.name == "id"
    assert dict(frame.dtypes.astype(str)) == {
        "title": "string",
        "priority": "Int64",
        "done": "boolean",
        "createdAt": "datetime64[us, UTC]",
        "meta": "object",
    }
    table = to_arrow({"goals": []}, schema=GOALS_SCHEMA)
    assert table.column_names == ["id", "title", "priority", "done", "createdAt", "meta"]
    assert table.schema.field("createdAt").type == pa.timestamp("us", tz="UTC")


def test_an_empty_result_without_a_schema_has_only_the_id() -> None:
    frame = to_dataframe({"goals": []})
    assert frame.shape == (0, 0)
    assert frame.index.name == "id"
    assert frame.index.dtype == "string"
    assert to_arrow({"goals": []}).schema == pa.schema([pa.field("id", pa.string())])


# A hand-written mapping and a server-shaped schema (what db.schema() returns: blobs with
# an untyped "id" record, refs) declaring the same four attributes of "goals".
_MAPPING = {"goals": {"title": "string", "priority": "number", "done": "boolean", "at": "date"}}


def _blob(etype: str, label: str, checked: str | None) -> dict[str, Any]:
    return {"forward-identity": [f"{etype}-{label}", etype, label], "checked-data-type": checked}


_SERVER_SHAPED = {
    "blobs": {
        "goals": {
            label: _blob("goals", label, checked)
            for label, checked in [
                ("id", None),
                ("title", "string"),
                ("priority", "number"),
                ("done", "boolean"),
                ("at", "date"),
            ]
        },
    },
    "refs": {},
}


def _goals_in_server_order() -> dict[str, Any]:
    # The server gives each entity's keys in no fixed order, and leaves missing ones out.
    return {
        "goals": [
            {"done": True, "at": 1_735_689_600_000, "id": "g1", "priority": 2, "title": "a"},
            {"id": "g2", "title": "b", "at": "2025-01-02T03:04:05Z"},
        ]
    }


_EXPECTED_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("title", pa.string()),
    pa.field("priority", pa.int64()),
    pa.field("done", pa.bool_()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
]


@pytest.mark.parametrize("schema", [_MAPPING, _SERVER_SHAPED], ids=["mapping", "server"])
def test_an_empty_arrow_table_has_the_columns_and_types_of_a_full_one(
    schema: dict[str, Any],
) -> None:
    empty = to_arrow({"goals": []}, schema=schema)
    full = to_arrow(_goals_in_server_order(), schema=schema)

    assert list(empty.schema) == _EXPECTED_FIELDS
    assert list(full.schema) == _EXPECTED_FIELDS
    both = pa.concat_tables([empty, full])
    assert both.column("id").to_pylist() == ["g1", "g2"]
    assert both.column("priority").to_pylist() == [2, None]


@pytest.mark.parametrize("schema", [_MAPPING, _SERVER_SHAPED], ids=["mapping", "server"])
def test_an_empty_frame_has_the_index_columns_and_dtypes_of_a_full_one(
    schema: dict[str, Any],
) -> None:
    empty = to_dataframe({"goals": []}, schema=schema)
    full = to_dataframe(_goals_in_server_order(), schema=schema)

    assert empty.index.name == full.index.name == "id"
    assert empty.index.dtype == full.index.dtype == "string"
    assert list(empty.columns) == list(full.columns) == ["title", "priority", "done", "at"]
    pd.testing.assert_series_equal(empty.dtypes, full.dtypes)
    both = pd.concat([empty, full])
    pd.testing.assert_series_equal(both.dtypes, full.dtypes)
    assert both.index.dtype == "string"
    with_id = to_dataframe({"goals": []}, schema=schema, index=None)
    assert list(with_id.columns) == ["id", "title", "priority", "done", "at"]


def test_columns_follow_the_schema_not_the_order_keys_arrive_in() -> None:
    reversed_keys = {"goals": [{"x": 1, "at": 0, "title": "a", "id": "g1"}]}
    frame = to_dataframe(reversed_keys, schema=_MAPPING, index=None)
    # id, then the declared attributes in the schema's order, then the rest
    assert list(frame.columns) == ["id", "title", "priority", "done", "at", "x"]
    # without a schema: id first, the rest as they first appear
    assert list(to_dataframe(reversed_keys, index=None).columns) == ["id", "x", "at", "title"]


def test_flattened_and_exploded_columns_stay_where_their_key_goes() -> None:
    result = {
        "goals": [
            {
                "todos": [{"text": "t", "id": "t1"}],
                "meta": {"owner": "ann", "n": 1},
                "id": "g1",
                "title": "a",
            }
        ]
    }
    schema = {"goals": {"title": "string", "meta.n": "number"}, "goals.todos": {"text": "string"}}
    frame = to_dataframe(result, links="explode", schema=schema, index=None)
    assert list(frame.columns) == ["id", "title", "meta.owner", "meta.n", "todos.id", "todos.text"]


def test_a_column_declared_json_in_a_mapping_is_kept_whole() -> None:
    result = {"goals": [{"id": "g1", "meta": {"owner": "ann"}}, {"id": "g2", "meta": [1, 2]}]}
    frame = to_dataframe(result, schema={"goals": {"meta": "json"}})
    assert list(frame.columns) == ["meta"]
    assert frame["meta"].dtype == object
    assert frame["meta"].tolist() == [{"owner": "ann"}, [1, 2]]
    assert list(to_dataframe({"goals": []}, schema={"goals": {"meta": "json"}}).columns) == ["meta"]


def test_attributes_without_a_checked_type_need_arrow_promotion_to_concatenate() -> None:
    # Their type comes from the values, so an empty table cannot know it: it holds an
    # all-null column that Arrow's promotion unifies with whatever a full table has.
    schema = {"goals": {**_MAPPING["goals"], "tags": "json"}}
    empty = to_arrow({"goals": []}, schema=schema)
    full = to_arrow({"goals": [{"id": "g1", "tags": ["x"]}]}, schema=schema)
    assert empty.schema.field("tags").type == pa.null()
    both = pa.concat_tables([empty, full], promote_options="default")
    assert both.column("tags").to_pylist() == [["x"]]


def test_declared_attributes_no_entity_holds_are_all_null_columns() -> None:
    frame = to_dataframe({"goals": [{"id": "g1", "title": "a"}]}, schema=GOALS_SCHEMA)
    assert list(frame.columns) == ["title", "priority", "done", "createdAt", "meta"]
    assert frame["done"].dtype == "boolean"
    assert frame["done"].isna().all()


# --- backends and overrides --------------------------------------------------------


def test_dtype_backend_pyarrow_and_numpy() -> None:
    arrow = to_dataframe(_result(), schema=GOALS_SCHEMA, dtype_backend="pyarrow")
    assert arrow["priority"].dtype == pd.ArrowDtype(pa.int64())
    assert arrow["title"].dtype == pd.ArrowDtype(pa.string())
    assert arrow["createdAt"].dtype == pd.ArrowDtype(pa.timestamp("us", tz="UTC"))
    assert arrow["todos"].dtype == object

    numpy = to_dataframe(_result(), schema=GOALS_SCHEMA, dtype_backend=None)
    assert numpy["priority"].dtype == "float64"  # NumPy ints cannot hold a missing value
    assert numpy["done"].dtype == "bool"
    assert str(numpy["createdAt"].dtype) == "datetime64[us, UTC]"


def test_dtypes_override_columns_and_the_index() -> None:
    frame = to_dataframe(
        _result(), schema=GOALS_SCHEMA, dtypes={"priority": "float64", "id": "category"}
    )
    assert frame["priority"].dtype == "float64"
    assert frame.index.dtype == "category"

    with pytest.raises(FrameError, match="dtypes names columns that 'goals' does not have: 'nope'"):
        to_dataframe(_result(), dtypes={"nope": "int64"})
    with pytest.raises(FrameError, match="cannot convert column 'title' to 'int64'"):
        to_dataframe(_result(), dtypes={"title": "int64"})
