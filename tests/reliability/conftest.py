"""Fixtures of the reliability suite: one in-process local server for the module, a fresh
app per test, a fault proxy in front of the server, and a client runner per kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from tests.reliability._clients import KINDS, ClientRunner
from tests.reliability._faults import FaultProxy


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def app(server: LocalServer, request: pytest.FixtureRequest) -> AppCredentials:
    return server.create_app(title=request.node.name[:100])


@pytest.fixture
def proxy(server: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.api_uri) as running:
        yield running
        # A fault planned but never met means the test did not exercise what it claims.
        assert running.pending() == 0, "planned faults were not all used"


@pytest.fixture(params=KINDS)
def clients(request: pytest.FixtureRequest) -> Iterator[ClientRunner]:
    runner = ClientRunner(request.param)
    try:
        yield runner
    finally:
        runner.close()
