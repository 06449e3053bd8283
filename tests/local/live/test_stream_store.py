"""The stream store on its own: part files, what a crash can leave in them, and the
import of the SQLite store of the previous version."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from instantdb_local.live._stream_store import Part, Piece, StreamStore

S = "5e000000-0000-4000-8000-000000000001"


def test_pieces_are_appended_to_their_parts_and_read_back(tmp_path: Path) -> None:
    store = StreamStore(tmp_path / "streams")
    store.append(S, [Piece(0, 0, b"Hello")])
    store.append(S, [Piece(0, 5, " wör".encode()), Piece(1, 0, b"ld!")])
    assert store.parts(S) == [Part(0, 0, 10), Part(1, 10, 3)]
    assert store.read_part(S, 0) == "Hello wör".encode()
    assert store.read_part(S, 1) == b"ld!"
    assert store.read_part(S, 2) is None
    assert store.parts("5e000000-0000-4000-8000-0000000000ff") == []
    assert store.read_part("5e000000-0000-4000-8000-0000000000ff", 0) is None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_stream_files_are_private(tmp_path: Path) -> None:
    store = StreamStore(tmp_path / "streams")
    store.append(S, [Piece(0, 0, b"secret")])
    for path in (tmp_path / "streams", tmp_path / "streams" / S):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in (tmp_path / "streams" / S / "0", tmp_path / "streams" / ".url-secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_write_starts_at_the_acknowledged_size_whatever_a_failed_one_left(
    tmp_path: Path,
) -> None:
    store = StreamStore(tmp_path / "streams")
    store.append(S, [Piece(0, 0, b"abc")])
    with (tmp_path / "streams" / S / "0").open("ab") as part:
        part.write(b"half of a failed wri")
    store.append(S, [Piece(0, 3, b"def")])
    assert store.read_part(S, 0) == b"abcdef"


def test_loading_trims_a_character_a_crash_cut_in_half(tmp_path: Path) -> None:
    store = StreamStore(tmp_path / "streams")
    store.append(S, [Piece(0, 0, b"0123456789"), Piece(1, 0, "ab✓".encode())])
    # Written but never acknowledged: whole characters, then half of one.
    with (tmp_path / "streams" / S / "1").open("ab") as part:
        part.write("c€".encode() + "😀".encode()[:3])
    assert store.parts(S) == [Part(0, 0, 10), Part(1, 10, len("ab✓c€".encode()))]
    assert store.read_part(S, 1) == "ab✓c€".encode()  # cut on disk too


@pytest.mark.parametrize("tail", ["a", "é", "✓", "😀"])
def test_whole_characters_are_never_trimmed(tmp_path: Path, tail: str) -> None:
    store = StreamStore(tmp_path / "streams")
    store.append(S, [Piece(0, 0, ("x" + tail).encode())])
    assert store.parts(S) == [Part(0, 0, len(("x" + tail).encode()))]


def test_file_keys_are_stable_per_store_and_secret(tmp_path: Path) -> None:
    store = StreamStore(tmp_path / "streams")
    key = store.file_key(S, 0)
    assert StreamStore(tmp_path / "streams").file_key(S, 0) == key  # the secret is kept
    assert store.check_file_key(S, 0, key)
    assert not store.check_file_key(S, 1, key)
    (tmp_path / "other").mkdir()
    assert StreamStore(tmp_path / "other" / "streams").file_key(S, 0) != key


def test_the_sqlite_store_of_the_previous_version_is_imported(tmp_path: Path) -> None:
    legacy = tmp_path / "streams.sqlite3"
    conn = sqlite3.connect(legacy)
    conn.executescript(
        """
        CREATE TABLE chunks (stream_id TEXT NOT NULL, start INTEGER NOT NULL,
            part INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream_id, start))
            WITHOUT ROWID;
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    secret = "ab" * 32
    other = "5e000000-0000-4000-8000-000000000002"
    conn.executemany(
        "INSERT INTO chunks VALUES (?, ?, ?, ?)",
        [(S, 0, 0, b"Hello"), (S, 5, 0, b" world"), (S, 11, 1, b"!"), (other, 0, 0, b"x")],
    )
    conn.execute("INSERT INTO settings VALUES ('url-secret', ?)", (secret,))
    conn.commit()
    conn.close()

    store = StreamStore(tmp_path / "streams")
    assert store.parts(S) == [Part(0, 0, 11), Part(1, 11, 1)]
    assert store.read_part(S, 0) == b"Hello world"
    assert store.read_part(other, 0) == b"x"
    # URLs handed out before keep working.
    expected = hmac.new(bytes.fromhex(secret), f"{S}/0".encode(), hashlib.sha256)
    assert store.file_key(S, 0) == expected.hexdigest()[:40]
    assert not legacy.exists()
