"""Upload sources on their own: sizes, 64 KiB pieces, exact lengths, closing files."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import instantdb._upload as upload
from instantdb import InstantError, InstantTypeError, InstantValueError
from instantdb._upload import CHUNK_SIZE, exact_pieces, exact_pieces_async, upload_source

DATA = bytes(range(256)) * 1000  # 256,000 bytes: three full pieces and a partial one


class NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        return self._inner.readinto(buffer)


def pieces(data: object, file_size: int | None = None) -> list[bytes]:
    source = upload_source(data, file_size, allow_async=False)
    reader = source.open()
    try:
        return list(exact_pieces(reader, source.description))
    finally:
        reader.close()


def test_pieces_are_64_kib_except_the_last() -> None:
    assert CHUNK_SIZE == 65536
    sizes = [len(piece) for piece in pieces(DATA)]
    assert sizes == [65536, 65536, 65536, 256000 - 3 * 65536]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like(kind: type) -> None:
    assert b"".join(pieces(kind(DATA))) == DATA
    assert upload_source(kind(DATA), None, allow_async=False).replayable


def test_a_path_is_opened_measured_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "demo.bin"
    target.write_bytes(DATA)
    opened: list[Any] = []

    def recording_open(*args: Any, **kwargs: Any) -> Any:
        file = open(*args, **kwargs)  # noqa: SIM115
        opened.append(file)
        return file

    monkeypatch.setattr(upload, "open", recording_open, raising=False)
    source = upload_source(target, None, allow_async=False)
    assert source.replayable
    reader = source.open()
    assert reader.size == len(DATA)
    assert b"".join(exact_pieces(reader, source.description)) == DATA
    reader.close()
    assert opened[0].closed
    # a size mismatch is found on opening, and the file is closed again
    with pytest.raises(InstantValueError, match="file_size=5 doesn't match the 256000 bytes"):
        upload_source(target, 5, allow_async=False).open()
    assert opened[1].closed


def test_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    source = upload_source(tmp_path / "nope.png", None, allow_async=False)
    with pytest.raises(InstantError, match=r"could not open the file '.*nope\.png' for upload"):
        source.open()


def test_an_open_file_uploads_from_its_position_and_stays_open() -> None:
    file = io.BytesIO(DATA)
    file.read(8)
    source = upload_source(file, None, allow_async=False)
    assert source.replayable
    reader = source.open()
    assert reader.size == len(DATA) - 8
    assert b"".join(exact_pieces(reader, source.description)) == DATA[8:]
    reader.close()
    assert not file.closed
    # opening again (a retry) starts from the same position
    reader = source.open()
    assert reader.size == len(DATA) - 8
    assert b"".join(exact_pieces(reader, source.description)) == DATA[8:]
    with pytest.raises(InstantValueError, match=r"doesn't match.*from its current position"):
        upload_source(io.BytesIO(DATA), 3, allow_async=False).open()


def test_a_stream_that_cannot_seek_needs_file_size() -> None:
    with pytest.raises(InstantValueError, match="file_size"):
        upload_source(NonSeekable(DATA), None, allow_async=False)
    source = upload_source(NonSeekable(DATA), len(DATA), allow_async=False)
    assert not source.replayable
    assert b"".join(pieces(NonSeekable(DATA), len(DATA))) == DATA


def test_iterables_are_recut_into_pieces() -> None:
    chunks = [DATA[:10], b"", DATA[10:200_000], DATA[200_000:]]
    result = pieces(iter(chunks), len(DATA))
    assert b"".join(result) == DATA
    assert max(len(piece) for piece in result) <= CHUNK_SIZE
    assert not upload_source(chunks, len(DATA), allow_async=False).replayable
    with pytest.raises(InstantValueError, match="file_size"):
        upload_source(chunks, None, allow_async=False)


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (NonSeekable(DATA), len(DATA) + 1, "ended after 256000 of the 256001 bytes"),
        (NonSeekable(DATA), len(DATA) - 1, "has more than the 255999 bytes"),
        ([b"abc", b"def"], 5, "has more than the 5 bytes"),
        ([b"abc"], 4, "ended after 3 of the 4 bytes"),
    ],
)
def test_a_wrong_length_aborts_before_the_last_announced_byte(
    data: object, size: int, message: str
) -> None:
    source = upload_source(data, size, allow_async=False)
    received: list[bytes] = []

    def send_all() -> None:
        for piece in exact_pieces(source.open(), source.description):
            received.append(piece)

    with pytest.raises(InstantValueError, match=message):
        send_all()
    assert len(b"".join(received)) < size  # the server never got a complete body


def test_text_mode_files_and_str_pieces_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InstantTypeError, match="binary mode"):
        upload_source(io.StringIO("text"), None, allow_async=False)
    with pytest.raises(InstantTypeError, match=r"gave str, not bytes"):
        pieces(["text"], 4)

    class LooksBinary:  # a file-like whose read() returns str
        def read(self, n: int) -> str:
            return "x"

        def seekable(self) -> bool:
            return False

    with pytest.raises(InstantTypeError, match="binary mode"):
        pieces(LooksBinary(), 1)


@pytest.mark.parametrize(
    ("data", "file_size", "error", "message"),
    [
        ("hello", None, InstantTypeError, r"pathlib\.Path.*\.encode\(\)"),
        (42, None, InstantTypeError, "accepts bytes"),
        ({"a": 1}, 1, InstantTypeError, "accepts bytes"),
        (b"x", -1, InstantTypeError, "non-negative int"),
        (b"x", 1.5, InstantTypeError, "non-negative int"),
        (b"x", "1", InstantTypeError, "non-negative int"),
        (b"x", True, InstantTypeError, "non-negative int"),
        (b"hello", 4, InstantValueError, "file_size=4 doesn't match the 5 bytes"),
    ],
)
def test_bad_sources_fail_before_any_io(
    data: object, file_size: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        upload_source(data, file_size, allow_async=False)


def test_a_closed_file_is_refused() -> None:
    file = io.BytesIO(b"x")
    file.close()
    with pytest.raises(InstantValueError, match="cannot use this file object"):
        upload_source(file, None, allow_async=False)


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_async_iterables_need_the_async_client() -> None:
    with pytest.raises(InstantTypeError, match="AsyncInstant"):
        upload_source(_chunks([b"x"]), 1, allow_async=False)


def test_async_reading() -> None:
    async def collect(data: object, size: int | None) -> bytes:
        source = upload_source(data, size, allow_async=True)
        reader = await source.open_async()
        try:
            return b"".join(
                [piece async for piece in exact_pieces_async(reader, source.description)]
            )
        finally:
            await reader.close()

    assert asyncio.run(collect(_chunks([DATA[:5], DATA[5:]]), len(DATA))) == DATA
    assert asyncio.run(collect(memoryview(DATA), None)) == DATA
    assert asyncio.run(collect([DATA], len(DATA))) == DATA
    with pytest.raises(InstantValueError, match="ended after 3 of the 4 bytes"):
        asyncio.run(collect(_chunks([b"abc"]), 4))
