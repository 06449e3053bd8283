"""Live data against the local server: how soon a subscriber sees a change, and how fast
streams move bytes.

- **Change latency**, `Instant` and `AsyncInstant`: one client updates a counter with
  ``transact``, another follows ``subscribe_query`` on it; the latency of change n is
  the time from that ``transact`` returning to the subscriber receiving the payload
  with n (0 when the payload came first: the server pushes the change as soon as it
  commits, possibly before the HTTP answer is read). p50 and p99 over 500 changes (30
  with ``--quick``), each change waited for before the next so none is coalesced. The
  baseline is a plain ``db.query`` round trip on the same server; the target is a p50
  under 50 ms on loopback.
- **Stream throughput**, both clients: MB/s written (``streams.write`` until the server
  confirmed the end durable) and read (``streams.read`` of the finished stream). The
  baselines are raw httpx doing the same I/O by hand: the same chunks pushed as
  ``append-stream`` messages on a session opened with plain httpx, and plain GETs of the
  stream's part files.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import httpx
from _harness import Result, median, percentile

from instantdb import AsyncInstant, Instant, id
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials

TARGET_P50 = 0.050
WAIT = 10.0
MB = 1_000_000


def run(quick: bool) -> list[Result]:
    changes = 30 if quick else 500
    stream_bytes = 256 * 1024 if quick else 8 * 1024 * 1024
    results: list[Result] = []
    with LocalServer() as server:
        app = server.create_app(title="bench-live")
        results.extend(_latency_results("Instant", _sync_latency(app, changes)))
        results.extend(_latency_results("AsyncInstant", asyncio.run(_async_latency(app, changes))))
        text = _stream_text(stream_bytes)
        results.extend(_throughput_results("Instant", _sync_streams(app, text), len(text.encode())))
        results.extend(
            _throughput_results(
                "AsyncInstant", asyncio.run(_async_streams(app, text)), len(text.encode())
            )
        )
    return results


def _arguments(app: AppCredentials) -> dict[str, Any]:
    return {"app_id": app.app_id, "admin_token": app.admin_token, "api_uri": app.api_uri}


# -- change latency ---------------------------------------------------------------------


class _Latency:
    """What one client kind measured: per-change latencies and the query baseline."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.returned: dict[int, float] = {}
        self.arrived: dict[int, float] = {}
        self.query_round_trip = float("nan")

    def latencies(self) -> list[float]:
        return [max(0.0, self.arrived[n] - self.returned[n]) for n in self.returned]

    def end_to_end(self) -> list[float]:
        """From calling transact to the subscriber holding the change."""
        return [self.arrived[n] - self.started[n] for n in self.started]

    def early(self) -> int:
        """Changes whose payload arrived before their transact returned."""
        return sum(self.arrived[n] < self.returned[n] for n in self.returned)


def _counter_query(counter: str) -> dict[str, Any]:
    return {"counters": {"$": {"where": {"id": counter}}}}


def _counter_value(payload: dict[str, Any]) -> int | None:
    if payload.get("type") != "ok":
        raise RuntimeError(f"the subscription failed: {payload['error']}")
    rows = payload["data"]["counters"]
    return int(rows[0]["n"]) if rows else None


def _sync_latency(app: AppCredentials, changes: int) -> _Latency:
    measured = _Latency()
    counter = id()
    arrived = threading.Condition()
    with Instant(**_arguments(app)) as db, Instant(**_arguments(app)) as writer:
        writer.transact(writer.tx.counters[counter].update({"n": -1}))
        subscription = db.subscribe_query(_counter_query(counter))

        def follow() -> None:
            for payload in subscription:
                value = _counter_value(payload)
                now = time.perf_counter()
                if value is not None:
                    with arrived:
                        measured.arrived[value] = now
                        arrived.notify_all()

        reader = threading.Thread(target=follow, name="bench-live-subscriber", daemon=True)
        reader.start()
        try:
            _wait(arrived, lambda: -1 in measured.arrived)
            for n in range(changes):
                measured.started[n] = time.perf_counter()
                writer.transact(writer.tx.counters[counter].update({"n": n}))
                measured.returned[n] = time.perf_counter()
                _wait(arrived, lambda n=n: n in measured.arrived)  # type: ignore[misc]
        finally:
            subscription.close()
            reader.join(WAIT)
        samples = []
        for _ in range(min(changes, 200)):
            started = time.perf_counter()
            db.query(_counter_query(counter))
            samples.append(time.perf_counter() - started)
        measured.query_round_trip = median(samples)
    return measured


