"""``db.storage``: uploading files and downloading them again (wire protocol §9)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from instantdb._errors import InstantTypeError, InstantValueError
from instantdb._retry import RetrySafety
from instantdb._settings import Settings
from instantdb._upload import upload_source

from ._call import USER_AGENT, Call, Request, Response, standard_headers
from ._responses import json_object

__all__ = ["download_call", "download_to_call", "upload_call"]


def upload_call(
    settings: Settings,
    path: str,
    data: object,
    *,
    content_type: str | None,
    content_disposition: str | None,
    file_size: int | None,
    allow_async: bool,
) -> Call[dict[str, Any]]:
    """``PUT /admin/storage/upload``: ``{"data": {"id": <file id>, ...}}``.

    Runs with the client's identity: from an ``as_user`` client, the ``$files`` rules apply.
    """
    source = upload_source(data, file_size, allow_async=allow_async)
    headers = standard_headers(settings)
    del headers["content-type"]  # the body is the file, not JSON
    headers["path"] = _header_text(path, "path", required=True)
    if content_type is not None:
        headers["content-type"] = _header_text(content_type, "content_type")
    if content_disposition is not None:
        headers["content-disposition"] = _header_text(content_disposition, "content_disposition")
    request = Request(
        method="PUT",
        path="/admin/storage/upload",
        params=(("app_id", settings.app_id),),
        headers=headers,
        content=source,
        secrets=settings.secrets,
    )

    def parse(response: Response) -> dict[str, Any]:
        return json_object(response, request)

    # Sent again only if it provably never ran, and only if the source can be re-read.
    safety = RetrySafety.UNSENT_ONLY if source.replayable else RetrySafety.NEVER
    return Call(request, parse, safety)


def download_call(file: object) -> Call[bytes]:
    """``GET <the file's url>``: the whole content, in memory."""
    request = _download_request(file, None)

    def parse(response: Response) -> bytes:
        return response.content

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def download_to_call(file: object, to: str | os.PathLike[str]) -> Call[Path]:
    """``GET <the file's url>``, streamed into the file ``to``; returns its path."""
    if not isinstance(to, (str, os.PathLike)):
        raise InstantTypeError(f"download(to=...) takes a file path, got {type(to).__name__}")
    target = Path(to)
    request = _download_request(file, target)

    def parse(response: Response) -> Path:
        return target

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def _download_request(file: object, target: Path | None) -> Request:
    url = _file_url(file)
    # A storage URL is pre-signed: it needs (and must get) no credentials.
    return Request(
        method="GET",
        path="",
        headers={"user-agent": USER_AGENT},
        url=url,
        save_to=target,
        secrets=(url,),
    )


def _file_url(file: object) -> str:
    if isinstance(file, Mapping):
        url = file.get("url")
        if not isinstance(url, str) or not url:
            raise InstantValueError(
                "download() got a $files record without a 'url'; query it with "
                '{"$files": {}} to get its url'
            )
    elif isinstance(file, str):
        url = file
    else:
        raise InstantTypeError(
            "download() takes a $files record (a dict with 'url') or its url, got "
            f"{type(file).__name__}"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InstantValueError("download() needs an http(s) url, such as a $files record's 'url'")
    return url


def _header_text(value: object, name: str, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise InstantTypeError(f"upload_file(): {name} must be a str, got {type(value).__name__}")
    if required and not value.strip():
        raise InstantValueError(f"upload_file(): {name} must not be blank")
    if not value.isascii() or not value.isprintable():
        raise InstantValueError(
            f"upload_file(): {name} is sent as an HTTP header, so it must be printable ASCII; "
            f"got {value!r}"
        )
    return value
