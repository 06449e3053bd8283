"""GET /storage/files/<app>/<location>: the bytes behind a $files url."""

from __future__ import annotations

import uuid

import pytest

from tests.local.storage.conftest import files_of, upload, url_path

CONTENT = bytes(range(256)) * 4  # 1024 bytes, every position distinct mod 256


@pytest.fixture
def stored(client, admin_headers, app_engine) -> str:
    """The url path of a 1 KiB file, as a query returns it."""
    upload(
        client,
        admin_headers,
        "docs/report.bin",
        CONTENT,
        **{"content-type": "application/x-report", "content-disposition": "attachment"},
    )
    return url_path(files_of(app_engine)[0]["url"])


def test_the_url_serves_the_bytes_without_credentials(client, stored, app_engine):
    response = client.get(stored)  # no app id, no token: the url is the key
    assert response.status_code == 200
    assert response.content == CONTENT
    assert response.headers["content-type"] == "application/x-report"
    assert response.headers["content-disposition"] == "attachment"
    assert response.headers["content-length"] == "1024"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    location_id = files_of(app_engine)[0]["location-id"]
    assert response.headers["etag"] == f'"{location_id}"'


def test_head(client, stored):
    response = client.head(stored)
    assert response.status_code == 200
    assert response.headers["content-length"] == "1024"
    assert response.content == b""


@pytest.mark.parametrize(
    ("range_", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=1020-5000", 1020, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=512-512", 512, 512),
    ],
)
def test_a_range(client, stored, range_, start, end):
    response = client.get(stored, headers={"range": range_})
    assert response.status_code == 206
    assert response.content == CONTENT[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/1024"
    assert response.headers["content-length"] == str(end - start + 1)


@pytest.mark.parametrize("range_", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_an_unsatisfiable_range_is_416(client, stored, range_):
    response = client.get(stored, headers={"range": range_})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */1024"


@pytest.mark.parametrize(
    "range_", ["bytes=0-1,5-6", "items=0-5", "bytes=9-2", "bytes=x-", "bytes=", "garbage"]
)
def test_ranges_this_server_does_not_serve_get_the_whole_file(client, stored, range_):
    response = client.get(stored, headers={"range": range_})
    assert response.status_code == 200
    assert response.content == CONTENT


def test_if_range(client, stored):
    etag = client.head(stored).headers["etag"]
    same = client.get(stored, headers={"range": "bytes=0-1", "if-range": etag})
    assert same.status_code == 206
    other = client.get(stored, headers={"range": "bytes=0-1", "if-range": '"other"'})
    assert other.status_code == 200
    assert other.content == CONTENT


def test_urls_that_name_no_file_are_404(client, stored, instance, admin_headers):
    app_id = instance.default_app.id
    for path in (
        f"/storage/files/{app_id}/{uuid.uuid4()}",
        f"/storage/files/{uuid.uuid4()}/{stored.rsplit('/', 1)[1]}",
        f"/storage/files/not-an-app/{uuid.uuid4()}",
        f"/storage/files/{app_id}/..%2F..%2Fapp.sqlite3",
        f"/storage/files/{app_id}/.incoming",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        # Either this route's answer or the router's "no such route".
        assert response.json().get("type") in ("record-not-found", None)
    # A replaced file's old url stops working.
    upload(client, admin_headers, "docs/report.bin", b"new")
    replaced = client.get(stored)
    assert replaced.status_code == 404
    assert "deleted or replaced" in replaced.json()["message"]
