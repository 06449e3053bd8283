"""Where stream bytes live: append-only part files, one directory per stream.

Layout, inside the app's directory::

    streams/.url-secret          the key stream file URLs are derived from (0600)
    streams/<stream-id>/<n>      part n of the stream (0, 1, 2, ...): its bytes, as sent

A part is what one stream file URL serves. `StreamStore.append` writes the pieces of a
group of appends and fsyncs every file it touched (and the directory, when it made a
file) before it returns; only then does the server acknowledge the bytes
(``stream-flushed``). One call covers every append a push brought, so a push costs one
fsync however many appends it holds.

Each write starts at the part's acknowledged size and cuts the file there, so the bytes
of a write that failed half way never stay in front of the next one. A crash can still
leave bytes past the acknowledged offset (written, not yet synced): a prefix of what the
writer sent, as parts are only appended to. `StreamStore.parts` trims a part that ends
inside a UTF-8 character back to the last whole one; the resuming writer is told that
offset and resends the rest, so nothing is duplicated or lost.

Stores of an earlier version kept the bytes in ``streams.sqlite3``; they are copied into
part files (and the old file removed) the first time the store is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from instantdb_local._disk import fsync_dir, private_dir

__all__ = ["PART_LIMIT", "Part", "Piece", "StreamStore"]

# The real server writes a stream file every 1 MiB.
PART_LIMIT = 1024 * 1024

_SECRET_FILE = ".url-secret"
_LEGACY_FILE = "streams.sqlite3"
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


@dataclass(frozen=True)
class Part:
    """One stream file: bytes ``[start, start + size)`` of the stream."""

    index: int
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Piece:
    """Bytes to add to part ``part``, which holds ``at`` acknowledged bytes so far."""

    part: int
    at: int
    data: bytes


class StreamStore:
    """The stream bytes of one app, under ``root``. Every method does blocking I/O.

    Safe to use from several threads as long as no two calls write the same stream at
    once (the live side serialises a stream's appends).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        if private_dir(root):
            fsync_dir(root.parent)
        legacy = root.parent / _LEGACY_FILE
        # Stream file URLs handed out by the previous version stay valid: its key is kept.
        self._secret = self._load_secret(_legacy_secret(legacy) if legacy.exists() else None)
        if legacy.exists():
            self._import_legacy(legacy)

    def append(self, stream_id: str, pieces: Sequence[Piece]) -> None:
        """Add ``pieces`` to their parts, durably: on disk when this returns."""
        directory = self.root / stream_id
        made_directory = private_dir(directory)
        made_file = False
        for piece in pieces:
            path = directory / str(piece.part)
            file: BinaryIO
            try:
                file = path.open("r+b")
            except FileNotFoundError:
                file = path.open("xb")
                path.chmod(0o600)
                made_file = True
            with file:
                file.seek(piece.at)
                file.write(piece.data)
                file.truncate()  # whatever a failed write left past this point goes
                file.flush()
                _fdatasync(file.fileno())
        if made_file:
            fsync_dir(directory)
        if made_directory:
            fsync_dir(self.root)

    def parts(self, stream_id: str) -> list[Part]:
        """The stream's parts in order (empty ones left out)."""
        directory = self.root / stream_id
        try:
            names = [name for name in os.listdir(directory) if name.isdigit()]
        except FileNotFoundError:
            return []
        indexes = sorted(int(name) for name in names)
        sizes = [(directory / str(index)).stat().st_size for index in indexes]
        if indexes:
            sizes[-1] = _trim_to_character(directory / str(indexes[-1]), sizes[-1])
        parts = []
        start = 0
        for index, size in zip(indexes, sizes, strict=True):
            if size:
                parts.append(Part(index, start, size))
                start += size
        return parts

    def read_part(self, stream_id: str, index: int) -> bytes | None:
        """The bytes of one part, or None if the stream has no such part."""
        try:
            return (self.root / stream_id / str(index)).read_bytes() or None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def file_key(self, stream_id: str, index: int) -> str:
        """The unguessable part of a stream file's URL (the URL is its only credential)."""
        message = f"{stream_id}/{index}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]

    def check_file_key(self, stream_id: str, index: int, key: str) -> bool:
        return hmac.compare_digest(self.file_key(stream_id, index), key)

    def __repr__(self) -> str:
        return f"StreamStore(root={str(self.root)!r})"

    # -- setup ----------------------------------------------------------------------------

    def _load_secret(self, fallback: str | None = None) -> bytes:
        path = self.root / _SECRET_FILE
        with contextlib.suppress(FileNotFoundError):
            return bytes.fromhex(path.read_text().strip())
        # Written whole under a temporary name, then renamed: never half a key.
        temporary = path.with_name(f"{_SECRET_FILE}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(fallback or secrets.token_hex(32))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        fsync_dir(self.root)
        return bytes.fromhex(path.read_text().strip())

    def _import_legacy(self, legacy: Path) -> None:
        """Copy the parts an earlier version kept in SQLite into files, then remove it.

        Parts are rewritten whole, so an import cut short by a crash just runs again.
        """
        conn = sqlite3.connect(str(legacy), isolation_level=None)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if "chunks" in tables:
                rows = conn.execute(
                    "SELECT stream_id, part, data FROM chunks ORDER BY stream_id, start"
                )
                current: tuple[str, int] | None = None
                data = bytearray()
                for stream_id, part, chunk in rows:
                    if (stream_id, part) != current:
                        if current is not None:
                            self._rewrite_part(*current, bytes(data))
                        current, data = (stream_id, part), bytearray()
                    data += chunk
                if current is not None:
                    self._rewrite_part(*current, bytes(data))
        finally:
            conn.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                legacy.with_name(legacy.name + suffix).unlink()

    def _rewrite_part(self, stream_id: str, index: int, data: bytes) -> None:
        self.append(stream_id, [Piece(index, 0, data)])


def _legacy_secret(legacy: Path) -> str | None:
    """The URL key the previous version's store kept, if it has one."""
    conn = sqlite3.connect(str(legacy), isolation_level=None)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "settings" not in tables:
            return None
        row = conn.execute("SELECT value FROM settings WHERE key = 'url-secret'").fetchone()
        return str(row[0]) if row is not None else None
    finally:
        conn.close()


def _trim_to_character(path: Path, size: int) -> int:
    """Cut the file back to its last whole UTF-8 character (a crash may have left part of
    one); its new size."""
    if not size:
        return size
    with path.open("r+b") as file:
        file.seek(max(0, size - 4))
        unfinished = _unfinished_character(file.read())
        if unfinished:
            size -= unfinished
            file.truncate(size)
            file.flush()
            _fdatasync(file.fileno())
    return size


def _unfinished_character(tail: bytes) -> int:
    """How many bytes at the end of ``tail`` start a character they do not finish."""
    for back in range(1, min(4, len(tail)) + 1):
        byte = tail[-back]
        if byte & 0xC0 != 0x80:  # ASCII or a lead byte: the last character starts here
            length = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return back if back < length else 0
    return 0
