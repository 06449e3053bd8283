"""Typing frames from a real ``db.schema()``: with ``to_dataframe`` and through ``%instant``
with ``InstantMagic.use_schema``, against the local server.

The app declares one attribute of each Instant type; its rows mix epoch-millisecond and
ISO dates, integral and fractional numbers, and leave attributes out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from IPython.core.interactiveshell import InteractiveShell

from instantdb import Instant
from instantdb_local import AppCredentials, LocalServer
from instantdb_notebook import to_arrow, to_dataframe
from instantdb_notebook.magics import magic_of
from tests.notebook.frames_data import cells


def _attr(kind: str) -> dict[str, Any]:
    return {"type": kind, "unique": False, "indexed": False, "required": False}


SCHEMA = {
    "attrs": {
        "items": {
            "name": _attr("string"),
            "count": _attr("number"),
            "score": _attr("number"),
            "ok": _attr("boolean"),
            "at": _attr("date"),
            "extra": _attr("json"),
        },
        # only checked types: nothing in an empty result depends on the values
        "notes": {"text": _attr("string"), "n": _attr("number"), "due": _attr("date")},
    },
    "links": {},
}

I1, I2, I3, I4 = (f"00000000-0000-4000-8000-00000000000{n}" for n in range(1, 5))
ITEMS = {
    I1: {"name": "a", "count": 2, "score": 1.5, "ok": True, "at": 1_735_689_600_000,
         "extra": [1, "two"]},
    I2: {"name": "b", "score": 2, "ok": False, "at": "2025-01-02T03:04:05.123Z",
         "extra": "text"},
    I3: {"name": "c", "count": 7, "at": "2025-01-03", "extra": 3},
    I4: {"name": "d"},
}  # fmt: skip
ORDER = [I1, I2, I3, I4]

# What the schema makes of ITEMS (numpy_nullable backend).
DTYPES = {
    "name": "string",
    "count": "Int64",  # all values integral
    "score": "Float64",  # 1.5 among them
    "ok": "boolean",
    "at": "datetime64[us, UTC]",
    "extra": "object",  # json: no checked type, so typed from its mixed values
}


@pytest.fixture(scope="module")
def app(instant_server: LocalServer) -> AppCredentials:
    app = instant_server.create_app("schema typing", schema=SCHEMA)
    with _client(app) as db:
        db.transact([db.tx.items[key].update(values) for key, values in ITEMS.items()])
        db.transact([db.tx.notes[I1].update({"text": "x", "n": 1, "due": 1_735_689_600_000})])
    return app


def _client(app: AppCredentials) -> Instant:
    return Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri)


@pytest.fixture
def db(app: AppCredentials) -> Iterator[Instant]:
    with _client(app) as client:
        yield client


def _check_typed(frame: pd.DataFrame) -> None:
    frame = frame.loc[ORDER]
    assert dict(frame.dtypes.astype(str)) == DTYPES
    assert frame.index.dtype == "string"
    assert cells(frame, "count") == [2, None, 7, None]
    assert cells(frame, "score") == [1.5, 2.0, None, None]
    assert cells(frame, "ok") == [True, False, None, None]
    assert cells(frame, "at") == [
        pd.Timestamp("2025-01-01T00:00:00", tz="UTC"),
        pd.Timestamp("2025-01-02T03:04:05.123", tz="UTC"),
        pd.Timestamp("2025-01-03", tz="UTC"),
        None,
    ]
    # json values exactly as stored: a list, a string, a number
    assert cells(frame, "extra") == [[1, "two"], "text", 3, None]


# -- to_dataframe(result, schema=db.schema()) ----------------------------------------------


def test_db_schema_types_every_attribute(db: Instant) -> None:
    frame = to_dataframe(db.query({"items": {}}), schema=db.schema())
    # id as the index, then the schema's attributes in its order
    assert list(frame.columns) == list(DTYPES)
    _check_typed(frame)


def test_without_the_schema_dates_stay_as_stored(db: Instant) -> None:
    frame = to_dataframe(db.query({"items": {}})).loc[ORDER]
    assert frame["at"].dtype == object
    assert cells(frame, "at") == [1_735_689_600_000, "2025-01-02T03:04:05.123Z", "2025-01-03", None]


def test_an_empty_result_matches_a_full_one_with_db_schema(db: Instant) -> None:
    schema = db.schema()
    full = to_arrow(db.query({"notes": {}}), schema=schema)
    empty = to_arrow({"notes": []}, schema=schema)
    assert empty.schema == full.schema
    assert empty.column_names == ["id", "text", "n", "due"]
    assert pa.concat_tables([empty, full]).column("id").to_pylist() == [I1]

    frame = to_dataframe({"items": []}, schema=schema)
    # an empty number column is Int64: no value says otherwise (docs/dataframes.md)
    assert dict(frame.dtypes.astype(str)) == {**DTYPES, "score": "Int64"}
    assert frame.index.dtype == "string"
    # The json attribute is typed by its values, so an empty table holds it as nulls;
    # Arrow's promotion joins the two (and score: int64 when empty, double when full).
    items = pa.concat_tables(
        [to_arrow({"items": []}, schema=schema), to_arrow(db.query({"items": {}}), schema=schema)],
        promote_options="permissive",  # int64 and double too
    )
    assert items.num_rows == len(ITEMS)


# -- %instant with InstantMagic.use_schema ---------------------------------------------------


@pytest.fixture
def env_shell(
    shell: InteractiveShell, app: AppCredentials, clean_env: pytest.MonkeyPatch
) -> InteractiveShell:
    for key, value in app.env.items():
        clean_env.setenv(key, value)
    return shell


def _run(shell: InteractiveShell, code: str) -> Any:
    result = shell.run_cell(code)
    assert result.success, result.error_in_exec or result.error_before_exec
    return result.result


def test_use_schema_types_the_magics_frames(env_shell: InteractiveShell, db: Instant) -> None:
    _run(env_shell, "%config InstantMagic.use_schema = True")
    frame = _run(env_shell, "%instant items")
    _check_typed(frame)
    pd.testing.assert_frame_equal(
        frame.loc[ORDER], to_dataframe(db.query({"items": {}}), schema=db.schema()).loc[ORDER]
    )
    connection = magic_of(env_shell).connections.current
    assert connection is not None
    assert connection.cached_schema is not None


def test_without_use_schema_no_type_is_guessed(env_shell: InteractiveShell) -> None:
    frame = _run(env_shell, "%instant items").loc[ORDER]
    assert frame["at"].dtype == object
    assert cells(frame, "at") == [1_735_689_600_000, "2025-01-02T03:04:05.123Z", "2025-01-03", None]
    # the other columns are typed from their values alone, as documented
    assert frame["name"].dtype == "string"
    assert frame["count"].dtype == "Int64"
    assert frame["score"].dtype == "Float64"
    connection = magic_of(env_shell).connections.current
    assert connection is not None
    assert connection.cached_schema is None  # never fetched
