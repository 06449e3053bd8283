"""``db.storage`` for both clients."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

from ._protocol import storage
from ._settings import Settings
from ._transport import AsyncTransport, SyncTransport

__all__ = ["AsyncStorage", "Storage"]

PathLike = str | os.PathLike[str]


class Storage:
    """File storage (blocking). Delete or list files through the ``$files`` namespace."""

    def __init__(self, settings: Settings, transport: SyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    def upload_file(
        self,
        path: str,
        data: Any,
        *,
        content_type: str | None = None,
        content_disposition: str | None = None,
        file_size: int | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` at ``path`` (replacing any file there); ``{"data": {"id": ...}}``.

        ``data``: bytes, bytearray, memoryview, a ``pathlib.Path`` (opened and closed
        here), a binary file object (read from its current position, left open), or an
        iterable of bytes. Streams that cannot seek, and iterables, need ``file_size``.
        Streamed in 64 KiB pieces; a source shorter or longer than announced aborts the
        upload with an error.
        """
        call = storage.upload_call(
            self._settings,
            path,
            data,
            content_type=content_type,
            content_disposition=content_disposition,
            file_size=file_size,
            allow_async=False,
        )
        return self._transport.run(call)

    @overload
    def download(self, file: Any) -> bytes: ...
    @overload
    def download(self, file: Any, *, to: PathLike) -> Path: ...
    def download(self, file: Any, *, to: PathLike | None = None) -> bytes | Path:
        """The content of a ``$files`` record (or of its ``url``).

        With ``to=``, it is streamed into that file (complete or not at all) and its path is
        returned. The request carries no credentials: file urls are pre-signed.
        """
        if to is None:
            return self._transport.run(storage.download_call(file))
        return self._transport.run(storage.download_to_call(file, to))


class AsyncStorage:
    """File storage (asyncio): the methods of `Storage`, awaited."""

    def __init__(self, settings: Settings, transport: AsyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    async def upload_file(
        self,
        path: str,
        data: Any,
        *,
        content_type: str | None = None,
        content_disposition: str | None = None,
        file_size: int | None = None,
    ) -> dict[str, Any]:
        """Store ``data`` at ``path`` (replacing any file there); ``{"data": {"id": ...}}``.

        ``data`` as for `Storage.upload_file`, plus async iterables of bytes (with
        ``file_size``). Files are read in a worker thread.
        """
        call = storage.upload_call(
            self._settings,
            path,
            data,
            content_type=content_type,
            content_disposition=content_disposition,
            file_size=file_size,
            allow_async=True,
        )
        return await self._transport.run(call)

    @overload
    async def download(self, file: Any) -> bytes: ...
    @overload
    async def download(self, file: Any, *, to: PathLike) -> Path: ...
    async def download(self, file: Any, *, to: PathLike | None = None) -> bytes | Path:
        """The content of a ``$files`` record (or of its ``url``); see `Storage.download`."""
        if to is None:
            return await self._transport.run(storage.download_call(file))
        return await self._transport.run(storage.download_to_call(file, to))
