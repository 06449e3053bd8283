"""``$files`` rows for stored blobs: recording an upload, deleting and finding files.

An upload is upserted by ``path`` (server-semantics section 9): uploading to a path that
has a file keeps that file's id (and so its links) and points it at the new blob; the
old blob is removed once the new row is committed. Deleting a row, here or through
``transact``, removes its blob (see `AppEngine.blobs`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from . import entities, errors
from .blobs import IncomingBlob, new_location_id
from .engine import Actor, AppEngine
from .errors import ServerError
from .ids import new_id

__all__ = [
    "DEFAULT_CONTENT_DISPOSITION",
    "DEFAULT_CONTENT_TYPE",
    "delete_paths",
    "find_by_location",
    "record_upload",
    "upload_path",
]

# What the real server stores when the upload names none (it does not sniff by default).
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_CONTENT_DISPOSITION = "inline"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")


def upload_path(raw: str | None) -> str:
    """The ``path`` header of an upload, trimmed and checked (no I/O).

    The bytes are stored under a location id, never under this path, but a path that
    reads like an escape from the storage root is refused anyway: whatever later copies
    files out by path (a sync script, a backup) must not be led outside its directory.
    """
    if raw is None:
        raise errors.param_missing(["path"])
    path = raw.strip()
    if not path:
        raise errors.param_malformed(["path"], raw)
    if _CONTROL.search(path):
        raise _bad_path(raw, "a storage path may not contain NUL or other control characters")
    if path[0] in "/\\" or _DRIVE.match(path):
        raise _bad_path(
            raw,
            "a storage path must be relative, like `photos/cat.png`; it may not start "
            "with `/`, `\\` or a drive letter",
        )
    if ".." in _SEPARATORS.split(path):
        raise _bad_path(raw, "a storage path may not contain `..` segments")
    return path


def _bad_path(raw: str, reason: str) -> ServerError:
    error = errors.param_malformed(["path"], raw)
    return ServerError(error.type, f"{error.message}: {reason}.", error.hint)


def record_upload(
    engine: AppEngine,
    blob: IncomingBlob,
    *,
    path: str,
    content_type: str | None,
    content_disposition: str | None,
) -> dict[str, Any]:
    """Store a received blob as the file at ``path``: ``{"id", "location-id", "size"}``.

    The blob is moved into place inside the database transaction that records it, so
    a failed write removes it again and a committed row always has its bytes.
    """
    blob.finish()  # fsync outside the app's write lock
    location_id = new_location_id()
    old_location: Any = None
    try:
        with engine.trusted_write() as write:
            path_attr = write.catalog.forward("$files", "path")
            location_attr = write.catalog.forward("$files", "location-id")
            assert path_attr is not None
            assert location_attr is not None
            file_id = entities.lookup(write.conn, path_attr, path)
            if file_id is None:
                file_id = new_id()
            else:
                _, old_location = entities.get_value(write.conn, location_attr, file_id)
            blob.store_as(location_id)
            write.transact(
                [
                    [
                        "update",
                        "$files",
                        file_id,
                        {
                            "path": path,
                            "size": blob.size,
                            "content-type": content_type or DEFAULT_CONTENT_TYPE,
                            "content-disposition": content_disposition
                            or DEFAULT_CONTENT_DISPOSITION,
                            "location-id": location_id,
                            "key-version": 1,
                        },
                    ]
                ]
            )
    except BaseException:
        engine.blobs.delete(location_id)
        raise
    if isinstance(old_location, str) and old_location != location_id:
        engine.blobs.delete(old_location)
    return {"id": file_id, "location-id": location_id, "size": blob.size}


def delete_paths(engine: AppEngine, paths: Sequence[str]) -> list[str | None]:
    """Delete the files at ``paths`` in one transaction; their ids (None where no file
    was), in the order given. Their blobs go once the delete is committed."""
    with engine.trusted_write() as write:
        path_attr = write.catalog.forward("$files", "path")
        assert path_attr is not None
        ids = [entities.lookup(write.conn, path_attr, path) for path in paths]
        found = [file_id for file_id in dict.fromkeys(ids) if file_id is not None]
        if found:
            write.transact([["delete", "$files", file_id] for file_id in found])
    return ids


def find_by_location(engine: AppEngine, location_id: str) -> dict[str, Any] | None:
    """The ``$files`` row whose blob is ``location_id``, or None."""
    rows = engine.query({"$files": {"$": {"where": {"location-id": location_id}}}}, Actor.admin())[
        "$files"
    ]
    return rows[0] if rows else None
