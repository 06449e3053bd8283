"""The storage routes: uploads, the file URLs, and the legacy list and delete routes
(server-semantics sections 1 and 9).

``PUT /admin/storage/upload`` is a plain Starlette route rather than a `json_route`:
its body is the file, read from the ASGI stream piece by piece into a temporary file
(`blobs.IncomingBlob`), never held whole in memory, and it is not subject to the JSON
body limit but to its own (`max_upload_bytes`). Everything that can be refused without
reading the body (the app id, the credentials, the ``path``, the announced size, the
``$files`` create rule) is refused first.

``GET /storage/files/<app-id>/<location-id>`` serves a blob to anyone who has its URL,
like the real server's pre-signed S3 URLs: the unguessable location id is the key.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from instantdb_local import errors, files
from instantdb_local.blobs import FILES_ROUTE_PREFIX, IncomingBlob, is_location_id
from instantdb_local.engine import Actor, AppEngine
from instantdb_local.errors import ServerError

from ._plumbing import (
    Call,
    error_response,
    instance_of,
    is_uuid,
    json_route,
    logger,
    unexpected_error_response,
)

# One PUT to S3, which backs the real server's storage, takes at most 5 GiB.
DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024**3

# Received pieces are gathered up to this size before a worker thread writes them.
_WRITE_BYTES = 4 * 1024 * 1024
# Pieces of a blob sent per worker-thread read.
_READ_BYTES = 1024 * 1024
# A refused upload's body is read and dropped up to this size before answering, so the
# client, still sending, gets the answer instead of a reset connection. Larger bodies
# are answered at once and the connection closed.
_DRAIN_BYTES = 8 * 1024 * 1024


def max_upload_bytes(state: State) -> int:
    """``app.state.max_upload_bytes`` if `routes.configure` set it, else the default."""
    limit = getattr(state, "max_upload_bytes", None)
    return limit if isinstance(limit, int) else DEFAULT_MAX_UPLOAD_BYTES


# -- upload ----------------------------------------------------------------------------------


async def upload(request: Request) -> Response:
    call = Call(request=request, instance=instance_of(request), body=None)
    declared: int | None = None
    body_read = False
    try:
        call.app_id()  # a missing or malformed app id is the first thing reported
        path = files.upload_path(_header(request, "path"))
        declared = _declared_length(request)
        limit = max_upload_bytes(request.app.state)
        if declared is not None and declared > limit:
            raise _too_large(limit, declared)
        engine = await run_in_threadpool(_authorize, call, path)
        content_type = _optional_header(request, "content-type")
        disposition = _optional_header(request, "content-disposition")
        blob = await run_in_threadpool(engine.blobs.new_upload)
        with blob:  # removed again unless recorded
            body_read = True
            await _receive(request, blob, declared, limit)
            stored = await run_in_threadpool(
                lambda: files.record_upload(
                    engine,
                    blob,
                    path=path,
                    content_type=content_type,
                    content_disposition=disposition,
                )
            )
        return JSONResponse({"data": stored})
    except ServerError as error:
        if not body_read:
            await _drain(request, declared)
        return error_response(error)
    except ClientDisconnect:
        # The client went away mid-body: nothing was stored, and nobody hears an answer.
        return Response(status_code=400)
    except OSError as exc:
        # A full disk or a data directory that cannot be written: the operator's to fix.
        logger.error("Storing an upload failed: %s", exc)
        return error_response(_not_stored(exc))
    except Exception as exc:
        return unexpected_error_response(request, exc)


def _not_stored(exc: OSError) -> ServerError:
    reason = exc.strerror or type(exc).__name__
    return ServerError(
        "unknown",
        f"The local server could not write the upload to its data directory ({reason}); "
        "nothing was stored. Check the free space and permissions of the data directory.",
        {"debug-uri": None},
        status=500,
    )


def _authorize(call: Call, path: str) -> AppEngine:
    """The app's engine, once the caller may create a file at ``path``."""
    app_id, actor = call.actor()
    engine = call.engine(app_id)
    if not engine.storage_allowed(actor, "create", path):
        raise _storage_denied("create")
    return engine


