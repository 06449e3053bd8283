"""In a real kernel: a live widget keeps updating while a cell blocks."""

from __future__ import annotations

import json

import pytest

from tests.notebook.kernel import running_kernel

pytestmark = pytest.mark.slow

SETUP = """
import asyncio, time
from instantdb_notebook import LiveQuery

async def ticking():
    n = 0
    while True:
        n += 1
        yield {"type": "ok", "data": {"ticks": [{"id": str(i), "n": i} for i in range(n)]}}
        await asyncio.sleep(0.05)

live = LiveQuery(ticking, render_interval=0.05)
display(live)
live.wait_for(updates=1, timeout=10)
print(live.widget.table.model_id)
"""


def test_a_live_widget_updates_while_a_cell_blocks() -> None:
    with running_kernel() as kernel:
        table_id = kernel.run(SETUP).stdout.strip()
        blocked = kernel.run("before = live.updates\ntime.sleep(1.5)")
        # The widget's table was redrawn (comm messages went out) while the cell slept.
        redraws = blocked.comm_updates(table_id)
        assert len(redraws) >= 5
        assert all("<table" in state["value"] for state in redraws if "value" in state)
        after = kernel.run(
            "import json\n"
            "print(json.dumps({'during': live.updates - before, 'status': live.status,"
            " 'rows': len(live.latest), 'running': live.running}))"
        )
        seen = json.loads(after.stdout)
        assert seen["during"] >= 10  # 1.5 s at one payload per 50 ms, with slack
        assert seen["status"] == "connected"
        assert seen["rows"] >= seen["during"]
        stopped = kernel.run("live.stop()\nprint(live.status, live.running)")
        assert stopped.stdout.split() == ["stopped", "False"]


# Without the live routes the real-server test is expected to fail: fail fast.
REAL_SETUP = """
import time
from instantdb import id
from instantdb_local import LocalServer
from instantdb_notebook import live_query

server = LocalServer().start()
db = server.client()
live = live_query(db, {"todos": {}}, render_interval=0.05)
display(live)
live.wait_for(timeout=20)
print(live.widget.table.model_id)
"""

WRITER = """
for n in range(8):
    db.transact(db.tx.todos[id()].update({"text": f"todo {n}"}))
    time.sleep(0.2)
"""


def test_with_the_real_sdk_the_table_follows_a_blocking_writer_cell() -> None:
    with running_kernel() as kernel:
        table_id = kernel.run(REAL_SETUP).stdout.strip()
        writing = kernel.run(WRITER)
        redraws = [state["value"] for state in writing.comm_updates(table_id) if "value" in state]
        # Redrawn while the writer cell was still running, up to the last todo.
        assert len(redraws) >= 3
        assert any("todo 7" in table for table in redraws)
        after = kernel.run("print(len(live.latest), live.status); live.stop(); server.stop()")
        assert after.stdout.split() == ["8", "connected"]
