"""8 writers and 8 readers against ``instantdb-local serve`` for about 15 seconds, the
writers rate-limited, with 100 subscriptions open: no errors, no lost, stale, torn or
backwards reads, every subscriber's final result equal to a fresh query and no payload
equal to the one before it. The latencies (write, read, commit-to-subscriber) are
printed; the full-rate figures are in ``bench/bench_load.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from instantdb_local.pytest_plugin import create_ephemeral_app
from tests.reliability._load import LOAD_SCHEMA, LoadShape, run_load
from tests.reliability._process import ServerProcess

SHAPE = LoadShape(
    writers=8, readers=8, seconds=15.0, writes_per_second=10, reads_per_second=20, subscriptions=100
)


def test_steady_load_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ServerProcess(tmp_path / "data") as server:
        assert server.credentials is not None
        creds = create_ephemeral_app(server.credentials.api_uri, "load", schema=LOAD_SCHEMA)
        report = run_load(creds, SHAPE)
    with capsys.disabled():
        print(f"\nload: {report.summary()}")
    assert report.problems == []
    # Every writer and reader made progress (how much is the benchmark's business).
    assert min(report.acknowledged) > 0
    assert len(report.read_latencies) >= SHAPE.readers
    assert len(report.subscriber_latencies) >= SHAPE.subscriptions
