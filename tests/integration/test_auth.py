"""Every `db.auth` method against the local server over HTTP, with both clients."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from instantdb import InstantAPIError, InstantValidationError
from instantdb_local.instance import AppCredentials
from tests.integration.sync_or_async import CLIENT_KINDS, open_client

USERS_SCHEMA = {"attrs": {"$users": {"nickname": {"type": "string"}}}}


@pytest.fixture(params=CLIENT_KINDS)
def db(request: pytest.FixtureRequest, instant_app: AppCredentials) -> Iterator[Any]:
    yield from open_client(request.param, instant_app)


def test_magic_code_round_trip(db) -> None:
    code = db.auth.send_magic_code("Alyssa@Example.com")
    assert re.fullmatch(r"[0-8]{6}", code)
    user, created = db.auth.check_magic_code(email="alyssa@example.com", code=code)
    assert created is True
    assert user["email"] == "alyssa@example.com"
    assert user["type"] == "user"
    assert user["isGuest"] is False
    assert uuid.UUID(user["refresh_token"])
    assert db.auth.verify_token(user["refresh_token"])["id"] == user["id"]
    # A code works once.
    with pytest.raises(InstantAPIError) as reused:
        db.auth.check_magic_code(email="alyssa@example.com", code=code)
    assert reused.value.status == 400
    assert reused.value.type == "record-not-found"
    assert str(reused.value) == "Record not found: app-user-magic-code"
    # A generated code signs the same user in again.
    again = db.auth.generate_magic_code("alyssa@example.com")
    same, created_again = db.auth.check_magic_code(email="alyssa@example.com", code=again)
    assert created_again is False
    assert same["id"] == user["id"]


@pytest.mark.instant_app(schema=USERS_SCHEMA)
def test_extra_fields_on_sign_up(db) -> None:
    code = db.auth.generate_magic_code("ben@example.com")
    with pytest.raises(InstantValidationError) as refused:
        db.auth.check_magic_code(email="ben@example.com", code=code, extra_fields={"age": 3})
    assert "Unknown field: age" in str(refused.value)
    user, _ = db.auth.check_magic_code(
        email="ben@example.com", code=code, extra_fields={"nickname": "benny"}
    )
    assert user["nickname"] == "benny"
    token = db.auth.create_token(email="cy@example.com", extra_fields={"nickname": "cy"})
    assert db.auth.verify_token(token)["nickname"] == "cy"


def test_token_lifecycle(db) -> None:
    token = db.auth.create_token(email="dee@example.com")
    user = db.auth.verify_token(token)
    assert user["email"] == "dee@example.com"
    assert user["refresh_token"] == token
    second = db.auth.create_token(email="dee@example.com")
    assert second != token
    db.auth.sign_out(refresh_token=token)
    with pytest.raises(InstantAPIError) as revoked:
        db.auth.verify_token(token)
    assert revoked.value.type == "record-not-found"
    assert token not in str(revoked.value)
    # Only that token was revoked.
    assert db.auth.verify_token(second)["id"] == user["id"]
    db.auth.sign_out(email="dee@example.com")
    with pytest.raises(InstantAPIError):
        db.auth.verify_token(second)


def test_sign_out_by_id_and_unknown_users(db) -> None:
    user_id = str(uuid.uuid4())
    token = db.auth.create_token(id=user_id)
    created = db.auth.get_user(id=user_id)
    assert created is not None
    assert created["email"] is None
    db.auth.sign_out(id=user_id)
    with pytest.raises(InstantAPIError):
        db.auth.verify_token(token)
    db.auth.sign_out(id=str(uuid.uuid4()))  # nobody: nothing to do
    with pytest.raises(InstantAPIError) as unknown:
        db.auth.sign_out(email="nobody@example.com")
    assert unknown.value.type == "record-not-found"


def test_get_and_delete_user(db) -> None:
    token = db.auth.create_token(email="eve@example.com")
    by_email = db.auth.get_user(email="eve@example.com")
    assert by_email is not None
    assert db.auth.get_user(refresh_token=token) == by_email
    assert db.auth.get_user(id=by_email["id"]) == by_email
    assert set(by_email) >= {"id", "email", "app_id", "created_at", "isGuest"}
    assert "refresh_token" not in by_email
    deleted = db.auth.delete_user(id=by_email["id"])
    assert deleted == by_email
    assert db.auth.get_user(email="eve@example.com") is None
    assert db.auth.delete_user(email="eve@example.com") is None
    # Deleting a user revokes their tokens with them.
    with pytest.raises(InstantAPIError):
        db.auth.verify_token(token)


def test_a_token_signs_queries_in_as_its_user(db) -> None:
    token = db.auth.create_token(email="fay@example.com")
    db.auth.create_token(email="gus@example.com")
    as_fay = db.as_user(token=token)
    # The default $users view rule: a user sees only themselves.
    rows = as_fay.query({"$users": {}})["$users"]
    assert [row["email"] for row in rows] == ["fay@example.com"]
    assert len(db.query({"$users": {}})["$users"]) == 2


def test_bad_emails_are_refused_by_the_server(db) -> None:
    with pytest.raises(InstantValidationError) as bad:
        db.auth.send_magic_code("not an email")
    assert bad.value.type == "param-malformed"
