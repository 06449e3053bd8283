"""In a real kernel: live widgets keep updating while a cell blocks (also with writes
from another client), cells can await AsyncInstant, and stopping, re-running and
shutting down leave no thread or connection behind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from instantdb import id
from instantdb_local import LocalServer
from tests.notebook.kernel import CellRun, open_sockets_to, running_kernel

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


# -- against a server in this process: another client, async cells, clean shutdown ---------


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


SUBSCRIBE = """
import time
from pathlib import Path
from instantdb import Instant
from instantdb_notebook import live_query

db = Instant()  # the test's server, from the environment
live = live_query(db, {"tickets": {}}, render_interval=0.05)
display(live)
live.wait_for(timeout=20)
print(live.widget.table.model_id)
"""

# Blocks the kernel's main thread until the test creates the flag file.
BLOCK = """
deadline = time.monotonic() + 60
while not Path({flag!r}).exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print("woke")
"""


def test_another_clients_writes_reach_the_widget_while_a_cell_sleeps(
    server: LocalServer, tmp_path: Path
) -> None:
    flag = tmp_path / "wake"
    subjects = [f"from outside {id()[:8]}" for _ in range(3)]
    with running_kernel(server.env) as kernel, server.client() as outside:
        table_id = kernel.run(SUBSCRIBE).stdout.strip()
        blocked = kernel.start(BLOCK.format(flag=str(flag)))
        kernel.follow(
            blocked,
            lambda run: any(
                m["msg_type"] == "execute_input" and m["parent_header"].get("msg_id") == run.msg_id
                for m in run.messages
            ),
            timeout=20,
            what="start of the blocking cell",
        )
        for subject in subjects:
            outside.transact(outside.tx.tickets[id()].update({"subject": subject}))

        def drawn(run: CellRun) -> bool:
            tables = [s["value"] for s in run.comm_updates(table_id) if "value" in s]
            return any(all(subject in table for subject in subjects) for table in tables)

        kernel.follow(blocked, drawn, timeout=30, what="table showing the outside writes")
        # The frontend got the new rows while the cell was still blocked.
        assert not blocked.done
        flag.touch()
        kernel.follow(blocked, lambda run: run.done, timeout=30)
        assert blocked.stdout.strip() == "woke"
        seen = kernel.run("print(sorted(live.latest['subject'])); live.stop()")
        assert all(subject in seen.stdout for subject in subjects)


AWAIT = """
from instantdb import AsyncInstant, id
from instantdb_notebook import submit_async

async with AsyncInstant() as adb:
    await adb.transact(adb.tx.notes[id()].update({"text": "awaited"}))
    found = await adb.query({"notes": {"$": {"where": {"text": "awaited"}}}})
# A portal future can be awaited too, from the kernel's own loop.
on_portal = await submit_async(Instant(), lambda adb: adb.query({"notes": {}}))
print(len(found["notes"]), len(on_portal["notes"]))
"""


# nest-asyncio (or its fork nest_asyncio2) marks asyncio and every loop it patches with
# _nest_patched.
NOT_PATCHED = """
import asyncio, sys
print(sorted(name for name in sys.modules if name.startswith("nest_asyncio")))
print(hasattr(asyncio, "_nest_patched") or hasattr(asyncio.get_event_loop(), "_nest_patched"))
"""


def test_a_cell_awaits_async_instant_at_top_level(server: LocalServer) -> None:
    with running_kernel(server.env) as kernel:
        kernel.run("from instantdb import Instant")
        assert kernel.run(AWAIT).stdout.split() == ["1", "1"]
        # The portal thread ran async work; the kernel's own loop was never patched.
        assert kernel.run(NOT_PATCHED).stdout.split("\n")[:2] == ["[]", "False"]
    with server.client() as db:
        assert [note["text"] for note in db.query({"notes": {}})["notes"]] == ["awaited"]


LIVE_CELL = '%%instant --live board <<\n{"tickets": {}}'
COUNT_THREADS = "import threading\nprint(threading.active_count())"


def test_rerunning_stopping_and_shutdown_leak_no_thread_or_connection(
    server: LocalServer, tmp_path: Path
) -> None:
    port = server.port
    log = tmp_path / "kernel-stderr.log"
    with log.open("wb") as stderr, running_kernel(server.env, stderr=stderr) as kernel:
        kernel.run("%load_ext instantdb_notebook\n%instant --connect")
        kernel.run(LIVE_CELL, cell_id="live-cell")
        kernel.run("first = board\nfirst.wait_for(timeout=20)\ndisplay(first)")
        threads = int(kernel.run(COUNT_THREADS).stdout)
        connections = settled(lambda: open_sockets_to(kernel.pid, port))
        assert connections >= 1  # the subscription's stream

        # Re-running the cell replaces its live query: the old one stops.
        for _ in range(3):
            kernel.run(LIVE_CELL, cell_id="live-cell")
            kernel.run("board.wait_for(timeout=20)")
        assert kernel.run("print(first.status, first.running, board.status)").stdout.split() == [
            "stopped",
            "False",
            "connected",
        ]
        assert int(kernel.run(COUNT_THREADS).stdout) == threads
        assert settled(lambda: open_sockets_to(kernel.pid, port)) == connections

        # A live query made by another cell is not touched by re-runs of this one.
        kernel.run(
            "from instantdb import Instant\nfrom instantdb_notebook import live_query\n"
            "other = live_query(Instant(), {'notes': {}})\nother.wait_for(timeout=20)",
            cell_id="other-cell",
        )
        kernel.run(LIVE_CELL, cell_id="live-cell")
        assert kernel.run("print(other.status)").stdout.strip() == "connected"
        with_other = settled(lambda: open_sockets_to(kernel.pid, port))
        assert with_other > connections

        # Stopping closes the connection; the portal's thread is the only one left.
        kernel.run("board.stop()")
        assert settled(lambda: open_sockets_to(kernel.pid, port)) < with_other
        assert int(kernel.run(COUNT_THREADS).stdout) == threads

        # Shutdown with `other` still live: the kernel exits by itself, and the portal's
        # atexit hook cancels the subscription and closes its client without complaint.
        pid = kernel.pid
        kernel.manager.shutdown_kernel(now=False)
        assert not kernel.manager.is_alive()
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    errors = log.read_text(errors="replace")
    for sign in ("Traceback", "did not shut down", "Task was destroyed", "Unclosed", "Error"):
        assert sign not in errors, errors


def settled(count: Callable[[], int], timeout: float = 10.0) -> int:
    """``count()`` once it gives the same value twice in a row 0.2 s apart (bounded)."""
    deadline = time.monotonic() + timeout
    last = count()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = count()
        if now == last:
            return now
        last = now
    raise AssertionError(f"the count did not settle within {timeout} s (last {last})")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
