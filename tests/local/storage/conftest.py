"""Fixtures for storage: a real instance served in-process, and helpers to reach its
blobs on disk."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

with warnings.catch_warnings():
    # Starlette asks for its own httpx fork; the stock httpx it still supports is enough.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from instantdb_local.app import create_app
from instantdb_local.engine import Actor, AppEngine
from instantdb_local.instance import Instance


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
    return instance.engine(instance.default_app.id)


@pytest.fixture
def admin_headers(instance: Instance) -> dict[str, str]:
    app = instance.default_app
    return {"app-id": app.id, "authorization": f"Bearer {app.admin_token}"}


def upload(
    client: TestClient, headers: dict[str, str], path: str | None, content: Any, **extra: str
) -> Any:
    sent = {**headers, **extra}
    if path is not None:
        sent["path"] = path
    return client.put("/admin/storage/upload", content=content, headers=sent)


def files_of(engine: AppEngine) -> list[dict[str, Any]]:
    return engine.query({"$files": {}}, Actor.admin())["$files"]


def url_path(url: str) -> str:
    """The path of a file url, to fetch it through the in-process client."""
    return urlsplit(url).path


def leftovers(engine: AppEngine) -> list[str]:
    """Everything in the app's blob directory: blobs and uploads in progress."""
    root = engine.blobs.root
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
