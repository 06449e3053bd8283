"""Everything that runs the SDK against the local server: the `init` starter, the quick
start, the FastAPI example, `LocalServer.client()` and the client fixtures."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest

from instantdb_local import LocalServer
from instantdb_local.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 60


def test_init_starter_runs_against_the_local_server(tmp_path):
    target = tmp_path / "starter"
    assert main(["init", str(target)]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "instantdb_local", "run", "--", sys.executable, "main.py"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Get fit"]


def test_quickstart_runs(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "instantdb_local",
            "run",
            "--data",
            str(tmp_path / "d"),
            "--project",
            str(tmp_path),
            "--",
            sys.executable,
            str(ROOT / "examples/quickstart.py"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Get fit -> ['Run 5k', 'Swim 1k']",
        "open: ['Swim 1k']",
        "a guest sees: ['Run 5k']",
    ]


def test_fixtures_with_schema_and_rules(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.delenv("INSTANT_TEST_API_URI", raising=False)
    pytester.makepyfile(
        """
        import asyncio

        import pytest
        from instantdb import id

        SCHEMA = {"attrs": {"todos": {
            "title": {"type": "string", "unique": False, "indexed": False, "required": True},
            "done": {"type": "boolean", "unique": False, "indexed": False, "required": False},
        }}, "links": {}}
        RULES = {"todos": {"allow": {"view": "data.title != 'secret'"}}}


        @pytest.mark.instant_app(schema=SCHEMA, rules=RULES)
        def test_rules_apply_to_guests(instant_db):
            instant_db.transact([
                instant_db.tx.todos[id()].update({"title": "open"}),
                instant_db.tx.todos[id()].update({"title": "secret"}),
            ])
            assert len(instant_db.query({"todos": {}})["todos"]) == 2
            guest = instant_db.as_user(guest=True).query({"todos": {}})["todos"]
            assert [t["title"] for t in guest] == ["open"]


        @pytest.mark.instant_app(schema=SCHEMA)
        def test_schema_applies(instant_db):
            with pytest.raises(Exception, match="required"):
                instant_db.transact(instant_db.tx.todos[id()].update({"done": True}))


        def test_apps_are_fresh(instant_db):
            assert instant_db.query({"todos": {}})["todos"] == []


        def test_async_client(async_instant_db):
            async def main():
                await async_instant_db.transact(
                    async_instant_db.tx.todos[id()].update({"title": "a"})
                )
                return await async_instant_db.query({"todos": {}})

            assert len(asyncio.run(main())["todos"]) == 1
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        "-W",
        "error::ResourceWarning",
        timeout=120,
    )
    result.assert_outcomes(passed=4)


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fastapi_pydantic" / "app.py"


@pytest.fixture
def todo_api(monkeypatch):
    with LocalServer() as server:
        for key, value in server.create_app(title="fastapi-example").env.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location("fastapi_pydantic_example", EXAMPLE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with TestClient(module.app) as client:
            yield client
        module.db.close()


def test_todo_lifecycle(todo_api):
    created = todo_api.post("/todos", json={"text": "write tests"})
    assert created.status_code == 200
    todo = created.json()
    assert todo["text"] == "write tests"
    assert todo["done"] is False
    uuid.UUID(todo["id"])

    assert todo_api.get(f"/todos/{todo['id']}").json() == todo
    done = todo_api.patch(f"/todos/{todo['id']}", json={"done": True}).json()
    assert done == {**todo, "done": True}

    todo_api.post("/todos", json={"text": "second"})
    assert [t["text"] for t in todo_api.get("/todos", params={"done": False}).json()] == ["second"]
    assert len(todo_api.get("/todos").json()) == 2

    assert todo_api.delete(f"/todos/{todo['id']}").status_code == 204
    assert todo_api.get(f"/todos/{todo['id']}").status_code == 404


def test_invalid_input_is_rejected_before_any_write(todo_api):
    assert todo_api.post("/todos", json={"done": True}).status_code == 422
    assert todo_api.get("/todos").json() == []
    assert todo_api.patch(f"/todos/{uuid.uuid4()}", json={"done": True}).status_code == 404
    assert todo_api.get("/todos/not-an-id").status_code == 404
    assert todo_api.get("/todos").json() == []


def test_local_server_clients():
    import asyncio

    from instantdb import id

    with LocalServer() as server:
        with server.client() as db:
            goal = id()
            db.transact(db.tx.goals[goal].update({"title": "sync"}))
            assert db.query({"goals": {}})["goals"] == [{"id": goal, "title": "sync"}]

        async def read() -> object:
            async with server.async_client() as adb:
                return await adb.query({"goals": {}})

        assert asyncio.run(read()) == {"goals": [{"id": goal, "title": "sync"}]}
