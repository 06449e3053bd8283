"""Uploads over a real socket: bodies stream to disk as they arrive, and an upload the
client abandons leaves nothing behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from instantdb_local import LocalServer
from instantdb_local.engine import AppEngine
from tests.local.storage.conftest import files_of, leftovers

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(data_dir=tmp_path_factory.mktemp("data")) as running:
        yield running


@pytest.fixture
def engine(server: LocalServer) -> AppEngine:
    return server.instance.engine(server.app_id)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def open_upload(server: LocalServer, path: str, size: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"PUT /admin/storage/upload?app_id={server.app_id} HTTP/1.1\r\n"
        f"host: 127.0.0.1\r\nauthorization: Bearer {server.admin_token}\r\n"
        f"path: {path}\r\ncontent-length: {size}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def parts(engine: AppEngine) -> list[Path]:
    incoming = engine.blobs.root / ".incoming"
    return list(incoming.glob("*.part")) if incoming.exists() else []


def test_the_body_reaches_disk_while_it_is_still_arriving(server, engine):
    size = 16 * MiB
    sock = open_upload(server, "stream/probe.bin", size)
    try:
        sock.sendall(b"a" * (size // 2))

        def some_on_disk() -> bool:
            return any(p.stat().st_size >= 4 * MiB for p in parts(engine))

        # Written in batches of a few MiB as it arrives, not at the end: a quarter of the
        # body is on disk before the second half is even sent.
        wait_until(some_on_disk, "a quarter of the body is in the temporary file")
        sock.sendall(b"b" * (size // 2))
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the answer"
            reply += chunk
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 200")
    [row] = [f for f in files_of(engine) if f["path"] == "stream/probe.bin"]
    assert row["size"] == size
    stored = engine.blobs.path_of(row["location-id"]).read_bytes()
    assert stored == b"a" * (size // 2) + b"b" * (size // 2)
    assert parts(engine) == []


def test_an_abandoned_upload_leaves_nothing(server, engine):
    before = leftovers(engine)
    sock = open_upload(server, "stream/abandoned.bin", 8 * MiB)
    try:
        sock.sendall(b"x" * (3 * MiB))
        wait_until(lambda: bool(parts(engine)), "the upload has started")
    finally:
        sock.close()
    wait_until(lambda: parts(engine) == [], "the temporary file is removed")
    assert leftovers(engine) == before
    assert [f for f in files_of(engine) if f["path"] == "stream/abandoned.bin"] == []


@pytest.mark.parametrize("size", [1 * MiB, 20 * MiB])
def test_a_refused_upload_is_answered_while_the_client_is_still_sending(server, size):
    # Refused before the body is read (guests may not upload without rules); the
    # client, still sending, gets the answer rather than a broken connection.
    headers = {"app-id": server.app_id, "as-guest": "true", "path": "denied.bin"}
    with httpx.Client(timeout=30) as client:
        response = client.put(
            server.api_uri + "/admin/storage/upload", content=b"x" * size, headers=headers
        )
        assert response.status_code == 400
        assert response.json()["type"] == "permission-denied"
        # The connection still serves requests (or is replaced transparently).
        assert client.get(server.api_uri + "/health").status_code == 200
