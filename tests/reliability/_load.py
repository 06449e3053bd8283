"""A mixed read/write load on an Instant server, with the checks that make its figures
worth trusting. Used by ``test_load.py`` (rate-limited, in CI) and ``bench/bench_load.py``
(full rate).

Writer ``w`` appends ``items`` rows ``{writer: w, seq: 1, 2, ...}`` and, in the same
transaction, sets its own ``counters`` row to that ``seq``. Readers ask, in one query,
for a writer's counter and its newest item. That gives four checks:

* lost: after the run, every acknowledged ``seq`` of every writer is stored, and each
  counter holds its writer's last acknowledged ``seq``;
* stale: a read never shows less than what was acknowledged before the read began;
* torn: in one read, the counter and the newest item agree (both were one transaction);
* backwards: a reader never sees a writer's counter go down.

With ``subscriptions``, that many live queries (one `AsyncInstant` in its own thread, a
writer's counter each) run through the load too, with two more checks:

* subscriber mismatch: after the run each subscription's newest result equals a fresh
  query of the same thing;
* repeated payload: no subscription ever receives a payload equal to its previous one.

Their latency is from the start of the ``transact`` call to the payload that shows it
(writes a subscriber never sees on their own, coalesced by the server, count nothing).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from instantdb import AsyncInstant, Instant, InstantError, id
from instantdb_local.instance import AppCredentials

__all__ = ["LOAD_SCHEMA", "LoadReport", "LoadShape", "percentile", "run_load"]

LOAD_SCHEMA = {
    "attrs": {
        "items": {
            "writer": {"type": "number", "indexed": True},
            "seq": {"type": "number", "indexed": True},
        },
        "counters": {"seq": {"type": "number"}},
    },
    "links": {},
}

_COUNTER_NAMESPACE = uuid.UUID("6c6f6164-0000-4000-8000-000000000000")


@dataclass(frozen=True)
class LoadShape:
    writers: int = 8
    readers: int = 8
    seconds: float = 15.0
    writes_per_second: float | None = None  # per writer; None: as fast as it goes
    reads_per_second: float | None = None  # per reader
    subscriptions: int = 0


@dataclass
class LoadReport:
    shape: LoadShape
    elapsed: float = 0.0
    write_latencies: list[float] = field(default_factory=list)
    read_latencies: list[float] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)  # per writer
    errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stale_reads: int = 0
    torn_reads: int = 0
    backwards_reads: int = 0
    subscriber_latencies: list[float] = field(default_factory=list)
    payloads: int = 0
    repeated_payloads: int = 0
    subscriber_mismatches: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything that went wrong; empty for a clean run."""
        found = list(self.errors) + list(self.lost) + list(self.subscriber_mismatches)
        for name in ("stale_reads", "torn_reads", "backwards_reads", "repeated_payloads"):
            if getattr(self, name):
                found.append(f"{getattr(self, name)} {name.replace('_', ' ')}")
        return found

    def summary(self) -> str:
        def line(kind: str, samples: list[float]) -> str:
            rate = len(samples) / self.elapsed if self.elapsed else 0.0
            p50, p99 = percentile(samples, 50) * 1e3, percentile(samples, 99) * 1e3
            return f"{kind}: {len(samples)} ({rate:.0f}/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms"

        shape = self.shape
        live = seen = ""
        if shape.subscriptions:
            live = f" + {shape.subscriptions} subscriptions"
            p50 = percentile(self.subscriber_latencies, 50) * 1e3
            p99 = percentile(self.subscriber_latencies, 99) * 1e3
            seen = (
                f"commit-to-subscriber: {self.payloads} payloads, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
            )
        return (
            f"{shape.writers} writers + {shape.readers} readers{live} for "
            f"{self.elapsed:.1f}s: {line('writes', self.write_latencies)}; "
            f"{line('reads', self.read_latencies)}; {seen}{len(self.problems)} problems"
        )


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (0-100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def counter_id(writer: int) -> str:
    return str(uuid.uuid5(_COUNTER_NAMESPACE, str(writer)))


class _State:
    """What the writers have had acknowledged, shared with the readers."""

    def __init__(self, writers: int) -> None:
        self.lock = threading.Lock()
        self.acked = [0] * writers
        # writer -> seq -> when its transact began (for the subscribers' latency)
        self.sent_at: list[dict[int, float]] = [{} for _ in range(writers)]

    def acknowledged(self, writer: int) -> int:
        with self.lock:
            return self.acked[writer]


def _client(creds: AppCredentials) -> Instant:
    # No retries: every failure is counted, none is smoothed over.
    return Instant(
        app_id=creds.app_id,
        admin_token=creds.admin_token,
        api_uri=creds.api_uri,
        retry=False,
        timeout=httpx.Timeout(30.0),
    )


class _Pacer:
    """Sleeps so calls start at a steady rate; no-op without a rate."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next = time.perf_counter()

    def wait(self, stop: threading.Event) -> None:
        if not self.interval:
            return
        self.next += self.interval
        delay = self.next - time.perf_counter()
        if delay > 0:
            stop.wait(delay)


def _write_loop(
    creds: AppCredentials,
    writer: int,
    state: _State,
    report: LoadReport,
    stop: threading.Event,
    lock: threading.Lock,
) -> None:
    pacer = _Pacer(report.shape.writes_per_second)
    latencies: list[float] = []
    counter = counter_id(writer)
    with _client(creds) as db:
        seq = 0
        while not stop.is_set():
            seq += 1
            chunks = [
                db.tx.items[id()].update({"writer": writer, "seq": seq}),
                db.tx.counters[counter].update({"seq": seq}),
            ]
            started = time.perf_counter()
            with state.lock:
                state.sent_at[writer][seq] = started
            try:
                db.transact(chunks)
            except InstantError as error:
                with lock:
                    report.errors.append(f"writer {writer} seq {seq}: {error!r}")
                break
            latencies.append(time.perf_counter() - started)
            with state.lock:
                state.acked[writer] = seq
            pacer.wait(stop)
    with lock:
        report.write_latencies.extend(latencies)


def _read_loop(
    creds: AppCredentials,
    reader: int,
    state: _State,
    report: LoadReport,
    stop: threading.Event,
    lock: threading.Lock,
) -> None:
    shape = report.shape
    pacer = _Pacer(shape.reads_per_second)
    latencies: list[float] = []
    seen = [0] * shape.writers
    stale = torn = backwards = 0
    with _client(creds) as db:
        turn = reader
        while not stop.is_set():
            writer = turn % shape.writers
            turn += 1
            floor = state.acknowledged(writer)  # acknowledged before this read began
            started = time.perf_counter()
            try:
                result = db.query(_read_query(writer))
            except InstantError as error:
                with lock:
                    report.errors.append(f"reader {reader}: {error!r}")
                break
            latencies.append(time.perf_counter() - started)
            counters, items = result["counters"], result["items"]
            counted = counters[0]["seq"] if counters else 0
            newest = items[0]["seq"] if items else 0
            stale += counted < floor
            torn += counted != newest
            backwards += counted < seen[writer]
            seen[writer] = max(seen[writer], counted)
            pacer.wait(stop)
    with lock:
        report.read_latencies.extend(latencies)
        report.stale_reads += stale
        report.torn_reads += torn
        report.backwards_reads += backwards


def _read_query(writer: int) -> dict[str, Any]:
    return {
        "counters": {"$": {"where": {"id": counter_id(writer)}}},
        "items": {"$": {"where": {"writer": writer}, "order": {"seq": "desc"}, "limit": 1}},
    }


def _lost_writes(creds: AppCredentials, state: _State) -> list[str]:
    with _client(creds) as db:
        result = db.query({"items": {}, "counters": {}})
    stored: dict[int, set[int]] = {}
    for row in result["items"]:
        stored.setdefault(row["writer"], set()).add(row["seq"])
    counters = {row["id"]: row["seq"] for row in result["counters"]}
    lost = []
    for writer, last in enumerate(state.acked):
        missing = set(range(1, last + 1)) - stored.get(writer, set())
        if missing:
            lost.append(f"writer {writer}: acknowledged seq {sorted(missing)[:10]} missing")
        if last and counters.get(counter_id(writer)) != last:
            lost.append(
                f"writer {writer}: counter {counters.get(counter_id(writer))}, last ack {last}"
            )
    return lost


def run_load(creds: AppCredentials, shape: LoadShape) -> LoadReport:
    """Run ``shape`` against the app of ``creds`` (which has `LOAD_SCHEMA`) and check it."""
    report = LoadReport(shape)
    state = _State(shape.writers)
    stop = threading.Event()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_write_loop, args=(creds, w, state, report, stop, lock))
        for w in range(shape.writers)
    ] + [
        threading.Thread(target=_read_loop, args=(creds, r, state, report, stop, lock))
        for r in range(shape.readers)
    ]
    subscribers = _Subscribers(creds, shape, state, report) if shape.subscriptions else None
    if subscribers is not None:
        subscribers.start()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    stop.wait(shape.seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    report.elapsed = time.perf_counter() - started
    if subscribers is not None:
        subscribers.finish()
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        report.errors.append(f"threads still running after the run: {stuck}")
    report.acknowledged = list(state.acked)
    report.lost = _lost_writes(creds, state)
    return report


def _counter_query(writer: int) -> dict[str, Any]:
    return {"counters": {"$": {"where": {"id": counter_id(writer)}}}}


SETTLE_SECONDS = 30.0  # a bound on waiting for subscribers to catch up after the run


class _Subscribers:
    """``shape.subscriptions`` live queries on one event loop in their own thread."""

    def __init__(
        self, creds: AppCredentials, shape: LoadShape, state: _State, report: LoadReport
    ) -> None:
        self.creds, self.shape, self.state, self.report = creds, shape, state, report
        self.latest: list[Any] = [None] * shape.subscriptions
        self.previous: list[Any] = [None] * shape.subscriptions
        self.changed = threading.Condition()
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.done: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="load-subscribers", daemon=True)

    def start(self) -> None:
        self.thread.start()
        # Every subscription has its first result before the load begins.
        with self.changed:
            ok = self.changed.wait_for(
                lambda: all(x is not None for x in self.latest) or not self.thread.is_alive(),
                SETTLE_SECONDS,
            )
        if not ok or not self.thread.is_alive():
            self.report.errors.append("the subscriptions did not all start")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported, never lost
            self.report.errors.append(f"subscribers: {exc!r}")
        finally:
            with self.changed:
                self.changed.notify_all()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        # One connection per subscription: lift httpx's default cap of 100.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) as http:
            db = AsyncInstant(
                app_id=self.creds.app_id,
                admin_token=self.creds.admin_token,
                api_uri=self.creds.api_uri,
                http_client=http,
            )
            subscriptions = [
                db.subscribe_query(_counter_query(i % self.shape.writers))
                for i in range(self.shape.subscriptions)
            ]
            tasks = [
                asyncio.create_task(self._consume(i, sub)) for i, sub in enumerate(subscriptions)
            ]
            await self.done.wait()
            for sub in subscriptions:
                await sub.aclose()
            await asyncio.gather(*tasks, return_exceptions=True)
            await db.aclose()

    async def _consume(self, index: int, subscription: Any) -> None:
        writer = index % self.shape.writers
        async for payload in subscription:
            arrived = time.perf_counter()
            if payload["type"] != "ok":
                self.report.errors.append(f"subscription {index}: {payload['error']!r}")
                continue
            data = payload["data"]
            counters = data.get("counters") or []
            seq = counters[0]["seq"] if counters else 0
            with self.state.lock:
                sent = self.state.sent_at[writer].get(seq)
            with self.changed:
                self.report.payloads += 1
                if data == self.latest[index]:
                    self.report.repeated_payloads += 1
                if sent is not None and self.latest[index] is not None:
                    self.report.subscriber_latencies.append(arrived - sent)
                self.latest[index] = data
                self.changed.notify_all()

    def finish(self) -> None:
        """Wait for every subscription to show the fresh result, then close them all."""
        with _client(self.creds) as db:
            fresh = [db.query(_counter_query(w)) for w in range(self.shape.writers)]
        expected = [fresh[i % self.shape.writers] for i in range(self.shape.subscriptions)]
        with self.changed:
            self.changed.wait_for(
                lambda: self.latest == expected or not self.thread.is_alive(), SETTLE_SECONDS
            )
            for i, (got, want) in enumerate(zip(self.latest, expected, strict=True)):
                if got != want:
                    self.report.subscriber_mismatches.append(
                        f"subscription {i}: newest {got}, fresh query {want}"
                    )
        if self.loop is not None and self.done is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(SETTLE_SECONDS)
        if self.thread.is_alive():
            self.report.errors.append("the subscriptions did not close")
