"""PUT /admin/storage/upload and the $files rows it makes (in-process)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from instantdb_local import files
from instantdb_local.app import create_app
from instantdb_local.engine import Actor
from instantdb_local.errors import ServerError
from instantdb_local.routes import configure
from tests.local.storage.conftest import files_of, leftovers, upload, url_path


def test_upload_stores_the_bytes_and_a_files_row(client, admin_headers, app_engine, instance):
    response = upload(
        client,
        admin_headers,
        "photos/cat.txt",
        b"meow",
        **{"content-type": "text/plain", "content-disposition": "attachment"},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {"id", "location-id", "size"}
    assert data["size"] == 4
    [row] = files_of(app_engine)
    assert row == {
        "id": data["id"],
        "path": "photos/cat.txt",
        "size": 4,
        "content-type": "text/plain",
        "content-disposition": "attachment",
        "location-id": data["location-id"],
        "key-version": 1,
        "url": f"{instance.served_uri()}/storage/files/{instance.default_app.id}/"
        f"{data['location-id']}",
    }
    assert app_engine.blobs.path_of(data["location-id"]).read_bytes() == b"meow"
    assert leftovers(app_engine) == [data["location-id"]]


def test_file_urls_point_at_the_address_served(client, admin_headers, app_engine, instance):
    instance.record_address("127.0.0.1", 4321)
    upload(client, admin_headers, "a.txt", b"a")
    assert files_of(app_engine)[0]["url"].startswith("http://127.0.0.1:4321/storage/files/")


@pytest.mark.parametrize(
    ("headers", "content_type", "disposition"),
    [
        ({}, "application/octet-stream", "inline"),
        ({"content-type": "null", "content-disposition": "undefined"}, None, None),
        ({"content-type": "  image/png "}, "image/png", "inline"),
    ],
)
def test_metadata_defaults(client, admin_headers, app_engine, headers, content_type, disposition):
    upload(client, admin_headers, "x.bin", b"x", **headers)
    [row] = files_of(app_engine)
    assert row["content-type"] == (content_type or files.DEFAULT_CONTENT_TYPE)
    assert row["content-disposition"] == (disposition or files.DEFAULT_CONTENT_DISPOSITION)


def test_uploading_to_a_path_again_replaces_the_file_in_place(client, admin_headers, app_engine):
    app_engine.apply_schema(
        {
            "links": {
                "noteAttachment": {
                    "forward": {"on": "notes", "label": "attachment", "has": "one"},
                    "reverse": {"on": "$files", "label": "notes", "has": "many"},
                }
            }
        }
    )
    first = upload(client, admin_headers, "doc.txt", b"version one", **{"content-type": "a/b"})
    app_engine.transact(
        [
            ["update", "notes", "00000000-0000-4000-8000-000000000001", {"text": "n"}],
            [
                "link",
                "notes",
                "00000000-0000-4000-8000-000000000001",
                {"attachment": first.json()["data"]["id"]},
            ],
        ],
        Actor.admin(),
    )
    second = upload(client, admin_headers, "doc.txt", b"v2").json()["data"]
    assert second["id"] == first.json()["data"]["id"]
    assert second["location-id"] != first.json()["data"]["location-id"]
    [row] = files_of(app_engine)
    assert (row["size"], row["content-type"]) == (2, "application/octet-stream")
    # The old bytes are gone; links to the file are kept.
    assert leftovers(app_engine) == [second["location-id"]]
    linked = app_engine.query({"notes": {"attachment": {}}}, Actor.admin())
    assert linked["notes"][0]["attachment"][0]["location-id"] == second["location-id"]


def test_an_empty_file(client, admin_headers, app_engine):
    assert upload(client, admin_headers, "empty", b"").json()["data"]["size"] == 0
    assert app_engine.blobs.path_of(files_of(app_engine)[0]["location-id"]).read_bytes() == b""


@pytest.mark.parametrize(
    ("path", "type_", "reason"),
    [
        (None, "param-missing", None),
        ("   ", "param-malformed", None),
        ("../secret", "param-malformed", "`..` segments"),
        ("a/../../b", "param-malformed", "`..` segments"),
        ("..\\..\\windows", "param-malformed", "`..` segments"),
        ("a\\..\\b", "param-malformed", "`..` segments"),
        ("/etc/passwd", "param-malformed", "must be relative"),
        ("\\\\server\\share", "param-malformed", "must be relative"),
        ("C:\\temp\\x", "param-malformed", "must be relative"),
        ("a\tb", "param-malformed", "control characters"),
    ],
)
def test_bad_paths_are_refused_before_anything_is_written(
    client, admin_headers, app_engine, path, type_, reason
):
    response = upload(client, admin_headers, path, b"data")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == type_
    assert body["hint"]["in"] == ["path"]
    if reason is not None:
        assert reason in body["message"]
    assert files_of(app_engine) == []
    assert leftovers(app_engine) == []


@pytest.mark.parametrize("raw", ["a\x00b", "a\nb", "x\x7f"])
def test_control_characters_are_refused(raw):
    with pytest.raises(ServerError, match="control characters"):
        files.upload_path(raw)


@pytest.mark.parametrize(
    "path", ["a/b/c.txt", "a..b", "...", "dir/.hidden", "x/./y", " padded.txt ", "a\\b"]
)
def test_ordinary_paths_are_accepted(path):
    assert files.upload_path(path) == path.strip()


def test_a_utf8_path_header_is_read_as_utf8(client, admin_headers, app_engine):
    name = "photos/café.png"
    headers = {**admin_headers, "path": name.encode("utf-8")}
    assert client.put("/admin/storage/upload", content=b"x", headers=headers).status_code == 200
    assert files_of(app_engine)[0]["path"] == name


@pytest.mark.parametrize(
    ("content", "declared", "message"),
    [
        (b"0123456789", "5", "longer than the 5 bytes"),
        (b"012", "5", "ended after 3 of the 5 bytes"),
    ],
)
def test_a_body_that_does_not_match_its_content_length_is_refused(
    client, admin_headers, app_engine, content, declared, message
):
    response = upload(client, admin_headers, "a.bin", content, **{"content-length": declared})
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert "nothing was stored" in response.json()["message"]
    assert files_of(app_engine) == []
    assert leftovers(app_engine) == []


def test_upload_limit(instance, admin_headers):
    app = create_app(instance)
    configure(app, max_upload_bytes=10)
    engine = instance.engine(instance.default_app.id)
    with TestClient(app) as client:
        declared = upload(client, admin_headers, "big", b"x" * 11)
        assert declared.status_code == 413
        assert "upload limit of 10 bytes" in declared.json()["message"]
        # Without a content-length the limit holds while the body arrives.
        chunked = upload(client, admin_headers, "big", iter([b"x" * 6, b"x" * 6]))
        assert chunked.status_code == 413
        assert files_of(engine) == []
        assert leftovers(engine) == []
        assert upload(client, admin_headers, "fits", b"x" * 10).status_code == 200


def test_the_json_body_limit_does_not_apply_to_uploads(instance, admin_headers):
    with TestClient(create_app(instance, max_body_bytes=64)) as client:
        response = upload(client, admin_headers, "a.bin", b"x" * 1000)
        assert response.status_code == 200
        assert response.json()["data"]["size"] == 1000


def test_upload_plumbing_errors(client, admin_headers, instance):
    no_app = upload(client, {}, "a", b"x")
    assert no_app.json()["type"] == "param-missing"
    no_token = upload(client, {"app-id": instance.default_app.id}, "a", b"x")
    assert no_token.json()["hint"]["in"] == ["headers", "authorization"]
    bad_length = upload(client, admin_headers, "a", b"x", **{"content-length": "x"})
    assert bad_length.status_code == 400


# -- permissions ------------------------------------------------------------------------------

RULES = {
    "$files": {
        "allow": {
            "view": "true",
            "create": "data.path.startsWith('public/') || auth.id != null",
            "delete": "auth.email == 'owner@example.com'",
        }
    }
}


def app_with_rules(instance, rules: dict[str, Any] | None) -> tuple[dict[str, str], Any]:
    record = instance.create_ephemeral_app("perms", rules=rules)
    headers = {"app-id": record.id, "authorization": f"Bearer {record.admin_token}"}
    return headers, instance.engine(record.id)


def test_without_rules_impersonated_uploads_are_denied(client, instance):
    headers, engine = app_with_rules(instance, None)
    guest = {"app-id": headers["app-id"], "as-guest": "true"}
    response = upload(client, guest, "public/a.txt", b"x")
    assert response.status_code == 400
    assert response.json() == {
        "type": "permission-denied",
        "message": "Permission denied: not has-storage-permission?",
        "hint": {"input": ["$files", "create"], "expected": "has-storage-permission?"},
    }
    assert files_of(engine) == []
    assert leftovers(engine) == []
    # Admin is never checked.
    assert upload(client, headers, "public/a.txt", b"x").status_code == 200


def test_the_create_rule_sees_the_path_and_the_user(client, instance):
    headers, engine = app_with_rules(instance, RULES)
    guest = {"app-id": headers["app-id"], "as-guest": "true"}
    assert upload(client, guest, "public/a.txt", b"x").status_code == 200
    assert upload(client, guest, "private/a.txt", b"x").json()["type"] == "permission-denied"
    token = client.post(
        "/admin/refresh_tokens", json={"email": "someone@example.com"}, headers=headers
    ).json()["user"]["refresh_token"]
    as_user = {"app-id": headers["app-id"], "as-token": token}
    assert upload(client, as_user, "private/a.txt", b"x").status_code == 200
    assert sorted(f["path"] for f in files_of(engine)) == ["private/a.txt", "public/a.txt"]


def test_legacy_deletes_check_the_delete_rule(client, instance):
    headers, engine = app_with_rules(instance, RULES)
    upload(client, headers, "public/a.txt", b"x")
    upload(client, headers, "public/b.txt", b"x")
    for email in ("owner@example.com", "other@example.com"):
        client.post("/admin/refresh_tokens", json={"email": email}, headers=headers)
    other = {**headers, "as-email": "other@example.com"}
    owner = {**headers, "as-email": "owner@example.com"}
    denied = client.delete(
        "/admin/storage/files", params={"filename": "public/a.txt"}, headers=other
    )
    assert denied.json()["hint"] == {
        "input": ["$files", "delete"],
        "expected": "has-storage-permission?",
    }
    many = client.post(
        "/admin/storage/files/delete",
        json={"filenames": ["public/a.txt", "public/b.txt"]},
        headers=other,
    )
    assert many.json()["type"] == "permission-denied"
    assert len(files_of(engine)) == 2
    allowed = client.delete(
        "/admin/storage/files", params={"filename": "public/a.txt"}, headers=owner
    )
    assert allowed.status_code == 200
    assert [f["path"] for f in files_of(engine)] == ["public/b.txt"]


# -- legacy list and delete --------------------------------------------------------------------


def test_list_files(client, admin_headers, instance, app_engine):
    data = upload(client, admin_headers, "a/b.txt", b"abc").json()["data"]
    listed = client.get("/admin/storage/files", headers=admin_headers)
    assert listed.json() == {
        "data": [
            {
                "key": f"{instance.default_app.id}/0/{data['location-id']}",
                "name": "a/b.txt",
                "size": 3,
                "etag": None,
                "last_modified": None,
            }
        ]
    }
    # Impersonated, the view rule applies (none: $files are hidden).
    guest = client.get("/admin/storage/files", headers={**admin_headers, "as-guest": "true"})
    assert guest.json() == {"data": []}
    # The admin token is needed even for impersonation.
    no_token = client.get(
        "/admin/storage/files",
        headers={"app-id": instance.default_app.id, "as-guest": "true"},
    )
    assert no_token.json()["type"] == "param-missing"


def test_delete_by_filename_removes_the_row_and_the_bytes(client, admin_headers, app_engine):
    data = upload(client, admin_headers, "gone.txt", b"bye").json()["data"]
    response = client.delete(
        "/admin/storage/files", params={"filename": "gone.txt"}, headers=admin_headers
    )
    assert response.json() == {"data": {"id": data["id"]}}
    assert files_of(app_engine) == []
    assert leftovers(app_engine) == []
    again = client.delete(
        "/admin/storage/files", params={"filename": "gone.txt"}, headers=admin_headers
    )
    assert again.json() == {"data": {"id": None}}
    missing = client.delete("/admin/storage/files", headers=admin_headers)
    assert missing.json()["hint"]["in"] == ["params", "filename"]


def test_delete_many(client, admin_headers, app_engine):
    a = upload(client, admin_headers, "a", b"a").json()["data"]
    b = upload(client, admin_headers, "b", b"b").json()["data"]
    upload(client, admin_headers, "c", b"c")
    response = client.post(
        "/admin/storage/files/delete",
        json={"filenames": ["a", "nope", "b", "a"]},
        headers=admin_headers,
    )
    assert response.json() == {"data": {"ids": [a["id"], b["id"], a["id"]]}}
    assert [f["path"] for f in files_of(app_engine)] == ["c"]
    assert len(leftovers(app_engine)) == 1
    for bad in ({"filenames": "a"}, {"filenames": [1]}):
        refused = client.post("/admin/storage/files/delete", json=bad, headers=admin_headers)
        assert refused.json()["type"] == "param-malformed"


# -- deleting through transact ---------------------------------------------------------------


def test_deleting_the_row_through_transact_removes_the_bytes(client, admin_headers, app_engine):
    data = upload(client, admin_headers, "t.txt", b"t").json()["data"]
    assert leftovers(app_engine) == [data["location-id"]]
    response = client.post(
        "/admin/transact",
        json={"steps": [["delete", "$files", ["path", "t.txt"]]]},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert leftovers(app_engine) == []
    assert client.get(url_path(data_url(app_engine, data))).status_code == 404


def data_url(engine, data: dict[str, Any]) -> str:
    return f"/storage/files/{engine.app_id}/{data['location-id']}"


def test_a_cascading_delete_removes_the_bytes_too(client, admin_headers, app_engine):
    app_engine.apply_schema(
        {
            "links": {
                "albumPhotos": {
                    "forward": {
                        "on": "$files",
                        "label": "album",
                        "has": "one",
                        "onDelete": "cascade",
                    },
                    "reverse": {"on": "albums", "label": "photos", "has": "many"},
                }
            }
        }
    )
    data = upload(client, admin_headers, "p.jpg", b"jpg").json()["data"]
    album = "00000000-0000-4000-8000-000000000002"
    app_engine.transact(
        [
            ["update", "albums", album, {"name": "trip"}],
            ["link", "$files", data["id"], {"album": album}],
        ],
        Actor.admin(),
    )
    app_engine.transact([["delete", "albums", album]], Actor.admin())
    assert files_of(app_engine) == []
    assert leftovers(app_engine) == []


def test_a_rolled_back_delete_keeps_the_bytes(client, admin_headers, app_engine):
    data = upload(client, admin_headers, "keep.txt", b"k").json()["data"]
    response = client.post(
        "/admin/transact_perms_check",
        json={"steps": [["delete", "$files", data["id"]]]},
        headers={**admin_headers, "as-guest": "true"},
    )
    assert response.json()["committed?"] is False
    assert leftovers(app_engine) == [data["location-id"]]


def test_a_full_disk_is_reported_and_nothing_is_kept(
    client, admin_headers, app_engine, monkeypatch
):
    import errno

    from instantdb_local.blobs import IncomingBlob

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(IncomingBlob, "write", no_space)
    response = upload(client, admin_headers, "big.bin", b"x" * (5 * 1024 * 1024))
    assert response.status_code == 500
    assert "No space left on device" in response.json()["message"]
    assert "nothing was stored" in response.json()["message"]
    assert files_of(app_engine) == []
    assert leftovers(app_engine) == []