def _wait(condition: threading.Condition, predicate: Any) -> None:
    with condition:
        if not condition.wait_for(predicate, WAIT):
            raise TimeoutError(f"no payload within {WAIT:g} s")


async def _async_latency(app: AppCredentials, changes: int) -> _Latency:
    measured = _Latency()
    counter = id()
    arrived = asyncio.Event()
    async with AsyncInstant(**_arguments(app)) as db, AsyncInstant(**_arguments(app)) as writer:
        await writer.transact(writer.tx.counters[counter].update({"n": -1}))
        subscription = db.subscribe_query(_counter_query(counter))

        async def follow() -> None:
            async for payload in subscription:
                value = _counter_value(payload)
                now = time.perf_counter()
                if value is not None:
                    measured.arrived[value] = now
                    arrived.set()

        async def until(value: int) -> None:
            while value not in measured.arrived:
                arrived.clear()
                await arrived.wait()

        reader = asyncio.ensure_future(follow())
        try:
            await asyncio.wait_for(until(-1), WAIT)
            for n in range(changes):
                measured.started[n] = time.perf_counter()
                await writer.transact(writer.tx.counters[counter].update({"n": n}))
                measured.returned[n] = time.perf_counter()
                await asyncio.wait_for(until(n), WAIT)
        finally:
            await subscription.aclose()
            await asyncio.wait({reader}, timeout=WAIT)
        samples = []
        for _ in range(min(changes, 200)):
            started = time.perf_counter()
            await db.query(_counter_query(counter))
            samples.append(time.perf_counter() - started)
        measured.query_round_trip = median(samples)
    return measured


def _latency_results(kind: str, measured: _Latency) -> list[Result]:
    latencies = measured.latencies()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    verdict = "meets" if p50 < TARGET_P50 else "MISSES"
    note = (
        f"{len(latencies)} changes; p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms; "
        f"{measured.early()} arrived before transact returned; "
        f"{verdict} the p50 < {TARGET_P50 * 1000:.0f} ms target"
    )
    baseline = measured.query_round_trip
    end_to_end = measured.end_to_end()
    return [
        Result(f"{kind} change latency p50 / db.query round trip", p50, baseline, note=note),
        Result(f"{kind} change latency p99 / db.query round trip", p99, baseline),
        Result(
            f"{kind} transact call -> payload p50 / db.query round trip",
            percentile(end_to_end, 50),
            baseline,
            note=f"p99 {percentile(end_to_end, 99) * 1000:.2f} ms: the write's own round trip "
            "plus the push",
        ),
    ]


# -- stream throughput ------------------------------------------------------------------


