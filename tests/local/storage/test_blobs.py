"""The blob store on disk: complete-or-absent writes, names, sweeping."""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path

import pytest

from instantdb_local.blobs import BlobStore, download_path, is_location_id, new_location_id
from instantdb_local.engine import Actor, AppEngine


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "files")


def incoming_names(store: BlobStore) -> list[str]:
    incoming = store.root / ".incoming"
    return sorted(p.name for p in incoming.iterdir()) if incoming.exists() else []


def test_an_upload_becomes_a_blob_only_when_stored(store: BlobStore) -> None:
    location = new_location_id()
    with store.new_upload() as blob:
        blob.write(b"hello ")
        blob.write(bytearray(b"world"))
        assert blob.size == 11
        assert not store.path_of(location).exists()
        assert len(incoming_names(store)) == 1
        stored = blob.store_as(location)
    assert stored.read_bytes() == b"hello world"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert incoming_names(store) == []
    assert store.location_ids() == {location}
    with store.open(location) as opened:  # type: ignore[union-attr]
        assert opened.read() == b"hello world"


def test_a_failed_upload_leaves_nothing(store: BlobStore) -> None:
    def fail_midway() -> None:
        with store.new_upload() as blob:
            blob.write(b"partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert incoming_names(store) == []
    assert store.location_ids() == set()


def test_writing_after_finish_is_a_bug(store: BlobStore) -> None:
    with store.new_upload() as blob:
        blob.finish()
        with pytest.raises(RuntimeError, match="already finished"):
            blob.write(b"x")


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", "not-a-uuid", "02A1FEC5-9B02-4B79-B2EB-99B76D599514", "/etc/passwd"]
)
def test_only_location_ids_name_blobs(store: BlobStore, name: str) -> None:
    assert not is_location_id(name)
    with pytest.raises(ValueError, match="not a location id"):
        store.path_of(name)


def test_open_and_delete_missing_blobs(store: BlobStore) -> None:
    location = new_location_id()
    assert store.open(location) is None
    assert store.delete(location) is False
    with store.new_upload() as blob:
        blob.store_as(location)
    assert store.delete(location) is True
    assert store.delete(location) is False


def test_sweep_removes_old_orphans_and_stale_parts(store: BlobStore) -> None:
    kept, orphan, fresh_orphan = (new_location_id() for _ in range(3))
    for location in (kept, orphan, fresh_orphan):
        with store.new_upload() as blob:
            blob.write(location.encode())
            blob.store_as(location)
    stale_part = store.new_upload()
    stale_part.write(b"crashed")
    stale_part.finish()
    live_part = store.new_upload()
    (store.root / "README").write_text("not a blob")
    old = time.time() - 7200
    for path in (store.path_of(kept), store.path_of(orphan), stale_part.path):
        os.utime(path, (old, old))
    removed = store.sweep({kept})
    assert removed == 2
    assert store.location_ids() == {kept, fresh_orphan}
    assert not stale_part.path.exists()
    assert live_part.path.exists()
    assert (store.root / "README").exists()
    live_part.discard()


def test_sweep_of_a_store_never_written(store: BlobStore) -> None:
    assert store.sweep(set()) == 0


def test_download_path() -> None:
    assert download_path("app", "loc") == "/storage/files/app/loc"


def test_an_engine_sweeps_blobs_no_file_row_names(tmp_path: Path) -> None:
    path = tmp_path / "app" / "app.sqlite3"
    engine = AppEngine(path, app_id=str(uuid.uuid4()))
    referenced, orphan = new_location_id(), new_location_id()
    try:
        for location in (referenced, orphan):
            with engine.blobs.new_upload() as blob:
                blob.store_as(location)
        engine.transact(
            [
                [
                    "update",
                    "$files",
                    str(uuid.uuid4()),
                    {"path": "a.txt", "size": 0, "location-id": referenced},
                ]
            ],
            Actor.admin(),
            system_writes=True,
        )
        old = time.time() - 7200
        for location in (referenced, orphan):
            os.utime(engine.blobs.path_of(location), (old, old))
    finally:
        engine.close()
    reopened = AppEngine(path, app_id=engine.app_id)
    try:
        assert reopened.blobs.location_ids() == {referenced}
    finally:
        reopened.close()
