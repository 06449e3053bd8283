"""The change outbox: released rows are deleted by the app's next write, never lost and
never replayed into events they did not make."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from instantdb_local import LocalServer
from instantdb_local.engine import AppEngine, Commit
from instantdb_local.errors import ServerError
from instantdb_local.webhooks import service_for
from tests.local.engine.helpers import ADMIN, uid
from tests.local.webhooks.conftest import SCHEMA
from tests.local.webhooks.helpers import create, transact


def outbox(path: Path) -> dict[int, str]:
    """The app's outbox rows (tx -> records), read from the file itself."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT tx, records FROM change_outbox ORDER BY tx").fetchall())
    finally:
        conn.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AppEngine]:
    app = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    app.apply_schema(SCHEMA)
    try:
        yield app
    finally:
        app.close()


def releasing(engine: AppEngine) -> list[Commit]:
    """A listener that keeps each commit and releases its changes, as webhooks do."""
    commits: list[Commit] = []

    def listener(commit: Commit) -> None:
        commits.append(commit)
        if commit.changes:
            engine.release_changes(commit.tx_id)

    engine.add_commit_listener(listener, wants_changes=lambda: True)
    return commits


def goal(engine: AppEngine, n: int, title: str = "a") -> int:
    return engine.transact([["update", "goals", uid(n), {"title": title}]], ADMIN)


def test_the_outbox_row_holds_the_commits_changes_as_json(engine: AppEngine) -> None:
    engine.add_commit_listener(lambda commit: None, wants_changes=lambda: True)
    seen: list[Commit] = []
    engine.add_commit_listener(seen.append)
    tx = goal(engine, 1)
    ((kept_tx, records),) = engine.unreleased_changes()
    assert kept_tx == tx
    assert records == [
        {
            "namespace": "goals",
            "id": uid(1),
            "action": "create",
            "before": None,
            "after": {"id": uid(1), "title": "a"},
        }
    ]
    assert seen[-1].changes_json is not None
    assert json.loads(seen[-1].changes_json) == records


def test_a_released_row_is_deleted_by_the_next_transaction(engine: AppEngine) -> None:
    releasing(engine)
    first = goal(engine, 1)
    # Released, so not handed back; the row itself waits for the next write.
    assert engine.unreleased_changes() == []
    assert list(outbox(engine.path)) == [first]
    second = goal(engine, 2)
    assert list(outbox(engine.path)) == [second]
    assert engine.unreleased_changes() == []


def test_a_rolled_back_transaction_keeps_released_rows_for_the_next(engine: AppEngine) -> None:
    releasing(engine)
    first = goal(engine, 1)
    with pytest.raises(ServerError):
        engine.transact([["update", "nope", "not-a-uuid", {"title": 1}]], ADMIN)
    assert list(outbox(engine.path)) == [first]
    second = goal(engine, 2)
    assert list(outbox(engine.path)) == [second]


def test_flush_and_close_delete_released_rows(tmp_path: Path) -> None:
    engine = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    engine.apply_schema(SCHEMA)
    releasing(engine)
    goal(engine, 1)
    engine.flush_released_changes()
    assert outbox(engine.path) == {}
    goal(engine, 2)
    engine.close()
    assert outbox(engine.path) == {}


def test_an_unreleased_row_survives_and_is_handed_back(tmp_path: Path) -> None:
    engine = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    engine.apply_schema(SCHEMA)
    engine.add_commit_listener(lambda commit: None, wants_changes=lambda: True)
    tx = goal(engine, 1)
    goal(engine, 1, "b")
    engine.close()
    reopened = AppEngine(engine.path, app_id=engine.app_id)
    try:
        handed_back = reopened.unreleased_changes()
    finally:
        reopened.close()
    assert [t for t, _ in handed_back] == [tx, tx + 1]
    assert [r[0]["action"] for _, r in handed_back] == ["create", "update"]


def test_changing_an_apps_webhooks_flushes_its_released_rows() -> None:
    with LocalServer() as server:
        app = server.create_app(title="outbox", schema=SCHEMA)
        engine = server.instance.engine(app.app_id)
        create(app, url="http://127.0.0.1:9/a")
        tx = transact(app, ["update", "goals", str(uuid.uuid4()), {"title": "a"}])
        assert list(outbox(engine.path)) == [tx]
        create(app, url="http://127.0.0.1:9/b")
        assert outbox(engine.path) == {}


def test_a_row_left_after_recording_makes_no_event_for_a_later_webhook(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with LocalServer(data_dir=data) as first:
        app = first.create_app(title="replay", schema=SCHEMA)
        path = first.instance.engine(app.app_id).path
        early = create(app, url="http://127.0.0.1:9/early")
        tx = transact(app, ["update", "goals", str(uuid.uuid4()), {"title": "a"}])
        records = outbox(path)[tx]  # recorded and released; deleted by the next write
        late = create(app, url="http://127.0.0.1:9/late")
    # A crash after the recording, before the app's next write deleted the row,
    # leaves it behind: put it back as such a crash would have.
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO change_outbox (tx, records) VALUES (?, ?)", (tx, records))
    conn.close()
    with LocalServer(data_dir=data) as second:
        service = service_for(second.instance)
        engine = second.instance.engine(app.app_id)
        assert service.store.event(early["id"], tx) is not None
        assert service.store.event(late["id"], tx) is None  # it postdates the transaction
        assert engine.unreleased_changes() == []
        engine.transact([["update", "goals", str(uuid.uuid4()), {"title": "b"}]], ADMIN)
        assert tx not in outbox(path)
