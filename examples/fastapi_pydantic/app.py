"""A todo API: FastAPI + Pydantic in front of Instant.

Queries return plain dicts; Pydantic models validate them on the way in and out.
Run it against the local server:

    instantdb-local run -- uvicorn examples.fastapi_pydantic.app:app
"""

from __future__ import annotations

import os
import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from instantdb import Instant, id

db = Instant(api_uri=os.environ.get("INSTANT_API_URI", "https://api.instantdb.com"))
app = FastAPI(title="Todos")


class TodoIn(BaseModel):
    text: str
    done: bool = False


class Todo(TodoIn):
    id: str


class TodoPatch(BaseModel):
    text: str | None = None
    done: bool | None = None


@app.post("/todos", response_model=Todo)
def create_todo(todo: TodoIn) -> Todo:
    todo_id = id()
    db.transact(db.tx.todos[todo_id].update(todo.model_dump()))
    return Todo(id=todo_id, **todo.model_dump())


@app.get("/todos", response_model=list[Todo])
def list_todos(done: bool | None = None) -> list[Todo]:
    where = {} if done is None else {"where": {"done": done}}
    rows = db.query({"todos": {"$": where}})["todos"]
    return [Todo.model_validate(row) for row in rows]


@app.get("/todos/{todo_id}", response_model=Todo)
def get_todo(todo_id: str) -> Todo:
    if not _is_uuid(todo_id):
        raise HTTPException(status_code=404, detail="No such todo")
    rows = db.query({"todos": {"$": {"where": {"id": todo_id}}}})["todos"]
    if not rows:
        raise HTTPException(status_code=404, detail="No such todo")
    return Todo.model_validate(rows[0])


@app.patch("/todos/{todo_id}", response_model=Todo)
def update_todo(todo_id: str, patch: TodoPatch) -> Todo:
    get_todo(todo_id)  # 404 before writing, so a typo never creates a todo
    db.transact(db.tx.todos[todo_id].update(patch.model_dump(exclude_none=True)))
    return get_todo(todo_id)


@app.delete("/todos/{todo_id}", status_code=204)
def delete_todo(todo_id: str) -> None:
    db.transact(db.tx.todos[todo_id].delete())


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
