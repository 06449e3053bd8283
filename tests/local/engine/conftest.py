"""Fixtures for the engine's unit tests: a fresh app on a temporary SQLite file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from instantdb_local.engine import AppEngine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AppEngine]:
    app = AppEngine(tmp_path / "app.sqlite3", app_id=str(uuid.uuid4()))
    try:
        yield app
    finally:
        app.close()
