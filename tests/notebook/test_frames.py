"""to_dataframe / to_dataframes / to_arrow: shapes, link modes, payloads and errors."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from instantdb_notebook import (
    ErrorPayloadError,
    FrameError,
    FrameInfo,
    NamespaceError,
    to_arrow,
    to_dataframe,
    to_dataframes,
)
from tests.notebook.frames_data import cells


def _goals() -> dict[str, Any]:
    return {
        "goals": [
            {
                "id": "g1",
                "title": "Ship",
                "priority": 2,
                "meta": {"owner": "ann", "labels": {"color": "red"}},
                "todos": [
                    {"id": "t1", "text": "write", "done": False},
                    {"id": "t2", "text": "test", "done": True},
                ],
            },
            {"id": "g2", "title": "Rest", "meta": {"owner": "bob"}, "todos": []},
            {
                "id": "g3",
                "title": "Docs",
                "priority": 5,
                "todos": [{"id": "t1", "text": "write", "done": False}],
            },
        ]
    }


# --- one namespace, flattening -------------------------------------------------------


def test_one_row_per_entity_indexed_by_id_with_objects_flattened() -> None:
    frame = to_dataframe(_goals())

    assert frame.index.name == "id"
    assert frame.index.tolist() == ["g1", "g2", "g3"]
    assert list(frame.columns) == ["title", "priority", "meta.owner", "meta.labels.color", "todos"]
    assert cells(frame, "priority") == [2, None, 5]
    assert cells(frame, "meta.owner") == ["ann", "bob", None]
    assert cells(frame, "meta.labels.color") == ["red", None, None]


def test_sep_names_flattened_columns_and_flatten_false_keeps_objects() -> None:
    assert "meta__labels__color" in to_dataframe(_goals(), sep="__").columns

    frame = to_dataframe(_goals(), flatten=False)
    assert list(frame.columns) == ["title", "priority", "meta", "todos"]
    assert frame["meta"].dtype == object
    assert cells(frame, "meta") == [
        {"owner": "ann", "labels": {"color": "red"}},
        {"owner": "bob"},
        None,
    ]


def test_a_key_mixing_objects_and_other_values_keeps_those_values_in_its_own_column() -> None:
    result = {
        "things": [
            {"id": "1", "meta": {"a": 1}},
            {"id": "2", "meta": "plain text"},
            {"id": "3", "meta": {}},
            {"id": "4", "meta": None},
            {"id": "5", "meta": [1, 2]},
        ]
    }
    frame = to_dataframe(result)

    assert list(frame.columns) == ["meta", "meta.a"]
    assert cells(frame, "meta") == [None, "plain text", {}, None, [1, 2]]
    assert cells(frame, "meta.a") == [1, None, None, None, None]


def test_a_null_object_adds_no_column_of_its_own() -> None:
    frame = to_dataframe({"things": [{"id": "1", "meta": {"a": 1}}, {"id": "2", "meta": None}]})
    assert list(frame.columns) == ["meta.a"]


def test_a_column_that_is_null_everywhere_is_kept() -> None:
    frame = to_dataframe({"things": [{"id": "1", "gone": None}, {"id": "2", "gone": None}]})
    assert list(frame.columns) == ["gone"]
    assert cells(frame, "gone") == [None, None]


def test_keys_first_seen_late_are_kept() -> None:
    rows: list[dict[str, Any]] = [{"id": str(i), "n": i} for i in range(3000)]
    rows[150]["late"] = "x"
    rows[2999]["last"] = {"deep": 1.5}
    frame = to_dataframe({"rows": rows})

    assert list(frame.columns) == ["n", "late", "last.deep"]
    assert frame["late"].count() == 1
    assert frame.loc["150", "late"] == "x"
    assert frame.loc["2999", "last.deep"] == 1.5


def test_a_key_that_is_not_a_string_keeps_its_values_under_its_string_name() -> None:
    # Results built in Python (not parsed JSON) may hold int keys: the column is named by
    # the key's string and still holds the values.
    frame = to_dataframe({"things": [{"id": "1", 7: "a"}, {"id": "2", 7: "b"}]})
    assert list(frame.columns) == ["7"]
    assert cells(frame, "7") == ["a", "b"]


def test_a_column_mixing_ints_and_strings_keeps_every_value_as_given() -> None:
    frame = to_dataframe({"t": [{"id": "1", "v": 1}, {"id": "2", "v": "one"}, {"id": "3"}]})
    assert frame["v"].dtype == object
    assert cells(frame, "v") == [1, "one", None]


def test_booleans_are_never_mixed_up_with_numbers() -> None:
    frame = to_dataframe({"t": [{"id": "1", "v": 1.5}, {"id": "2", "v": True}]})
    assert frame["v"].dtype == object
    assert [type(v) for v in frame["v"]] == [float, bool]


def test_inferred_numeric_columns() -> None:
    rows = [
        {"id": "1", "ints": 1, "mixed": 1, "huge": 2**70},
        {"id": "2", "ints": 2, "mixed": 2.5, "huge": 1},
        {"id": "3"},
    ]
    frame = to_dataframe({"t": rows})
    assert frame["ints"].dtype == "Int64"
    assert frame["mixed"].dtype == "Float64"
    assert cells(frame, "mixed") == [1.0, 2.5, None]
    # beyond int64: kept exactly, as Python ints
    assert frame["huge"].dtype == object
    assert cells(frame, "huge") == [2**70, 1, None]


def test_a_name_clash_between_an_attribute_and_a_flattened_column_is_an_error() -> None:
    result = {"t": [{"id": "1", "meta.owner": "x", "meta": {"owner": "y"}}]}
    with pytest.raises(FrameError, match=r"'meta.owner'.*sep="):
        to_dataframe(result)
    frame = to_dataframe(result, sep="/")
    assert list(frame.columns) == ["meta.owner", "meta/owner"]


# --- link modes ------------------------------------------------------------------------


def test_links_nested_keeps_the_lists_themselves() -> None:
    result = _goals()
    frame = to_dataframe(result, links="nested")
    assert frame["todos"].dtype == object
    assert frame.loc["g1", "todos"] is result["goals"][0]["todos"]
    assert frame.loc["g2", "todos"] == []


def test_links_ids_reduces_links_to_lists_of_ids() -> None:
    frame = to_dataframe(_goals(), links="ids")
    assert cells(frame, "todos") == [["t1", "t2"], [], ["t1"]]


def test_links_explode_makes_one_row_per_child_prefixed_by_the_label() -> None:
    frame = to_dataframe(_goals(), links="explode")

    assert frame.index.tolist() == ["g1", "g1", "g2", "g3"]
    assert list(frame.columns) == [
        "title",
        "priority",
        "meta.owner",
        "meta.labels.color",
        "todos.id",
        "todos.text",
        "todos.done",
    ]
    assert cells(frame, "title") == ["Ship", "Ship", "Rest", "Docs"]
    assert cells(frame, "todos.id") == ["t1", "t2", None, "t1"]
    assert cells(frame, "todos.done") == [False, True, None, False]
    assert frame["todos.done"].dtype == "boolean"


def test_explode_follows_nested_links_and_pairs_every_child_of_two_links() -> None:
    result = {
        "goals": [
            {
                "id": "g1",
                "todos": [
                    {"id": "t1", "tags": [{"id": "x"}, {"id": "y"}]},
                    {"id": "t2", "tags": []},
                ],
                "owners": [{"id": "u1"}, {"id": "u2"}],
            },
            {"id": "g2", "todos": [], "owners": [{"id": "u3"}]},
        ]
    }
    frame = to_dataframe(result, links="explode", index=None)

    assert list(frame.columns) == ["id", "todos.id", "todos.tags.id", "owners.id"]
    rows = list(frame.astype(object).where(frame.notna(), None).itertuples(index=False))
    assert rows == [
        ("g1", "t1", "x", "u1"),
        ("g1", "t1", "x", "u2"),
        ("g1", "t1", "y", "u1"),
        ("g1", "t1", "y", "u2"),
        ("g1", "t2", None, "u1"),
        ("g1", "t2", None, "u2"),
        ("g2", None, None, "u3"),
    ]


def test_links_separate_splits_links_into_frames_with_the_parent_id() -> None:
    result = {
        "goals": [
            {"id": "g1", "title": "a", "todos": [{"id": "t1", "tags": [{"id": "x", "n": 1}]}]},
            {"id": "g2", "title": "b", "todos": [{"id": "t1", "tags": []}]},
        ]
    }
    frame = to_dataframe(result, links="separate")

    assert list(frame.columns) == ["title"]
    info = frame.attrs["instant"]
    assert list(info.linked) == ["goals.todos", "goals.todos.tags"]
    todos = info.linked["goals.todos"]
    assert todos.index.tolist() == ["t1", "t1"]
    assert cells(todos, "goals_id") == ["g1", "g2"]
    assert list(todos.columns) == ["goals_id"]
    tags = info.linked["goals.todos.tags"]
    assert cells(tags, "todos_id") == ["t1"]
    assert cells(tags, "n") == [1]
    assert tags.attrs["instant"].namespace == "goals.todos.tags"


def test_parse_dates_and_dtypes_of_separate_links_apply_to_the_main_frame_only() -> None:
    result = {"goals": [{"id": "g1", "due": "2025-01-01", "todos": [{"id": "t1", "due": "x"}]}]}
    frame = to_dataframe(result, links="separate", parse_dates=["due"], dtypes={"id": "category"})
    assert str(frame["due"].dtype) == "datetime64[us, UTC]"
    todos = frame.attrs["instant"].linked["goals.todos"]
    assert cells(todos, "due") == ["x"]
    assert todos.index.dtype == "string"


def test_a_dangling_link_target_stays_a_row_without_an_id() -> None:
    # The server may return {} for a link whose target is gone (server-semantics, 10).
    result = {"goals": [{"id": "g1", "todos": [{}, {"id": "t1"}]}]}
    assert cells(to_dataframe(result, links="ids"), "todos") == [[None, "t1"]]
    frame = to_dataframe(result, links="explode")
    assert cells(frame, "todos.id") == [None, "t1"]


def test_lists_of_objects_without_ids_are_attributes_not_links() -> None:
    result = {"t": [{"id": "1", "points": [{"x": 1}, {"x": 2}]}]}
    frame = to_dataframe(result, links="explode")
    assert list(frame.columns) == ["points"]
    assert frame.loc["1", "points"] == [{"x": 1}, {"x": 2}]


# --- payloads, namespaces, attrs --------------------------------------------------------


def test_an_ok_subscription_payload_converts_like_its_result() -> None:
    page_info = {"goals": {"start_cursor": ["goals", "id", "g1", 0], "has_next_page": True}}
    payload = {"type": "ok", "data": _goals(), "page_info": page_info, "session_info": None}
    frame = to_dataframe(payload)

    pd.testing.assert_frame_equal(frame, to_dataframe(_goals()))
    info = frame.attrs["instant"]
    assert isinstance(info, FrameInfo)
    assert info.namespace == "goals"
    assert info.page_info == page_info["goals"]
    assert info.payload is payload


def test_an_error_payload_raises_with_its_message_and_cause() -> None:
    cause = RuntimeError("Permission denied: not allowed to view goals")
    payload = {"type": "error", "error": cause, "ready_state": "open", "is_closed": False}
    with pytest.raises(ErrorPayloadError, match="Permission denied") as caught:
        to_dataframe(payload)
    assert caught.value.__cause__ is cause
    assert caught.value.payload is payload

    with pytest.raises(ErrorPayloadError, match="bad query"):
        to_dataframes({"type": "error", "error": {"message": "bad query"}})
    with pytest.raises(ErrorPayloadError, match="no error details"):
        to_arrow({"type": "error"})


def test_payloads_that_are_not_data_are_rejected() -> None:
    with pytest.raises(FrameError, match="type 'progress'"):
        to_dataframe({"type": "progress"})
    with pytest.raises(FrameError, match="no result under 'data'"):
        to_dataframe({"type": "ok", "data": None})
    with pytest.raises(FrameError, match="got list"):
        to_dataframe([{"id": "1"}])  # type: ignore[arg-type]


def test_the_namespace_must_be_named_when_there_are_several() -> None:
    result = {"goals": [{"id": "g1"}], "todos": [{"id": "t1"}]}
    with pytest.raises(NamespaceError, match=r"several namespaces \('goals', 'todos'\)"):
        to_dataframe(result)
    with pytest.raises(NamespaceError, match=r"no namespace 'tags'; it holds 'goals', 'todos'"):
        to_dataframe(result, "tags")
    with pytest.raises(NamespaceError, match="no namespaces"):
        to_dataframe({})
    assert to_dataframe(result, "todos").index.tolist() == ["t1"]


def test_malformed_results_name_the_offending_part() -> None:
    with pytest.raises(FrameError, match=r"result\['goals'\] should be a list"):
        to_dataframe({"goals": {"id": "g1"}})
    with pytest.raises(FrameError, match=r"goals\[1\] should be an entity object, got str"):
        to_dataframe({"goals": [{"id": "g1"}, "g2"]})


def test_options_are_checked_before_any_work() -> None:
    result = _goals()
    with pytest.raises(FrameError, match="links must be one of"):
        to_dataframe(result, links="flat")  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="sep must be a non-empty string"):
        to_dataframe(result, sep="")
    with pytest.raises(FrameError, match="flatten must be True or False"):
        to_dataframe(result, flatten="yes")  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="index must be a column name or None"):
        to_dataframe(result, index=0)  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="dtype_backend must be"):
        to_dataframe(result, dtype_backend="numpy")  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="parse_dates must be True, False or a list"):
        to_dataframe(result, parse_dates="createdAt")
    with pytest.raises(FrameError, match="dtypes must map column names"):
        to_dataframe(result, dtypes=["title"])  # type: ignore[arg-type]


def test_index_none_keeps_id_as_a_column_and_index_may_name_another_column() -> None:
    frame = to_dataframe(_goals(), index=None)
    assert isinstance(frame.index, pd.RangeIndex)
    assert cells(frame, "id") == ["g1", "g2", "g3"]

    by_title = to_dataframe(_goals(), index="title")
    assert by_title.index.tolist() == ["Ship", "Rest", "Docs"]
    assert "id" in by_title.columns

    with pytest.raises(FrameError, match="no 'owner' to use as the index; pass index=None"):
        to_dataframe(_goals(), index="owner")


def test_frame_info_is_shared_not_copied_by_pandas_operations() -> None:
    frame = to_dataframe(_goals())
    info = frame.attrs["instant"]
    derived = frame[frame["priority"] > 1].head(1)
    assert derived.attrs["instant"] is info
    assert copy.deepcopy(info) is info
    assert repr(info) == "FrameInfo(namespace='goals', page_info=None)"


def test_frames_with_their_info_can_be_saved(tmp_path: Path) -> None:
    payload = {"type": "ok", "data": _goals(), "page_info": {"goals": {"has_next_page": True}}}
    frame = to_dataframe(payload)
    assert frame.attrs["instant"] == {"namespace": "goals", "page_info": {"has_next_page": True}}

    # pandas writes attrs into Parquet metadata as JSON: only namespace and page_info go
    frame.drop(columns="todos").to_parquet(tmp_path / "goals.parquet")
    restored = pd.read_parquet(tmp_path / "goals.parquet")
    assert restored.attrs["instant"] == frame.attrs["instant"]

    unpickled = pickle.loads(pickle.dumps(frame))
    assert unpickled.attrs["instant"].payload == payload
    assert unpickled.attrs["instant"].namespace == "goals"


def test_the_result_is_not_modified() -> None:
    result = _goals()
    before = copy.deepcopy(result)
    for links in ("nested", "ids", "explode", "separate"):
        to_dataframe(result, links=links)  # type: ignore[arg-type]
    to_dataframes(result)
    to_arrow(result, links="explode")
    assert result == before


# --- to_dataframes -------------------------------------------------------------------


def test_to_dataframes_gives_one_frame_per_namespace_path() -> None:
    result = {**_goals(), "tags": [{"id": "x", "name": "urgent"}]}
    frames = to_dataframes(result)

    assert list(frames) == ["goals", "goals.todos", "tags"]
    assert list(frames["goals"].columns) == [
        "title",
        "priority",
        "meta.owner",
        "meta.labels.color",
    ]
    todos = frames["goals.todos"]
    assert list(todos.columns) == ["goals_id", "text", "done"]
    # t1 is linked from g1 and g3: one row for each link
    assert todos.index.tolist() == ["t1", "t2", "t1"]
    assert cells(todos, "goals_id") == ["g1", "g1", "g3"]
    assert frames["goals.todos"].attrs["instant"].namespace == "goals.todos"
    assert cells(frames["tags"], "name") == ["urgent"]


def test_to_dataframes_joins_reconstruct_the_nested_result() -> None:
    result = _goals()
    frames = to_dataframes(result)
    goals, todos = frames["goals"], frames["goals.todos"]

    joined = todos.reset_index().merge(
        goals, left_on="goals_id", right_index=True, suffixes=("", "_goal")
    )
    assert cells(joined, "title") == ["Ship", "Ship", "Docs"]
    for goal in result["goals"]:
        mine = todos[todos["goals_id"] == goal["id"]].reset_index()
        rebuilt = [
            {"id": row["id"], "text": row["text"], "done": bool(row["done"])}
            for _, row in mine.iterrows()
        ]
        assert rebuilt == goal["todos"]


def test_to_dataframes_parent_column_template_and_dtypes_per_path() -> None:
    frames = to_dataframes(
        _goals(), parent_column="parent_{parent}", dtypes={"goals.todos": {"text": "category"}}
    )
    assert "parent_goals" in frames["goals.todos"].columns
    assert frames["goals.todos"]["text"].dtype == "category"

    for template in ("parent", "{parent}_{id}", "{parent"):
        with pytest.raises(FrameError, match="containing '\\{parent\\}' and no other braces"):
            to_dataframes(_goals(), parent_column=template)
    with pytest.raises(FrameError, match=r"namespace paths the result does not have: goals\.tags"):
        to_dataframes(_goals(), dtypes={"goals.tags": {"x": "int64"}})


def test_to_dataframes_refuses_a_parent_column_that_would_hide_an_attribute() -> None:
    result = {"goals": [{"id": "g1", "todos": [{"id": "t1", "goals_id": "mine"}]}]}
    with pytest.raises(FrameError, match=r"already have a column 'goals_id'.*parent_column="):
        to_dataframes(result)
    frames = to_dataframes(result, parent_column="_{parent}_id")
    assert cells(frames["goals.todos"], "goals_id") == ["mine"]
    assert cells(frames["goals.todos"], "_goals_id") == ["g1"]


# --- to_arrow ------------------------------------------------------------------------


def test_to_arrow_has_the_same_columns_with_id_first() -> None:
    table = to_arrow(_goals())
    frame = to_dataframe(_goals())

    assert table.column_names == ["id", *frame.columns]
    assert table.schema.field("priority").type == pa.int64()
    assert table.schema.field("title").type == pa.string()
    assert table.column("priority").to_pylist() == [2, None, 5]
    assert table.column("todos").to_pylist()[0] == _goals()["goals"][0]["todos"]
    assert table.schema.metadata == {b"instant.namespace": b"goals"}


def test_to_arrow_explode_and_page_info() -> None:
    payload = {"type": "ok", "data": _goals(), "page_info": {"goals": {"has_next_page": False}}}
    table = to_arrow(payload, links="explode")
    assert table.num_rows == 4
    assert table.column("todos.id").to_pylist() == ["t1", "t2", None, "t1"]
    assert json.loads(table.schema.metadata[b"instant.page_info"]) == {"has_next_page": False}

    with pytest.raises(FrameError, match="links='separate' is not available"):
        to_arrow(_goals(), links="separate")


def test_to_arrow_stores_what_arrow_cannot_hold_exactly_as_json_text() -> None:
    result = {
        "t": [
            {"id": "1", "v": 1, "nested": [{"x": 1.5}]},
            {"id": "2", "v": "one", "nested": [{"x": True}]},
        ]
    }
    table = to_arrow(result)
    for name in ("v", "nested"):
        field = table.schema.field(name)
        assert field.type == pa.string()
        assert field.metadata == {b"instant.encoding": b"json"}
    assert [json.loads(v) for v in table.column("v").to_pylist()] == [1, "one"]
    assert [json.loads(v) for v in table.column("nested").to_pylist()] == [
        [{"x": 1.5}],
        [{"x": True}],
    ]


def test_importing_the_package_loads_neither_pandas_nor_pyarrow() -> None:
    code = (
        "import sys, instantdb_notebook\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == ""
