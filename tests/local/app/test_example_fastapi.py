"""examples/fastapi_pydantic against a LocalServer, through FastAPI's TestClient."""

from __future__ import annotations

import importlib.util
import uuid
import warnings
from pathlib import Path

import pytest

from instantdb_local import LocalServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

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
