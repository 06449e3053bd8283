"""Fixtures for the HTTP layer: an instance on a temporary data dir with fake engines,
served in-process through Starlette's TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # Starlette asks for its own httpx fork; the stock httpx it still supports is enough.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from instantdb_local.app import create_app
from instantdb_local.instance import Instance
from tests.local.app.fakes import FakeEngine


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    with Instance.open(tmp_path / "data", engine_factory=FakeEngine) as opened:
        yield opened


@pytest.fixture
def client(instance: Instance) -> Iterator[TestClient]:
    # raise_server_exceptions=False: the app's own 500 handling is under test.
    with TestClient(create_app(instance), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_headers(instance: Instance) -> dict[str, str]:
    app = instance.default_app
    return {"app-id": app.id, "authorization": f"Bearer {app.admin_token}"}


@pytest.fixture
def fake_engine(instance: Instance) -> FakeEngine:
    engine = instance.engine(instance.default_app.id)
    assert isinstance(engine, FakeEngine)
    return engine
