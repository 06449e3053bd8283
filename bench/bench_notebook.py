"""The notebook layer's overheads, each a ratio measured in this run.

- ``portal.call(coro)`` round trip (hand a coroutine to the portal thread and wait for
  it) against ``asyncio.run(coro)`` of the same coroutine in the calling thread, the
  cheapest other way to run it from synchronous code, and one that cannot keep
  connections between calls (target <= 1.5: about the cost of starting a loop per call;
  measured on a 2-core VM: 40-130 us against 120 us, ratio 0.3-1.1);
- one live-widget redraw of a 1,000-entity result (convert the payload, render the
  capped HTML table, set the traits) against building the same-sized DataFrame with
  ``pd.DataFrame(rows)`` and rendering its first rows with ``to_html``, which is what
  any table view must do at least (target <= 3.0; measured: 2.1 ms against 1.7 ms,
  ratio 1.26).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for entry in (str(HERE), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from _harness import Result, best_of  # noqa: E402

from instantdb_notebook import LiveQuery, Portal  # noqa: E402


async def _nothing() -> int:
    await asyncio.sleep(0)
    return 1


def _payload(n: int) -> dict[str, Any]:
    goals = [
        {"id": f"g{i:06d}", "title": f"goal {i}", "n": i, "done": i % 2 == 0} for i in range(n)
    ]
    return {"type": "ok", "data": {"goals": goals}, "page_info": None, "session_info": None}


def run(quick: bool) -> list[Result]:
    import pandas as pd

    calls = 200 if quick else 2_000
    results: list[Result] = []
    with Portal(name="bench-portal") as portal:
        portal_call = best_of(lambda: portal.call(_nothing(), timeout=10), number=calls)
        fresh_loop = best_of(lambda: asyncio.run(_nothing()), number=calls)
        results.append(
            Result(
                "portal.call round trip / asyncio.run",
                portal_call,
                fresh_loop,
                target_ratio=1.5,
                note=f"{calls} calls",
            )
        )

        payload = _payload(1_000)
        holder: dict[str, Any] = {}

        async def one_payload() -> Any:
            yield payload
            await asyncio.sleep(3600)

        live = LiveQuery(one_payload, portal=portal, render_interval=0, display_limit=20)
        live.wait_for(timeout=10)
        widget = live.widget
        deadline = time.monotonic() + 10
        while "<table" not in widget.table.value and time.monotonic() < deadline:
            time.sleep(0.01)

        def redraw() -> None:
            live._frames_for = None  # a new payload each time: convert again
            widget.table.value = ""  # so the trait really changes
            widget.render(live)

        def baseline() -> None:
            holder["html"] = pd.DataFrame(payload["data"]["goals"]).head(20).to_html()

        repeat_number = 5 if quick else 30
        results.append(
            Result(
                "live widget redraw of 1,000 entities / DataFrame + head(20).to_html",
                best_of(redraw, number=repeat_number),
                best_of(baseline, number=repeat_number),
                target_ratio=3.0,
            )
        )
        live.stop()
    return results


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result.render())
