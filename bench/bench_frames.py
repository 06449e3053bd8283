"""DataFrame conversion: ``to_dataframe`` against ``pandas.json_normalize``, and memory.

The data: goals with a nested ``meta`` object (two levels), two linked todos each, every
10th goal without ``priority``, dates half epoch-ms and half ISO strings
(tests/notebook/frames_data.py), parsed from JSON text as the SDK would.

Figures, each a ratio measured in this run:

- time of ``to_dataframe(result)`` / time of ``pd.json_normalize(goals)``, which
  produces the same columns (target <= 0.5, i.e. at least 2x faster);
- the same with the schema applied (dates parsed, nullable ints), still against
  ``json_normalize`` without any typing;
- ``links="explode"`` against ``json_normalize(record_path="todos", meta=...)``;
- peak memory during ``to_dataframe`` / size of the parsed result (target <= 2). It is
  measured in a fresh process: Python allocations with tracemalloc plus the peak of
  Arrow's memory pool (which tracemalloc cannot see); adding two peaks overstates the
  true peak, never understates it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for entry in (str(HERE), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from _harness import Result, best_of  # noqa: E402

from instantdb_notebook import to_dataframe  # noqa: E402
from tests.notebook.frames_data import GOALS_SCHEMA, goals_json  # noqa: E402


def run(quick: bool) -> list[Result]:
    import pandas as pd

    n_goals = 2_000 if quick else 100_000
    repeat = 3
    result = json.loads(goals_json(n_goals))
    goals = result["goals"]

    ours = to_dataframe(result)
    theirs = pd.json_normalize(goals)
    if sorted([ours.index.name, *ours.columns]) != sorted(theirs.columns):
        raise AssertionError(
            f"not the same columns: {sorted(ours.columns)} vs {sorted(theirs.columns)}"
        )

    baseline = best_of(lambda: pd.json_normalize(goals), repeat=repeat)
    plain = best_of(lambda: to_dataframe(result), repeat=repeat)
    typed = best_of(lambda: to_dataframe(result, schema=GOALS_SCHEMA), repeat=repeat)
    goal_fields = [
        "id",
        "title",
        "done",
        "createdAt",
        "priority",
        ["meta", "owner"],
        ["meta", "score"],
        ["meta", "labels", "color"],
        ["meta", "labels", "size"],
    ]
    exploded_baseline = best_of(
        lambda: pd.json_normalize(
            goals, record_path="todos", meta=goal_fields, record_prefix="todos.", errors="ignore"
        ),
        repeat=repeat,
    )
    exploded = best_of(lambda: to_dataframe(result, links="explode"), repeat=repeat)

    memory = _measure_memory(n_goals)
    size = f"{n_goals} goals"
    return [
        Result(
            "frames.to_dataframe vs json_normalize",
            plain,
            baseline,
            target_ratio=0.5,
            note=size,
        ),
        Result(
            "frames.to_dataframe(schema=...) vs json_normalize",
            typed,
            baseline,
            note=f"{size}; dates parsed, nullable dtypes",
        ),
        Result(
            "frames.to_dataframe(links='explode') vs json_normalize(record_path='todos')",
            exploded,
            exploded_baseline,
            note=f"{size}, {2 * n_goals} rows",
        ),
        Result(
            "frames.to_dataframe peak memory vs parsed result",
            memory["peak"],
            memory["result"],
            unit="B",
            target_ratio=2.0,
            note=f"{size}; tracemalloc + Arrow pool peak, fresh process",
        ),
    ]


def _measure_memory(n_goals: int) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, __file__, "--memory", str(n_goals)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {completed.stderr.strip()[-2000:]}")
    figures: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return figures


def _memory_child(n_goals: int) -> None:
    """Runs in a fresh process, so Arrow's pool peak belongs to this conversion alone."""
    import gc
    import tracemalloc

    import pyarrow as pa

    text = goals_json(n_goals)
    to_dataframe(json.loads(goals_json(20)))  # import and warm everything lazily loaded
    gc.collect()
    tracemalloc.start()
    result = json.loads(text)
    del text
    gc.collect()
    result_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    frame = to_dataframe(result)
    python_peak = tracemalloc.get_traced_memory()[1] - result_bytes
    tracemalloc.stop()
    arrow_peak = pa.default_memory_pool().max_memory()
    assert len(frame) == n_goals
    print(json.dumps({"result": result_bytes, "peak": python_peak + arrow_peak}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        _memory_child(int(sys.argv[2]))
    else:
        for line in run(quick="--quick" in sys.argv):
            print(line.render())