def _stream_text(size: int) -> str:
    """About ``size`` UTF-8 bytes of text, multi-byte characters included."""
    piece = "The quick brown fox jumps over the lazy dog; naïve café ✓ 😀\n"
    return (piece * (size // len(piece.encode()) + 1)).encode()[:size].decode("utf-8", "ignore")


CHUNK_BYTES = 64 * 1024


def _chunks(text: str) -> list[str]:
    data, out, start = text.encode(), [], 0
    while start < len(data):
        end = min(len(data), start + CHUNK_BYTES)
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end += 1  # never split a character: chunks are sent as JSON strings
        out.append(data[start:end].decode())
        start = end
    return out


class _Timings:
    def __init__(self) -> None:
        self.write = self.read = self.raw_write = self.raw_read = float("nan")


def _sync_streams(app: AppCredentials, text: str) -> _Timings:
    timings = _Timings()
    chunks = _chunks(text)
    with Instant(**_arguments(app)) as db:
        client_id = f"bench-{uuid.uuid4()}"
        started = time.perf_counter()
        with db.streams.write(client_id=client_id) as writer:
            for chunk in chunks:
                writer.write(chunk)
        timings.write = time.perf_counter() - started
        started = time.perf_counter()
        with db.streams.read(client_id=client_id) as reader:
            got = "".join(reader)
        timings.read = time.perf_counter() - started
        if got != text:
            raise RuntimeError("the stream read back differs from what was written")
    timings.raw_write, timings.raw_read = _raw_streams(app, chunks, len(text.encode()))
    return timings


async def _async_streams(app: AppCredentials, text: str) -> _Timings:
    timings = _Timings()
    chunks = _chunks(text)
    async with AsyncInstant(**_arguments(app)) as db:
        client_id = f"bench-{uuid.uuid4()}"
        started = time.perf_counter()
        async with db.streams.write(client_id=client_id) as writer:
            for chunk in chunks:
                await writer.write(chunk)
        timings.write = time.perf_counter() - started
        started = time.perf_counter()
        async with db.streams.read(client_id=client_id) as reader:
            got = "".join([part async for part in reader])
        timings.read = time.perf_counter() - started
        if got != text:
            raise RuntimeError("the stream read back differs from what was written")
    loop = asyncio.get_running_loop()
    timings.raw_write, timings.raw_read = await loop.run_in_executor(
        None, _raw_streams, app, chunks, len(text.encode())
    )
    return timings


def _raw_streams(app: AppCredentials, chunks: list[str], size: int) -> tuple[float, float]:
    """The same stream written and read with plain httpx speaking the protocol by hand,
    each timed from opening its session as the SDK's are: seconds to write it (until the
    final flush) and to read it (subscribe, then GET its part files)."""
    headers = {"app-id": app.app_id, "authorization": f"Bearer {app.admin_token}"}
    with httpx.Client(base_url=app.api_uri, headers=headers, timeout=WAIT * 3) as http:
        started = time.perf_counter()
        writer = _RawSession(http, app.app_id)
        try:
            token = str(uuid.uuid4())
            writer.push(
                {"op": "start-stream", "client-id": f"raw-{token}", "reconnect-token": token}
            )
            stream_id = writer.next_op("start-stream-ok")["stream-id"]
            offset = 0
            for chunk in chunks:
                append = {"stream-id": stream_id, "chunks": [chunk], "offset": offset}
                writer.push({"op": "append-stream", **append, "done": False})
                offset += len(chunk.encode())
            done = {"stream-id": stream_id, "chunks": [], "offset": offset, "done": True}
            writer.push({"op": "append-stream", **done})
            while not writer.next_op("stream-flushed").get("done"):
                pass
        finally:
            writer.close()
        raw_write = time.perf_counter() - started

        started = time.perf_counter()
        reader = _RawSession(http, app.app_id)
        try:
            reader.push({"op": "subscribe-stream", "stream-id": stream_id})
            files = reader.next_op("stream-append")["files"]
            received = sum(len(http.get(part["url"]).content) for part in files)
        finally:
            reader.close()
        raw_read = time.perf_counter() - started
    if received != size:
        raise RuntimeError(f"the raw read got {received} of {size} bytes")
    return raw_write, raw_read


class _RawSession:
    """``/admin/sse`` read in the caller's thread, ``/admin/sse/push`` posted on another
    connection; events wait in the socket until read."""

    def __init__(self, http: httpx.Client, app_id: str) -> None:
        self._http = http
        self._app_id = app_id
        self._response = http.send(
            http.build_request("POST", "/admin/sse", params={"app_id": app_id}, json={}),
            stream=True,
        )
        self._lines = self._response.iter_lines()
        init = self.next_op("sse-init")
        self._ids = {
            key.replace("-", "_"): init[key] for key in ("machine-id", "session-id", "sse-token")
        }

    def push(self, message: dict[str, Any]) -> None:
        body = {**self._ids, "messages": [{"client-event-id": str(uuid.uuid4()), **message}]}
        answer = self._http.post("/admin/sse/push", params={"app_id": self._app_id}, json=body)
        answer.raise_for_status()

    def next_op(self, op: str) -> dict[str, Any]:
        for line in self._lines:  # bounded by the client's read timeout
            if not line.startswith("data:"):
                continue
            event: dict[str, Any] = json.loads(line[len("data:") :])
            if event.get("op") == "error":
                raise RuntimeError(f"the raw session got an error: {event}")
            if event.get("op") == op:
                return event
        raise RuntimeError(f"the raw session ended before {op!r}")

    def close(self) -> None:
        self._response.close()


def _throughput_results(kind: str, timings: _Timings, size: int) -> list[Result]:
    def rate(seconds: float) -> float:
        return size / seconds / MB

    return [
        Result(
            f"{kind} streams.write MB/s / raw httpx pushes of the same chunks",
            rate(timings.write),
            rate(timings.raw_write),
            unit=" MB/s",
            note=f"{size / MB:.2f} MB in {CHUNK_BYTES // 1024} KiB chunks, durable at the end",
        ),
        Result(
            f"{kind} streams.read MB/s / raw httpx GETs of the part files",
            rate(timings.read),
            rate(timings.raw_read),
            unit=" MB/s",
        ),
    ]
