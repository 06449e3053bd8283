"""The bytes of an app's files, on disk next to its database.

Layout, inside the app's directory (removed with the app)::

    files/<location-id>            one file per stored blob, written once, never changed
    files/.incoming/<random>.part  uploads in progress

A blob's file name is its location id, a random UUID the server makes: user-supplied
paths never reach the file system, so no path can escape the directory. An upload is
written to a temporary file, flushed and fsynced, then renamed into place, so a blob is
either complete or absent; a crash leaves at most a stale ``.part`` file or a blob no
``$files`` row names, and `BlobStore.sweep` removes both.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from ._disk import fsync_dir, private_dir

__all__ = ["FILES_ROUTE_PREFIX", "BlobStore", "IncomingBlob", "download_path", "new_location_id"]

# Where the server serves blobs: GET /storage/files/<app-id>/<location-id>.
FILES_ROUTE_PREFIX = "/storage/files"

_INCOMING = ".incoming"
_PART_SUFFIX = ".part"


def new_location_id() -> str:
    return str(uuid.uuid4())


def is_location_id(value: str) -> bool:
    """Whether ``value`` is a location id as this module makes them (a canonical UUID)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def download_path(app_id: str, location_id: str) -> str:
    """The server path that serves a blob (its ``$files`` ``url`` without the origin)."""
    return f"{FILES_ROUTE_PREFIX}/{app_id}/{location_id}"


class BlobStore:
    """One app's blobs under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path_of(self, location_id: str) -> Path:
        if not is_location_id(location_id):
            # Only ids this module made are ever looked up; anything else is a bug.
            raise ValueError(f"not a location id: {location_id!r}")
        return self.root / location_id

    def new_upload(self) -> IncomingBlob:
        """A temporary file to stream an upload into; see `IncomingBlob`."""
        incoming = self.root / _INCOMING
        private_dir(self.root)
        private_dir(incoming)
        return IncomingBlob(self, incoming / f"{uuid.uuid4()}{_PART_SUFFIX}")

    def open(self, location_id: str) -> BinaryIO | None:
        """The blob opened for reading, or None if there is none.

        An open blob stays readable to the end even if it is deleted meanwhile.
        """
        try:
            return self.path_of(location_id).open("rb")
        except FileNotFoundError:
            return None

    def delete(self, location_id: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path_of(location_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def location_ids(self) -> set[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return set()
        return {name for name in names if is_location_id(name)}

    def sweep(self, keep: set[str], *, older_than_seconds: float = 3600.0) -> int:
        """Remove blobs not in ``keep`` and stale ``.part`` files; return how many.

        Only files untouched for ``older_than_seconds`` go, so an upload that another
        thread is finishing right now (renamed, not yet committed) is left alone.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        candidates = [self.root / name for name in self.location_ids() - keep]
        with contextlib.suppress(FileNotFoundError):
            candidates += [
                entry
                for entry in (self.root / _INCOMING).iterdir()
                if entry.name.endswith(_PART_SUFFIX)
            ]
        for path in candidates:
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class IncomingBlob:
    """An upload being written: `write` pieces, `finish`, then `store_as` or `discard`.

    Used as a context manager, it is discarded on leaving unless it was stored, so no
    half-written file outlives a failed upload.
    """

    def __init__(self, store: BlobStore, path: Path) -> None:
        self._store = store
        self.path = path
        # "x": never reuse a name, even one a crashed upload left behind.
        self._file: BinaryIO | None = path.open("xb")
        path.chmod(0o600)
        self.size = 0
        self._stored = False

    def __repr__(self) -> str:
        return f"IncomingBlob({self.path.name!r}, size={self.size})"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._file is None:
            raise RuntimeError("this upload is already finished")
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> None:
        """Flush and fsync: after this the bytes are on disk."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.flush()
            os.fsync(file.fileno())
        finally:
            file.close()

    def store_as(self, location_id: str) -> Path:
        """Move the finished upload to its place as blob ``location_id``."""
        self.finish()
        target = self._store.path_of(location_id)
        os.replace(self.path, target)
        self._stored = True
        fsync_dir(target.parent)
        return target

    def discard(self) -> None:
        """Delete the temporary file (nothing happens once stored). Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self._stored:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> IncomingBlob:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()
