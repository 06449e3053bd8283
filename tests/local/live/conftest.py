"""One live test server per module (tests make their own apps on it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.local.live.harness import TestServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    started = start_server(tmp_path_factory.mktemp("live") / "data")
    try:
        yield started
    finally:
        started.stop()
