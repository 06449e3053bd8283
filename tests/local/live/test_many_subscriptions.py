"""200 live queries on one server stay correct under a series of writes: each
subscriber's last result equals a fresh query, and none is ever sent the same result
twice in a row."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from instantdb_local.live import LiveSettings
from tests.local.live.harness import (
    EventStream,
    TestServer,
    admin_headers,
    client,
    query,
    start_server,
    transact,
)

SUBSCRIPTIONS = 200
QUERIES = 10
WRITES = 20
DEADLINE_SECONDS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    # The real keepalive interval: 200 streams ticking every 0.2 s would only measure
    # keepalive traffic, in a process that also runs the 200 clients.
    started = start_server(tmp_path_factory.mktemp("many") / "data", LiveSettings())
    try:
        yield started
    finally:
        started.stop()


def test_200_subscriptions_converge_on_fresh_results(server):
    app = server.new_app()
    rng = random.Random(7)
    goals = [str(uuid.uuid4()) for _ in range(QUERIES)]
    # Half the subscribers share ten queries (computed once per change for all of
    # them); the other half each ask a query of their own.
    queries = [
        {"goals": {"$": {"where": {"bucket": i % QUERIES}}}}
        if i < SUBSCRIPTIONS // 2
        else {"goals": {"$": {"where": {"bucket": i % QUERIES}, "limit": i}}}
        for i in range(SUBSCRIPTIONS)
    ]

    async def main() -> None:
        async with client() as http:
            await transact(
                http,
                server.base_url,
                app,
                [["update", "goals", goals[n], {"bucket": n, "v": 0}] for n in range(QUERIES)],
            )
            streams = [
                EventStream(
                    http,
                    server.base_url + "/admin/subscribe-query",
                    headers=admin_headers(app),
                    body={"query": queries[i], "inference?": False},
                )
                for i in range(SUBSCRIPTIONS)
            ]
            async with contextlib.AsyncExitStack() as stack:
                for batch in range(0, SUBSCRIPTIONS, 50):
                    await asyncio.gather(
                        *(stack.enter_async_context(s) for s in streams[batch : batch + 50])
                    )
                for stream in streams:
                    assert stream.response is not None
                    assert stream.response.status_code == 200
                for n in range(WRITES):
                    bucket = rng.randrange(QUERIES)
                    steps: list[Any] = [["update", "goals", goals[bucket], {"v": n + 1}]]
                    if n % 5 == 0:  # now and then a new row in a bucket
                        steps.append(["update", "goals", str(uuid.uuid4()), {"bucket": bucket}])
                    await transact(http, server.base_url, app, steps)
                fresh = [await query(http, server.base_url, app, q) for q in queries]

                payloads: list[list[Any]] = [[] for _ in streams]
                deadline = time.monotonic() + DEADLINE_SECONDS

                def drain() -> None:
                    for i, stream in enumerate(streams):
                        while not stream.events.empty():
                            event = stream.events.get_nowait()
                            assert event is not None, "a stream ended"
                            if event["op"] == "add-query-ok":
                                assert not payloads[i]
                                payloads[i].append(event["result"])
                            elif event["op"] == "refresh-ok":
                                payloads[i].append(event["computations"][0]["instaql-result"])
                            else:
                                assert event["op"] == "sse-init", event

                def converged() -> bool:
                    return all(p and p[-1] == fresh[i] for i, p in enumerate(payloads))

                while True:
                    drain()
                    if converged():
                        break
                    assert time.monotonic() < deadline, "subscribers did not converge in time"
                    await asyncio.sleep(0.05)
                # Settled: nothing more is coming, and no result was ever repeated.
                await asyncio.sleep(0.3)
                drain()
                assert converged()
                for history in payloads:
                    assert all(a != b for a, b in itertools.pairwise(history))

    asyncio.run(main())
