"""Users and refresh tokens: the minimum impersonation needs."""

from __future__ import annotations

import re
import sqlite3

from instantdb_local.engine import AppEngine
from tests.local.engine.helpers import ADMIN, error_of, tx, uid


def test_create_token_by_email_creates_the_user_once(engine: AppEngine) -> None:
    user, created = engine.create_refresh_token(email="  Alice@Example.COM ")
    assert created is True
    assert user["email"] == "alice@example.com"
    assert "type" not in user
    assert user["isGuest"] is False
    assert user["app_id"] == engine.app_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", user["created_at"])
    again, created_again = engine.create_refresh_token(email="alice@example.com", id=uid(5))
    assert created_again is False
    assert again["id"] == user["id"]
    assert again["refresh_token"] != user["refresh_token"]
    # Both tokens stay valid.
    for token in (user["refresh_token"], again["refresh_token"]):
        found = engine.find_user(refresh_token=token)
        assert found is not None
        assert found["id"] == user["id"]


def test_create_token_by_id_sets_an_explicit_null_email(engine: AppEngine) -> None:
    user, created = engine.create_refresh_token(id=uid(7))
    assert created is True
    assert user["id"] == uid(7)
    assert "email" in user
    assert user["email"] is None
    assert engine.create_refresh_token(id=uid(7))[1] is False


def test_bad_identities(engine: AppEngine) -> None:
    assert error_of(lambda: engine.create_refresh_token(email="nope")).type == "param-malformed"
    assert error_of(lambda: engine.create_refresh_token(id="nope")).type == "param-malformed"
    missing = error_of(lambda: engine.create_refresh_token())
    assert missing.message == "Validation failed for body: Please provide an `email` or `id`"


def test_tokens_are_stored_hashed_and_cascade_with_the_user(engine: AppEngine) -> None:
    user, _ = engine.create_refresh_token(email="a@b.co")
    token = user["refresh_token"]
    conn = sqlite3.connect(engine.path)
    try:
        stored = " ".join(str(row) for row in conn.execute("SELECT * FROM triples"))
    finally:
        conn.close()
    assert token not in stored
    rows = engine.query({"$userRefreshTokens": {}}, ADMIN)["$userRefreshTokens"]
    assert len(rows) == 1
    assert len(rows[0]["hashedToken"]) == 64
    tx(engine, ["delete", "$users", user["id"]])
    assert engine.query({"$userRefreshTokens": {}}, ADMIN)["$userRefreshTokens"] == []
    assert engine.find_user(refresh_token=token) is None


def test_find_user_by_each_key(engine: AppEngine) -> None:
    tx(engine, ["update", "$users", uid(1), {"email": "x@y.co", "type": "user", "nick": "x"}])
    by_id = engine.find_user(id=uid(1))
    assert by_id is not None
    assert by_id["nick"] == "x"
    assert by_id["type"] == "user"
    assert engine.find_user(email="X@Y.co") == by_id
    assert engine.find_user(id=uid(2)) is None
    assert engine.find_user(email="none@y.co") is None
    assert engine.find_user(refresh_token="00000000-0000-4000-8000-000000000000") is None


def test_repr_shows_no_secrets(engine: AppEngine) -> None:
    user, _ = engine.create_refresh_token(email="a@b.co")
    assert user["refresh_token"] not in repr(engine)
