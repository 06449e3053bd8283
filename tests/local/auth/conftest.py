"""Fixtures for the auth flows and routes: a real instance, served in-process."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # Starlette asks for its own httpx fork; the stock httpx it still supports is enough.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from instantdb_local.app import create_app
from instantdb_local.engine import AppEngine
from instantdb_local.instance import Instance


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AppEngine]:
    app = AppEngine(tmp_path / "app" / "app.sqlite3", app_id=str(uuid.uuid4()))
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    with Instance.open(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def client(instance: Instance) -> Iterator[TestClient]:
    with TestClient(create_app(instance), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def app_engine(instance: Instance) -> AppEngine:
    """The engine of the default app the ``client`` talks to."""
    return instance.engine(instance.default_app.id)


@pytest.fixture
def admin_headers(instance: Instance) -> dict[str, str]:
    app = instance.default_app
    return {"app-id": app.id, "authorization": f"Bearer {app.admin_token}"}
