"""The local server under load: 8 writers and 8 readers at full rate with 100 open
subscriptions, against one writer, one reader or one subscriber alone on the same server
(the baselines, measured in the same run).

The server is ``instantdb-local serve`` in its own process, as a user runs it; the
clients are `instantdb.Instant` in threads of this process, so on a small machine they
share the CPU with the server and the figures include client overhead. Every run also
checks the data (no error, no lost, stale, torn or backwards read; see
``tests/reliability/_load.py``) and fails if any check does.

Full run: 60 s under load, 5 s per baseline. ``--quick``: 3 s and 1 s.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for entry in (str(HERE), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from _harness import Result  # noqa: E402

from instantdb_local.pytest_plugin import create_ephemeral_app  # noqa: E402
from tests.reliability._load import (  # noqa: E402
    LOAD_SCHEMA,
    LoadReport,
    LoadShape,
    percentile,
    run_load,
)
from tests.reliability._process import ServerProcess  # noqa: E402

SUBSCRIPTIONS = 100


def _measure(api_uri: str, shape: LoadShape) -> LoadReport:
    # A fresh app per measurement, so each starts from the same empty namespace.
    creds = create_ephemeral_app(api_uri, "bench-load", schema=LOAD_SCHEMA)
    report = run_load(creds, shape)
    if report.problems:
        raise AssertionError(f"load run found problems: {report.problems[:5]}")
    return report


def _ms(samples: list[float], pct: float) -> float:
    return percentile(samples, pct) * 1e3


def run(quick: bool) -> list[Result]:
    load_seconds, baseline_seconds = (3.0, 1.0) if quick else (60.0, 5.0)
    with (
        tempfile.TemporaryDirectory(prefix="bench-load-") as directory,
        ServerProcess(Path(directory) / "data") as server,
    ):
        assert server.credentials is not None
        api_uri = server.credentials.api_uri
        writer_alone = _measure(api_uri, LoadShape(1, 0, baseline_seconds))
        reader_alone = _measure(api_uri, LoadShape(1, 1, baseline_seconds, 2.0))
        # One subscriber of one writer at 5 writes/s: what a change takes to arrive
        # when nothing else is going on.
        subscriber_alone = _measure(
            api_uri, LoadShape(1, 0, baseline_seconds, 5.0, subscriptions=1)
        )
        loaded = _measure(api_uri, LoadShape(8, 8, load_seconds, subscriptions=SUBSCRIPTIONS))
    print(f"bench_load: {loaded.summary()}")
    note = (
        f"8 writers + 8 readers + {SUBSCRIPTIONS} subscriptions, {loaded.elapsed:.0f}s, 0 problems"
    )
    s, s1 = loaded.subscriber_latencies, subscriber_alone.subscriber_latencies
    w, r = loaded.write_latencies, loaded.read_latencies
    w1, r1 = writer_alone.write_latencies, reader_alone.read_latencies
    return [
        Result("load: write p50 vs one writer alone", _ms(w, 50), _ms(w1, 50), "ms", note=note),
        Result("load: write p99 vs one writer alone", _ms(w, 99), _ms(w1, 99), "ms"),
        Result("load: read p50 vs one reader alone", _ms(r, 50), _ms(r1, 50), "ms"),
        Result("load: read p99 vs one reader alone", _ms(r, 99), _ms(r1, 99), "ms"),
        Result(
            "load: writes/s vs one writer alone",
            len(w) / loaded.elapsed,
            len(w1) / writer_alone.elapsed,
            "/s",
        ),
        Result(
            "load: reads/s vs one reader alone",
            len(r) / loaded.elapsed,
            len(r1) / reader_alone.elapsed,
            "/s",
            note="the lone reader shares the server with one writer at 2 writes/s",
        ),
        Result("load: commit-to-subscriber p50 vs one alone", _ms(s, 50), _ms(s1, 50), "ms"),
        Result(
            "load: commit-to-subscriber p99 vs one alone",
            _ms(s, 99),
            _ms(s1, 99),
            "ms",
            note=f"{loaded.payloads} payloads, none repeated, every final result fresh",
        ),
    ]
