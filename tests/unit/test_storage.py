"""db.storage through both clients: what an upload sends, when it is retried, downloads."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from instantdb import (
    InstantAPIError,
    InstantConnectionError,
    InstantError,
    InstantTypeError,
    InstantValueError,
    RetryPolicy,
)
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, REFRESH_TOKEN, ClientHarness
from tests.unit.test_requests import BASE, our_headers, standard
from tests.unit.test_upload import DATA, NonSeekable

STORED = {"data": {"id": "f0000000-0000-4000-8000-000000000001"}}
NO_WAIT = RetryPolicy(initial_backoff=0, max_backoff=0)


def upload_headers(**extra: str) -> dict[str, str]:
    headers = standard()
    del headers["content-type"]  # the body is the file; its own type only when given
    headers.update(extra)
    return headers


def upload(harness: ClientHarness, db: Any, path: str, data: Any, **kwargs: Any) -> Any:
    return harness.call(db.storage, "upload_file", path, data, **kwargs)


def test_upload_bytes(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json=STORED))
    db = harness.make()
    assert (
        upload(harness, db, "photos/hello.txt", b"hello world", content_type="text/plain") == STORED
    )
    request = harness.api.last
    assert request.method == "PUT"
    assert str(request.url) == f"{BASE}/admin/storage/upload?app_id={APP_ID}"
    assert request.content == b"hello world"
    assert request.headers["content-length"] == "11"
    assert "transfer-encoding" not in request.headers
    assert our_headers(request) == upload_headers(
        **{"path": "photos/hello.txt", "content-type": "text/plain"}
    )


def test_upload_without_content_type_sends_none(harness: ClientHarness) -> None:
    db = harness.make()
    upload(
        harness, db, "a.bin", bytearray(b"xy"), content_disposition='attachment; filename="a.bin"'
    )
    assert our_headers(harness.api.last) == upload_headers(
        **{"path": "a.bin", "content-disposition": 'attachment; filename="a.bin"'}
    )


def test_uploads_run_as_the_clients_user(harness: ClientHarness) -> None:
    db = harness.make(admin_token="").as_user(token=REFRESH_TOKEN)
    upload(harness, db, "a.bin", b"x")
    headers = our_headers(harness.api.last)
    assert headers["as-token"] == REFRESH_TOKEN
    assert "authorization" not in headers


def test_upload_a_path(harness: ClientHarness, tmp_path: Path) -> None:
    target = tmp_path / "demo.png"
    target.write_bytes(DATA)
    upload(harness, harness.make(), "photos/demo.png", target, content_type="image/png")
    request = harness.api.last
    assert request.headers["content-length"] == str(len(DATA))
    assert hashlib.sha256(request.content).digest() == hashlib.sha256(DATA).digest()


def test_upload_an_open_file_from_its_position(harness: ClientHarness) -> None:
    file = io.BytesIO(DATA)
    file.read(8)
    upload(harness, harness.make(), "photos/demo.png", file)
    assert harness.api.last.content == DATA[8:]
    assert harness.api.last.headers["content-length"] == str(len(DATA) - 8)
    assert not file.closed


def test_upload_a_stream_with_file_size(harness: ClientHarness) -> None:
    upload(harness, harness.make(), "exports/data.jsonl", NonSeekable(DATA), file_size=len(DATA))
    assert harness.api.last.content == DATA


def test_upload_an_iterable(harness: ClientHarness) -> None:
    upload(
        harness,
        harness.make(),
        "x.bin",
        (DATA[i : i + 1000] for i in range(0, len(DATA), 1000)),
        file_size=len(DATA),
    )
    assert harness.api.last.content == DATA


def test_the_async_client_takes_async_iterables(harness: ClientHarness) -> None:
    async def parts() -> Any:
        yield DATA[:100]
        yield DATA[100:]

    db = harness.make()
    if harness.kind == "sync":
        with pytest.raises(InstantTypeError, match="AsyncInstant"):
            upload(harness, db, "x.bin", parts(), file_size=len(DATA))
        assert harness.api.requests == []
    else:
        upload(harness, db, "x.bin", parts(), file_size=len(DATA))
        assert harness.api.last.content == DATA


def test_a_source_of_the_wrong_length_never_reaches_the_server(harness: ClientHarness) -> None:
    db = harness.make()
    with pytest.raises(InstantValueError, match="has more than the 10 bytes"):
        upload(harness, db, "x.bin", NonSeekable(DATA), file_size=10)
    with pytest.raises(InstantValueError, match="ended after"):
        upload(harness, db, "x.bin", [b"abc"], file_size=10)
    assert harness.api.requests == []  # the mock server only sees complete bodies


@pytest.mark.parametrize(
    ("path", "kwargs", "error", "message"),
    [
        ("", {}, InstantValueError, "path must not be blank"),
        ("photos/café.png", {}, InstantValueError, "printable ASCII"),
        ("a\nb", {}, InstantValueError, "printable ASCII"),
        (5, {}, InstantTypeError, "path must be a str"),
        ("a", {"content_type": 3}, InstantTypeError, "content_type must be a str"),
        ("a", {"file_size": -2}, InstantTypeError, "non-negative int"),
    ],
)
def test_bad_upload_arguments_fail_before_any_request(
    harness: ClientHarness, path: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        upload(harness, harness.make(), path, b"x", **kwargs)
    assert harness.api.requests == []


def test_re_readable_uploads_are_retried_when_never_sent(
    harness: ClientHarness, tmp_path: Path
) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(DATA)
    file = io.BytesIO(DATA)
    file.read(5)
    db = harness.make(retry=NO_WAIT)
    for data, expected in ((b"abc", b"abc"), (target, DATA), (file, DATA[5:])):
        harness.api.queue(
            httpx.ConnectError("refused"), httpx.Response(429, json={"type": "rate-limited"})
        )
        upload(harness, db, "f.bin", data)
        assert harness.api.last.content == expected
    assert len(harness.api.requests) == 9


def test_uploads_that_may_have_been_stored_are_not_retried(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(503, text="busy"))
    with pytest.raises(InstantAPIError):
        upload(harness, harness.make(retry=NO_WAIT), "f.bin", b"abc")
    assert len(harness.api.requests) == 1


def test_streams_that_cannot_be_read_again_are_never_retried(harness: ClientHarness) -> None:
    harness.api.queue(httpx.ConnectError("refused"))
    with pytest.raises(InstantConnectionError):
        upload(
            harness, harness.make(retry=NO_WAIT), "f.bin", NonSeekable(DATA), file_size=len(DATA)
        )
    assert len(harness.api.requests) == 1


def test_the_async_client_reads_files_in_a_worker_thread(harness: ClientHarness) -> None:
    readers: set[int] = set()

    class Recording(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            readers.add(threading.get_ident())
            return super().read(size)

    upload(harness, harness.make(), "f.bin", Recording(DATA))
    assert harness.api.last.content == DATA
    on_main_thread = readers == {threading.get_ident()}
    assert on_main_thread is (harness.kind == "sync")


# --- downloads -------------------------------------------------------------------------

FILE_URL = "https://storage.example.test/app/f.png?X-Amz-Signature=abc123"


def test_download_to_memory_sends_no_credentials(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, content=DATA))
    db = harness.make().as_user(email="a@b.c")
    assert harness.call(db.storage, "download", {"path": "f.png", "url": FILE_URL}) == DATA
    request = harness.api.last
    assert str(request.url) == FILE_URL
    assert request.method == "GET"
    assert set(request.headers) == {
        "host",
        "accept",
        "accept-encoding",
        "connection",
        "user-agent",
    }
    assert ADMIN_TOKEN not in str(request.headers)


def test_download_to_a_file(harness: ClientHarness, tmp_path: Path) -> None:
    harness.api.queue(httpx.Response(200, content=DATA))
    target = tmp_path / "out.png"
    assert harness.call(harness.make().storage, "download", FILE_URL, to=target) == target
    assert target.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_failed_download_leaves_no_file(harness: ClientHarness, tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    harness.api.queue(httpx.Response(403, text="<Error>AccessDenied</Error>"))
    with pytest.raises(InstantAPIError, match="AccessDenied") as caught:
        harness.call(harness.make(retry=False).storage, "download", FILE_URL, to=target)
    assert caught.value.status == 403
    assert list(tmp_path.iterdir()) == []


def test_a_download_cut_off_midway_leaves_no_file(harness: ClientHarness, tmp_path: Path) -> None:
    class Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Any:
            yield DATA[:10]
            raise httpx.ReadError("connection reset")

        async def __aiter__(self) -> Any:
            yield DATA[:10]
            raise httpx.ReadError("connection reset")

    harness.api.queue(httpx.Response(200, stream=Broken()))
    target = tmp_path / "out.png"
    with pytest.raises(InstantConnectionError, match=r"^GET <file url>: .*the file's storage URL"):
        harness.call(harness.make(retry=False).storage, "download", FILE_URL, to=target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("file", "error", "message"),
    [
        ({"path": "f.png"}, InstantValueError, "without a 'url'"),
        ("ftp://x/y", InstantValueError, "http"),
        (3, InstantTypeError, "takes a \\$files record"),
    ],
)
def test_download_checks_its_argument(
    harness: ClientHarness, file: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        harness.call(harness.make().storage, "download", file)
    assert harness.api.requests == []


def test_download_into_a_missing_directory_is_a_clear_error(
    harness: ClientHarness, tmp_path: Path
) -> None:
    harness.api.queue(httpx.Response(200, content=b"x"))
    with pytest.raises(InstantError, match="could not write the download"):
        harness.call(harness.make().storage, "download", FILE_URL, to=tmp_path / "no" / "f")


def test_signed_urls_stay_out_of_messages(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(404, text=f"no such key for {FILE_URL}"))
    with pytest.raises(InstantAPIError) as caught:
        harness.call(harness.make(retry=False).storage, "download", FILE_URL)
    assert "abc123" not in str(caught.value)
