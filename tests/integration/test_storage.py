"""`db.storage` against the local server over HTTP, with both clients: every upload
source, byte-exact read-back, upsert by path, deletes, permissions, and a large
streamed upload in bounded memory."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instantdb import InstantAPIError, InstantPermissionError, lookup
from instantdb_local.instance import AppCredentials
from tests.integration.sync_or_async import CLIENT_KINDS, is_async, open_client

KiB = 1024
MiB = 1024 * KiB
# Several 64 KiB pieces and a partial one; every byte value, in no simple pattern.
CONTENT = hashlib.sha256(b"seed").digest() * (200 * KiB // 32) + b"tail"


@pytest.fixture(params=CLIENT_KINDS)
def db(request: pytest.FixtureRequest, instant_app: AppCredentials) -> Iterator[Any]:
    yield from open_client(request.param, instant_app)


def file_at(db: Any, path: str) -> dict[str, Any]:
    rows = db.query({"$files": {"$": {"where": {"path": path}}}})["$files"]
    assert len(rows) == 1, rows
    return rows[0]


def read_back(db: Any, record: dict[str, Any], tmp_path: Path) -> list[bytes]:
    """The stored bytes three ways: the bare url, download(), download(to=)."""
    plain = httpx.get(record["url"], timeout=30)  # no credentials: the url is the key
    assert plain.status_code == 200
    target = db.storage.download(record, to=tmp_path / "downloaded")
    return [plain.content, db.storage.download(record), Path(target).read_bytes()]


class NonSeekable(io.RawIOBase):
    """A binary stream that cannot seek or tell its size, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        piece = self._data.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# Each builds (data, keyword arguments, expected content) for upload_file.
SOURCES = {
    "bytes": lambda tmp: (CONTENT, {}, CONTENT),
    "bytearray": lambda tmp: (bytearray(CONTENT), {}, CONTENT),
    "memoryview": lambda tmp: (memoryview(CONTENT), {}, CONTENT),
    "path": lambda tmp: (_written(tmp / "src.bin"), {}, CONTENT),
    "non-seekable stream": lambda tmp: (
        NonSeekable(CONTENT),
        {"file_size": len(CONTENT)},
        CONTENT,
    ),
    "list of chunks": lambda tmp: (
        list(pieces(CONTENT, 1000)),
        {"file_size": len(CONTENT)},
        CONTENT,
    ),
    "generator": lambda tmp: (pieces(CONTENT, 70 * KiB), {"file_size": len(CONTENT)}, CONTENT),
}


def _written(path: Path) -> Path:
    path.write_bytes(CONTENT)
    return path


@pytest.mark.parametrize("kind", list(SOURCES))
def test_each_upload_source_reads_back_byte_for_byte(db, tmp_path, kind) -> None:
    data, options, expected = SOURCES[kind](tmp_path)
    answer = db.storage.upload_file(
        f"sources/{kind}.bin", data, content_type="application/x-test", **options
    )
    assert answer["data"]["size"] == len(expected)
    record = file_at(db, f"sources/{kind}.bin")
    assert record["id"] == answer["data"]["id"]
    assert record["size"] == len(expected)
    assert record["content-type"] == "application/x-test"
    assert read_back(db, record, tmp_path) == [expected] * 3


