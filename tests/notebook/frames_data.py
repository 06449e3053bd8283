"""Generated query results for the frame tests and bench/bench_frames.py, and a helper
for reading a frame's cells in tests.

``goals_result(n)`` is the shape of ``{"goals": {"todos": {}}}`` on an app whose goals
have a nested ``meta`` object and two linked todos each: every 10th goal lacks
``priority``, and dates alternate between epoch milliseconds and ISO strings, as Instant
stores them when clients write both.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_EPOCH_2025_MS = 1_735_689_600_000
_COLORS = ("red", "green", "blue", "amber")

GOALS_SCHEMA: dict[str, Any] = {
    "schema": {
        "blobs": {
            "goals": {
                "id": {"forward-identity": ["a1", "goals", "id"], "checked-data-type": None},
                "title": {
                    "forward-identity": ["a2", "goals", "title"],
                    "checked-data-type": "string",
                },
                "priority": {
                    "forward-identity": ["a3", "goals", "priority"],
                    "checked-data-type": "number",
                },
                "done": {
                    "forward-identity": ["a4", "goals", "done"],
                    "checked-data-type": "boolean",
                },
                "createdAt": {
                    "forward-identity": ["a5", "goals", "createdAt"],
                    "checked-data-type": "date",
                },
                "meta": {"forward-identity": ["a6", "goals", "meta"], "checked-data-type": None},
            },
            "todos": {
                "id": {"forward-identity": ["b1", "todos", "id"], "checked-data-type": None},
                "text": {
                    "forward-identity": ["b2", "todos", "text"],
                    "checked-data-type": "string",
                },
                "done": {
                    "forward-identity": ["b3", "todos", "done"],
                    "checked-data-type": "boolean",
                },
                "dueDate": {
                    "forward-identity": ["b4", "todos", "dueDate"],
                    "checked-data-type": "date",
                },
            },
        },
        "refs": {
            "goals-todos-todos-goals": {
                "forward-identity": ["c1", "goals", "todos"],
                "reverse-identity": ["c2", "todos", "goals"],
                "value-type": "ref",
                "cardinality": "many",
            }
        },
    }
}


def _date(rng: random.Random, position: int) -> int | str:
    millis = _EPOCH_2025_MS + rng.randrange(0, 365 * 86_400_000)
    if position % 2 == 0:
        return millis
    stamp = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=millis)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def goals_result(n_goals: int, *, todos_per_goal: int = 2, seed: int = 7) -> dict[str, Any]:
    """A ``{"goals": [...]}`` result with nested objects and linked todos."""
    rng = random.Random(seed)
    goals = []
    for position in range(n_goals):
        goal: dict[str, Any] = {
            "id": _uuid(rng),
            "title": f"goal {position}",
            "done": position % 3 == 0,
            "createdAt": _date(rng, position),
            "meta": {
                "owner": f"user-{rng.randrange(1000)}",
                "score": round(rng.random() * 100, 3),
                "labels": {"color": rng.choice(_COLORS), "size": rng.randrange(10)},
            },
            "todos": [
                {
                    "id": _uuid(rng),
                    "text": f"todo {position}.{k}",
                    "done": k % 2 == 1,
                    "dueDate": _date(rng, position + k),
                }
                for k in range(todos_per_goal)
            ],
        }
        if position % 10 != 9:
            goal["priority"] = rng.randrange(1, 6)
        goals.append(goal)
    return {"goals": goals}


def goals_json(n_goals: int, **options: Any) -> str:
    """The same result as JSON text, as the server would send it."""
    return json.dumps(goals_result(n_goals, **options))


def cells(frame: pd.DataFrame, column: str) -> list[Any]:
    """A column's (or the index's) values as Python objects, every missing value as None."""
    import pandas as pd

    values = frame.index.tolist() if column == frame.index.name else frame[column].tolist()
    return [
        None if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v) else v
        for v in values
    ]
