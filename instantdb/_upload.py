"""Upload sources: what ``storage.upload_file`` may send, validated up front, and read in
64 KiB pieces by whichever transport sends it.

A source is checked when the call is built (type, ``file_size``, text-mode files), so
mistakes fail before any request. The transports open it once per attempt and stream it
through `exact_pieces` / `exact_pieces_async`, which guarantee the body is exactly the
announced ``content-length``: a source that ends early or runs long raises
`InstantValueError` and aborts the request before its last bytes go out, so the server
never stores a truncated or mixed-up file. The async client does blocking reads (files,
plain iterables) in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, BinaryIO, Protocol

from ._errors import InstantError, InstantTypeError, InstantValueError

__all__ = ["CHUNK_SIZE", "UploadSource", "exact_pieces", "exact_pieces_async", "upload_source"]

CHUNK_SIZE = 64 * 1024

ACCEPTED = (
    "bytes, bytearray, memoryview, a pathlib.Path, a binary file object, or an iterable of "
    "bytes (with file_size)"
)


class BlockingReader(Protocol):
    size: int

    def read(self) -> bytes:
        """The next piece; b"" at the end. File readers give at most CHUNK_SIZE bytes; a
        stream push hands its text pieces whole (cutting them would cost a copy)."""

    def close(self) -> None: ...


class AsyncReader(Protocol):
    size: int

    async def read(self) -> bytes: ...

    async def close(self) -> None: ...


class UploadSource(ABC):
    """A validated upload body. ``replayable`` sources can be sent again from the start."""

    replayable: bool
    description: str

    @abstractmethod
    def open(self) -> BlockingReader:
        """Open for one attempt (blocking: may open and stat a file)."""

    async def open_async(self) -> AsyncReader:
        """Open for one attempt of the async client: blocking work runs in a thread."""
        return _ThreadedReader(await asyncio.to_thread(self.open))

    def __repr__(self) -> str:
        return f"<upload of {self.description}>"


def upload_source(data: object, file_size: object, *, allow_async: bool) -> UploadSource:
    """The source for ``data``; raises before any I/O if it cannot be uploaded as given."""
    size = _checked_file_size(file_size)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _BytesSource(memoryview(data).cast("B"), size)
    if isinstance(data, os.PathLike):
        return _PathSource(os.fspath(data), size)
    if isinstance(data, str):
        raise InstantTypeError(
            "upload_file() takes the file's content, not a str: pass pathlib.Path(...) for a "
            "file on disk, or text.encode() for text"
        )
    if isinstance(data, io.TextIOBase):
        raise InstantTypeError(
            "upload_file() got a file opened in text mode; open it in binary mode ('rb')"
        )
    if callable(getattr(data, "read", None)):
        return _FileSource(data, size)  # type: ignore[arg-type]
    if isinstance(data, AsyncIterable):
        if not allow_async:
            raise InstantTypeError(
                "upload_file() got an async iterable; the blocking Instant client needs a plain "
                "iterable of bytes (or use AsyncInstant)"
            )
        return _AsyncIterableSource(data, _required_size(size, "an async iterable"))
    if isinstance(data, Iterable) and not isinstance(data, (dict, set, frozenset)):
        return _IterableSource(data, _required_size(size, "an iterable"))
    raise InstantTypeError(f"upload_file() accepts {ACCEPTED}; got {type(data).__name__}")


def exact_pieces(reader: BlockingReader, description: str) -> Iterator[bytes]:
    """The reader's bytes, checked to total exactly ``reader.size``.

    One piece is held back until the next read: had the source more data than announced,
    the error is raised before the last announced byte is sent.
    """
    check = _LengthCheck(reader.size, description)
    held: bytes | None = None
    while (piece := check.take(reader.read())) is not None:
        if held is not None:
            yield held
        held = piece
    if held is not None:
        yield held


async def exact_pieces_async(reader: AsyncReader, description: str) -> AsyncIterator[bytes]:
    """`exact_pieces` for the async client."""
    check = _LengthCheck(reader.size, description)
    held: bytes | None = None
    while (piece := check.take(await reader.read())) is not None:
        if held is not None:
            yield held
        held = piece
    if held is not None:
        yield held


class _LengthCheck:
    def __init__(self, size: int, description: str) -> None:
        self.size = size
        self.sent = 0
        self.description = description

    def take(self, piece: object) -> bytes | None:
        """``piece`` as bytes, or None at a correct end; raises on any mismatch."""
        data = _as_bytes(piece, self.description)
        if not data:
            if self.sent < self.size:
                raise InstantValueError(
                    f"{self.description} ended after {self.sent} of the {self.size} bytes "
                    "announced; the upload was aborted, nothing was stored. Pass the right "
                    "file_size, or make sure nothing else reads from the source."
                )
            return None
        self.sent += len(data)
        if self.sent > self.size:
            raise InstantValueError(
                f"{self.description} has more than the {self.size} bytes announced; the upload "
                "was aborted, nothing was stored. Pass the right file_size."
            )
        return data


def _as_bytes(piece: object, description: str) -> bytes:
    if isinstance(piece, bytes):
        return piece
    if isinstance(piece, (bytearray, memoryview)):
        return bytes(piece)
    if isinstance(piece, str):
        raise InstantTypeError(
            f"{description} gave str, not bytes: open files in binary mode ('rb') and encode "
            "text with .encode()"
        )
    raise InstantTypeError(f"{description} gave {type(piece).__name__}, not bytes")


def _checked_file_size(file_size: object) -> int | None:
    if file_size is None:
        return None
    if isinstance(file_size, bool) or not isinstance(file_size, int) or file_size < 0:
        raise InstantTypeError(
            f"file_size must be a non-negative int (the number of bytes to upload), "
            f"got {file_size!r}"
        )
    return file_size


def _required_size(size: int | None, what: str) -> int:
    if size is None:
        raise InstantValueError(
            f"upload_file() got {what}, whose length cannot be known in advance: pass "
            "file_size=<number of bytes>"
        )
    return size


def _check_matches(size: int, declared: int | None, description: str) -> None:
    if declared is not None and declared != size:
        raise InstantValueError(
            f"file_size={declared} doesn't match the {size} bytes of {description}"
        )


def _os_error(exc: OSError, action: str) -> InstantError:
    return InstantError(f"could not {action}: {exc.strerror or exc}")


# --- in-memory bytes --------------------------------------------------------------------


class _BytesSource(UploadSource):
    replayable = True
    description = "the bytes"

    def __init__(self, data: memoryview, declared: int | None) -> None:
        _check_matches(data.nbytes, declared, "the data")
        self._data = data

    def open(self) -> _MemoryReader:
        return _MemoryReader(self._data)

    async def open_async(self) -> AsyncReader:
        return _AsyncMemoryReader(self._data)  # nothing blocks: no thread needed


class _MemoryReader:
    def __init__(self, data: memoryview) -> None:
        self._data = data
        self.size = data.nbytes
        self._offset = 0

    def read(self) -> bytes:
        piece = self._data[self._offset : self._offset + CHUNK_SIZE]
        self._offset += len(piece)
        return bytes(piece)

    def close(self) -> None:
        pass


class _AsyncMemoryReader:
    def __init__(self, data: memoryview) -> None:
        self._reader = _MemoryReader(data)
        self.size = self._reader.size

    async def read(self) -> bytes:
        return self._reader.read()

    async def close(self) -> None:
        pass


# --- files ------------------------------------------------------------------------------


class _FileReader:
    def __init__(self, file: BinaryIO, size: int, description: str, *, owned: bool) -> None:
        self._file = file
        self.size = size
        self._description = description
        self._owned = owned

    def read(self) -> bytes:
        try:
            piece: Any = self._file.read(CHUNK_SIZE)
        except OSError as exc:
            raise _os_error(exc, f"read {self._description}") from exc
        return b"" if piece is None else piece

    def close(self) -> None:
        if self._owned:
            self._file.close()


class _PathSource(UploadSource):
    replayable = True

    def __init__(self, path: str | bytes, declared: int | None) -> None:
        self._path = path
        self._declared = declared
        self.description = f"the file {os.fsdecode(path)!r}"

    def open(self) -> _FileReader:
        try:
            file = open(self._path, "rb")  # noqa: SIM115 - the reader closes it
        except OSError as exc:
            raise _os_error(exc, f"open {self.description} for upload") from exc
        try:
            # The size of what was opened, not of whatever the path names a moment later.
            size = os.fstat(file.fileno()).st_size
            _check_matches(size, self._declared, self.description)
        except BaseException:
            file.close()
            raise
        return _FileReader(file, size, self.description, owned=True)


class _FileSource(UploadSource):
    """A binary file object: uploaded from its current position, never closed by us."""

    description = "the file object"

    def __init__(self, file: BinaryIO, declared: int | None) -> None:
        self._file = file
        self._declared = declared
        self._start: int | None = None
        seekable = getattr(file, "seekable", None)
        try:
            self.replayable = bool(seekable()) if callable(seekable) else False
        except (OSError, ValueError) as exc:  # e.g. a closed file
            raise InstantValueError(f"upload_file() cannot use this file object: {exc}") from exc
        if not self.replayable:
            self._size = _required_size(declared, "a file object that cannot seek")

    def open(self) -> _FileReader:
        if not self.replayable:
            return _FileReader(self._file, self._size, self.description, owned=False)
        try:
            if self._start is None:
                self._start = self._file.tell()
            end = self._file.seek(0, io.SEEK_END)
            self._file.seek(self._start)
        except OSError as exc:
            raise _os_error(exc, f"seek in {self.description}") from exc
        size = end - self._start
        _check_matches(size, self._declared, f"{self.description} (from its current position)")
        return _FileReader(self._file, size, self.description, owned=False)


class _ThreadedReader:
    """A blocking reader driven from asyncio: each read runs in a worker thread."""

    def __init__(self, reader: BlockingReader) -> None:
        self._reader = reader
        self.size = reader.size

    async def read(self) -> bytes:
        return await asyncio.to_thread(self._reader.read)

    async def close(self) -> None:
        await asyncio.to_thread(self._reader.close)


# --- iterables --------------------------------------------------------------------------

_END = object()


class _Pieces:
    """Re-cuts pieces of any size into CHUNK_SIZE slices."""

    def __init__(self) -> None:
        self._rest = memoryview(b"")

    def next_slice(self) -> bytes | None:
        """A slice of the current piece, or None when a new piece must be fetched."""
        if not self._rest.nbytes:
            return None
        piece, self._rest = self._rest[:CHUNK_SIZE], self._rest[CHUNK_SIZE:]
        return bytes(piece)

    def load(self, piece: object, description: str) -> None:
        self._rest = memoryview(_as_bytes(piece, description))


class _IterableSource(UploadSource):
    replayable = False
    description = "the iterable"

    def __init__(self, iterable: Iterable[Any], size: int) -> None:
        self._iterable = iterable
        self._size = size

    def open(self) -> _IterableReader:
        return _IterableReader(iter(self._iterable), self._size, self.description)


class _IterableReader:
    def __init__(self, iterator: Iterator[Any], size: int, description: str) -> None:
        self._iterator = iterator
        self.size = size
        self._description = description
        self._pieces = _Pieces()

    def read(self) -> bytes:
        while (piece := self._pieces.next_slice()) is None:
            item = next(self._iterator, _END)
            if item is _END:
                return b""
            self._pieces.load(item, self._description)
        return piece

    def close(self) -> None:
        pass


class _AsyncIterableSource(UploadSource):
    replayable = False
    description = "the async iterable"

    def __init__(self, iterable: AsyncIterable[Any], size: int) -> None:
        self._iterable = iterable
        self._size = size

    def open(self) -> BlockingReader:
        raise InstantTypeError("an async iterable can only be uploaded by AsyncInstant")

    async def open_async(self) -> AsyncReader:
        return _AsyncIterableReader(self._iterable.__aiter__(), self._size, self.description)


class _AsyncIterableReader:
    def __init__(self, iterator: AsyncIterator[Any], size: int, description: str) -> None:
        self._iterator = iterator
        self.size = size
        self._description = description
        self._pieces = _Pieces()

    async def read(self) -> bytes:
        while (piece := self._pieces.next_slice()) is None:
            try:
                item = await self._iterator.__anext__()
            except StopAsyncIteration:
                return b""
            self._pieces.load(item, self._description)
        return piece

    async def close(self) -> None:
        pass