def test_an_open_file_uploads_from_its_position_and_stays_open(db, tmp_path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(CONTENT)
    with source.open("rb") as handle:
        handle.seek(1000)
        db.storage.upload_file("open/file.bin", handle)
        assert not handle.closed  # the caller's to close
    record = file_at(db, "open/file.bin")
    assert read_back(db, record, tmp_path) == [CONTENT[1000:]] * 3


def test_an_async_iterable_with_the_async_client(instant_app, tmp_path) -> None:
    # Only AsyncInstant takes async iterables (the sync client refuses them before
    # sending; tests/unit/test_upload.py covers that).
    async def chunks() -> Any:
        for piece in pieces(CONTENT, 50 * KiB):
            yield piece

    for db in open_client("async", instant_app):
        assert is_async(db)
        db.storage.upload_file("async/iter.bin", chunks(), file_size=len(CONTENT))
        assert read_back(db, file_at(db, "async/iter.bin"), tmp_path) == [CONTENT] * 3


def test_uploading_to_a_path_again_replaces_the_file(db, tmp_path) -> None:
    first = db.storage.upload_file("same/path.txt", b"first version", content_type="text/plain")
    old_url = file_at(db, "same/path.txt")["url"]
    second = db.storage.upload_file("same/path.txt", b"second")
    assert second["data"]["id"] == first["data"]["id"]
    record = file_at(db, "same/path.txt")
    assert record["size"] == 6
    assert record["content-type"] == "application/octet-stream"
    assert read_back(db, record, tmp_path) == [b"second"] * 3
    assert httpx.get(old_url, timeout=30).status_code == 404


@pytest.mark.parametrize("how", ["id", "lookup"])
def test_deleting_the_row_deletes_the_bytes(db, how) -> None:
    answer = db.storage.upload_file("doomed.txt", b"bye")
    record = file_at(db, "doomed.txt")
    target = answer["data"]["id"] if how == "id" else lookup("path", "doomed.txt")
    db.transact(db.tx["$files"][target].delete())
    assert db.query({"$files": {}})["$files"] == []
    with pytest.raises(InstantAPIError) as gone:
        db.storage.download(record)
    assert gone.value.status == 404
    assert record["url"] not in str(gone.value)


def test_a_path_that_escapes_is_refused(db) -> None:
    for path in ("../etc/passwd", "/abs/path", "a/../../b", "..\\x"):
        with pytest.raises(InstantAPIError) as refused:
            db.storage.upload_file(path, b"x")
        assert refused.value.status == 400
        assert refused.value.type == "param-malformed"
    assert db.query({"$files": {}})["$files"] == []


def test_guests_may_not_upload_without_rules(db) -> None:
    with pytest.raises(InstantPermissionError) as denied:
        db.as_user(guest=True).storage.upload_file("any.txt", b"x" * 100_000)
    assert denied.value.hint == {
        "input": ["$files", "create"],
        "expected": "has-storage-permission?",
    }
    assert db.query({"$files": {}})["$files"] == []


@pytest.mark.instant_app(
    rules={
        "$files": {
            "allow": {
                "view": "true",
                "create": "data.path.startsWith('uploads/' + auth.id + '/')",
            }
        }
    }
)
def test_a_path_scoped_rule(db, tmp_path) -> None:
    token = db.auth.create_token(email="owner@example.com")
    user_id = db.auth.verify_token(token)["id"]
    as_owner = db.as_user(token=token)
    mine = f"uploads/{user_id}/avatar.png"
    as_owner.storage.upload_file(mine, b"png", content_type="image/png")
    for path in ("uploads/someone-else/avatar.png", "avatar.png"):
        with pytest.raises(InstantPermissionError):
            as_owner.storage.upload_file(path, b"png")
    with pytest.raises(InstantPermissionError):
        db.as_user(guest=True).storage.upload_file(mine, b"guest")
    record = file_at(as_owner, mine)
    assert read_back(db, record, tmp_path) == [b"png"] * 3
    assert [f["path"] for f in db.query({"$files": {}})["$files"]] == [mine]


def test_a_large_streamed_upload_stays_in_bounded_memory(db, tmp_path) -> None:
    # 200 MiB from a generator: neither the client nor the server (in this process when
    # the session server is a LocalServer) may hold it whole. tracemalloc sees both.
    size = 200 * MiB
    piece = hashlib.sha256(b"large").digest() * (64 * KiB // 32)
    sent = hashlib.sha256()

    def generate() -> Iterator[bytes]:
        for index in range(size // len(piece)):
            block = piece if index % 2 == 0 else piece[::-1]
            sent.update(block)
            yield block

    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        answer = db.storage.upload_file("big/stream.bin", generate(), file_size=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer["data"]["size"] == size
    assert peak - baseline < 64 * MiB, f"peak grew by {(peak - baseline) / MiB:.1f} MiB"
    record = file_at(db, "big/stream.bin")
    assert record["size"] == size
    target = Path(db.storage.download(record, to=tmp_path / "big.bin"))
    received = hashlib.sha256()
    with target.open("rb") as handle:
        while block := handle.read(MiB):
            received.update(block)
    assert received.hexdigest() == sent.hexdigest()