async def _receive(request: Request, blob: IncomingBlob, declared: int | None, limit: int) -> None:
    writer = _Writer(blob)
    batch: list[bytes] = []
    batched = 0
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if declared is not None and received > declared:
                raise _length_mismatch(declared, received)
            if received > limit:
                raise _too_large(limit, received)
            batch.append(piece)
            batched += len(piece)
            if batched >= _WRITE_BYTES:
                await writer.write(batch)
                batch, batched = [], 0
        if declared is not None and received != declared:
            raise _length_mismatch(declared, received)
        if batch:
            await writer.write(batch)
        await writer.wait()
    finally:
        await writer.settle()


class _Writer:
    """Writes batches of received pieces on a worker thread while the next batch
    arrives. One write is in flight at a time, so at most two batches are held; the
    overlap keeps the event loop reading the socket while the disk takes the data."""

    def __init__(self, blob: IncomingBlob) -> None:
        self._blob = blob
        self._loop = asyncio.get_running_loop()
        self._in_flight: asyncio.Future[None] | None = None

    async def write(self, batch: list[bytes]) -> None:
        await self.wait()
        self._in_flight = self._loop.run_in_executor(None, self._blob.write, b"".join(batch))

    async def wait(self) -> None:
        """Wait for the write in flight; its failure (a full disk) is raised here."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def settle(self) -> None:
        """After a failure: let the write in flight end before the file is removed."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await asyncio.wait([in_flight])
            if not in_flight.cancelled():
                in_flight.exception()  # retrieved: it is moot once the upload failed


async def _drain(request: Request, declared: int | None) -> None:
    if declared is not None and declared > _DRAIN_BYTES:
        return
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > _DRAIN_BYTES:
                return
    except (ClientDisconnect, RuntimeError):  # gone, or already read
        return


def _header(request: Request, name: str) -> str | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    # Header bytes arrive decoded as latin-1; a client that sent UTF-8 meant UTF-8.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def _optional_header(request: Request, name: str) -> str | None:
    value = _header(request, name)
    if value is None:
        return None
    value = value.strip()
    # JS clients send these strings for an unset value; the real server ignores them.
    return None if value in ("", "null", "undefined") else value


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise errors.param_malformed(["headers", "content-length"], raw)
    return int(raw)


def _too_large(limit: int, size: int) -> ServerError:
    return ServerError(
        "validation-failed",
        f"The upload ({size} bytes or more) is larger than the local server's upload "
        f"limit of {limit} bytes; nothing was stored.",
        {"data-type": "body", "limit": limit},
        status=413,
    )


def _length_mismatch(declared: int, received: int) -> ServerError:
    if received > declared:
        problem = f"the body is longer than the {declared} bytes its content-length announced"
    else:
        problem = (
            f"the body ended after {received} of the {declared} bytes its content-length announced"
        )
    return errors.validation_failed("body", None, [{"message": f"{problem}; nothing was stored"}])


def _storage_denied(action: str) -> ServerError:
    return errors.permission_denied(["$files", action], expected="has-storage-permission?")


# -- downloads -------------------------------------------------------------------------------


class _ByteRange:
    """An inclusive ``start``-``end`` range of a blob of ``size`` bytes."""

    def __init__(self, start: int, end: int, size: int) -> None:
        self.start, self.end, self.size = start, end, size

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class _Unsatisfiable(Exception):
    pass


