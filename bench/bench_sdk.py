"""What the SDK costs on top of plain httpx, against the same local server.

- ``db.query`` (both clients) against a raw httpx POST of the same body to the same
  server, with the same connection pooling. The server's own time is in both, so the
  ratio is the SDK's per-call overhead; target <= 1.10.
- The body of a 10k-entity transaction: built with ``db.tx`` and encoded by the SDK,
  against the same steps as plain lists and ``json.dumps`` (what you would write with no
  SDK, without its checks and JSON conversions).

Each pair is timed in alternating rounds (best round kept) so that drifts of the machine
hit both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from _harness import Result, best_of

from instantdb import AsyncInstant, Instant, id
from instantdb._protocol import admin
from instantdb_local import LocalServer

QUERY = {"goals": {"$": {"where": {"done": False}, "limit": 20}}}


def run(quick: bool) -> list[Result]:
    results: list[Result] = []
    with LocalServer() as server:
        app = server.create_app(title="bench-sdk")
        with Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as db:
            db.transact(
                db.tx.goals[id()].update({"title": f"goal {i}", "done": i % 3 == 0, "n": i})
                for i in range(50)
            )
        calls, rounds = (50, 5) if quick else (200, 10)
        results.append(_sync_query(app, calls, rounds))
        results.append(asyncio.run(_async_query(app, calls, rounds)))
    results.extend(_transact_encoding(1000 if quick else 10_000, 2 if quick else 5))
    return results


def _raw_request(app: Any) -> dict[str, Any]:
    """The request `db.query(QUERY)` sends, for a plain httpx client."""
    return {
        "url": app.api_uri + "/admin/query",
        "params": {"app_id": app.app_id},
        "headers": {
            "content-type": "application/json",
            "app-id": app.app_id,
            "authorization": f"Bearer {app.admin_token}",
        },
        "json": {"query": QUERY, "inference?": False},
    }


def _alternating(
    ours: Callable[[], object], raw: Callable[[], object], rounds: int, calls: int
) -> tuple[float, float]:
    """Best per-call time of each, measured in alternating rounds."""
    best_ours = best_raw = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, best_of(ours, repeat=1, number=calls))
        best_raw = min(best_raw, best_of(raw, repeat=1, number=calls))
    return best_ours, best_raw


def _sync_query(app: Any, calls: int, rounds: int) -> Result:
    request = _raw_request(app)
    with (
        Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as db,
        httpx.Client() as http,
    ):

        def raw() -> Any:
            response = http.post(**request)
            response.raise_for_status()
            return response.json()

        assert db.query(QUERY) == raw()
        ours, baseline = _alternating(lambda: db.query(QUERY), raw, rounds, calls)
    return Result(
        "sdk: Instant.query per call",
        ours,
        baseline,
        target_ratio=1.10,
        note="baseline: httpx.Client.post of the same body",
    )


async def _async_query(app: Any, calls: int, rounds: int) -> Result:
    request = _raw_request(app)
    async with (
        AsyncInstant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as db,
        httpx.AsyncClient() as http,
    ):

        async def raw() -> Any:
            response = await http.post(**request)
            response.raise_for_status()
            return response.json()

        assert await db.query(QUERY) == await raw()
        best_ours = best_raw = float("inf")
        for _ in range(rounds):
            best_ours = min(best_ours, await _time_async(lambda: db.query(QUERY), calls))
            best_raw = min(best_raw, await _time_async(raw, calls))
    return Result(
        "sdk: AsyncInstant.query per call",
        best_ours,
        best_raw,
        target_ratio=1.10,
        note="baseline: httpx.AsyncClient.post of the same body",
    )


async def _time_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls


def _transact_encoding(count: int, rounds: int) -> list[Result]:
    ids = [id() for _ in range(count)]
    values = [
        {"title": f"goal {i}", "n": i, "done": i % 2 == 0, "tags": ["a", "b"], "meta": {"k": i}}
        for i in range(count)
    ]
    db = Instant(app_id=id(), admin_token=id(), api_uri="http://127.0.0.1:9")  # never sends
    settings = db._settings

    def plain_steps() -> list[list[Any]]:
        return [["update", "goals", ids[i], values[i]] for i in range(count)]

    def plain_body(steps: list[list[Any]]) -> bytes:
        body = {"steps": steps, "throw-on-missing-attrs?": False}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def chunks() -> list[Any]:
        return [db.tx.goals[ids[i]].update(values[i]) for i in range(count)]

    def encoded(built: list[Any]) -> bytes:
        content = admin.transact_call(settings, built, None).request.content
        assert isinstance(content, bytes)
        return content

    built, steps = chunks(), plain_steps()
    assert encoded(built) == plain_body(steps)
    encode_ours, encode_plain = _alternating(
        lambda: encoded(built), lambda: plain_body(steps), rounds, 1
    )
    both_ours, both_plain = _alternating(
        lambda: encoded(chunks()), lambda: plain_body(plain_steps()), rounds, 1
    )
    db.close()
    return [
        Result(
            f"sdk: transact body of {count} entities, encoding built chunks",
            encode_ours,
            encode_plain,
            note="baseline: json.dumps of the same steps",
        ),
        Result(
            f"sdk: transact body of {count} entities, db.tx building + encoding",
            both_ours,
            both_plain,
            note="baseline: plain lists + json.dumps; ours checks and converts every value",
        ),
    ]