def _byte_range(header: str | None, size: int) -> _ByteRange | None:
    """The one range a ``Range`` header asks for; None to send everything (no header,
    a form this server does not serve, like several ranges)."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first.isdigit():  # "-N": the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _Unsatisfiable
        return _ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    if last and not last.isdigit():
        return None
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # malformed: ignored, per RFC 9110
    if start >= size:
        raise _Unsatisfiable
    return _ByteRange(start, end, size)


async def download(request: Request) -> Response:
    app_id = request.path_params["app_id"]
    location_id = request.path_params["location_id"]
    try:
        opened = await run_in_threadpool(_open_blob, request, app_id, location_id)
    except ServerError as error:
        return error_response(error)
    except Exception as exc:
        return unexpected_error_response(request, exc)
    blob, record, size = opened
    etag = f'"{location_id}"'
    headers = {
        "content-type": str(record.get("content-type") or files.DEFAULT_CONTENT_TYPE),
        "content-disposition": str(
            record.get("content-disposition") or files.DEFAULT_CONTENT_DISPOSITION
        ),
        "accept-ranges": "bytes",
        # A blob never changes under its location id: the id is a perfect validator.
        "etag": etag,
        # Served from the API's own origin: never let a browser run or sniff it.
        "x-content-type-options": "nosniff",
        "content-security-policy": "sandbox",
    }
    if_range = request.headers.get("if-range")
    try:
        wanted = _byte_range(
            request.headers.get("range") if if_range in (None, etag) else None, size
        )
    except _Unsatisfiable:
        blob.close()
        headers["content-range"] = f"bytes */{size}"
        return Response(status_code=416, headers=headers)
    status = 200
    start, length = 0, size
    if wanted is not None:
        status = 206
        start, length = wanted.start, wanted.length
        headers["content-range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    headers["content-length"] = str(length)
    if request.method == "HEAD":
        blob.close()
        return Response(status_code=status, headers=headers)
    return StreamingResponse(_blob_pieces(blob, start, length), status_code=status, headers=headers)


def _open_blob(
    request: Request, app_id: str, location_id: str
) -> tuple[BinaryIO, dict[str, Any], int]:
    instance = instance_of(request)
    if not (is_uuid(app_id) and is_location_id(location_id)) or instance.find_app(app_id) is None:
        raise _no_such_file()
    engine = instance.engine(app_id)
    record = files.find_by_location(engine, location_id)
    blob = engine.blobs.open(location_id) if record is not None else None
    if record is None or blob is None:
        raise _no_such_file()
    try:
        size = os.fstat(blob.fileno()).st_size
    except BaseException:
        blob.close()
        raise
    return blob, record, size


async def _blob_pieces(blob: BinaryIO, start: int, length: int) -> Any:
    try:
        if start:
            await run_in_threadpool(blob.seek, start)
        remaining = length
        while remaining > 0:
            piece = await run_in_threadpool(blob.read, min(_READ_BYTES, remaining))
            if not piece:
                break
            remaining -= len(piece)
            yield piece
    finally:
        blob.close()


def _no_such_file() -> ServerError:
    return ServerError(
        "record-not-found",
        "No file is stored at this url: it was deleted or replaced. Query $files for its "
        "current url.",
        {"record-type": "$files"},
        status=404,
    )


# -- legacy list and delete ------------------------------------------------------------------


def list_files(call: Call) -> Any:
    # The admin token is checked first, then impersonation applies (view rules filter).
    call.admin_app_id()
    app_id, actor = call.actor()
    rows = call.engine(app_id).query({"$files": {}}, actor)["$files"]
    return {
        "data": [
            {
                "key": f"{app_id}/0/{row.get('location-id')}",
                "name": row.get("path"),
                "size": row.get("size"),
                "etag": None,
                "last_modified": None,
            }
            for row in rows
        ]
    }


def delete_file(call: Call) -> Any:
    app_id, actor = call.actor()
    filename = call.query_param("filename")
    if filename is None:
        raise errors.param_missing(["params", "filename"])
    ids = _delete(call, app_id, actor, [filename])
    return {"data": {"id": ids[0]}}


def delete_files(call: Call) -> Any:
    app_id, actor = call.actor()
    filenames = call.body_param("filenames")
    if not isinstance(filenames, list) or not all(isinstance(f, str) for f in filenames):
        raise errors.param_malformed(["body", "filenames"], filenames)
    ids = _delete(call, app_id, actor, filenames)
    return {"data": {"ids": [file_id for file_id in ids if file_id is not None]}}


def _delete(call: Call, app_id: str, actor: Actor, paths: list[str]) -> list[str | None]:
    engine = call.engine(app_id)
    # Every path is checked before anything is deleted: all or nothing.
    for path in paths:
        if not engine.storage_allowed(actor, "delete", path):
            raise _storage_denied("delete")
    return files.delete_paths(engine, paths)


ROUTES: list[BaseRoute] = [
    Route("/admin/storage/upload", upload, methods=["PUT"]),
    json_route("/admin/storage/files", list_files, methods=["GET"], reads_body=False),
    json_route("/admin/storage/files", delete_file, methods=["DELETE"], reads_body=False),
    json_route("/admin/storage/files/delete", delete_files, methods=["POST"]),
    Route(FILES_ROUTE_PREFIX + "/{app_id}/{location_id}", download, methods=["GET", "HEAD"]),
]
