"""The auth flows on a real engine: magic codes, tokens, guests, sign-out, deletion."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from datetime import timedelta
from typing import Any

import pytest

from instantdb_local import auth
from instantdb_local.engine import Actor, AppEngine
from tests.local.engine.helpers import error_of, uid

ADMIN = Actor.admin()
DAY = 24 * 3600

SCHEMA = {
    "attrs": {"$users": {"nickname": {"type": "string"}}, "posts": {"title": {}}},
    "links": {
        "postAuthor": {
            "forward": {"on": "posts", "label": "author", "has": "one", "onDelete": "cascade"},
            "reverse": {"on": "$users", "label": "posts", "has": "many"},
        }
    },
}


def rows(engine: AppEngine, etype: str) -> list[dict[str, Any]]:
    return engine.query({etype: {}}, ADMIN)[etype]


def stored_values(engine: AppEngine) -> list[Any]:
    conn = sqlite3.connect(engine.path)
    try:
        return [json.loads(row[0]) for row in conn.execute("SELECT value FROM triples")]
    finally:
        conn.close()


# -- magic codes ----------------------------------------------------------------------------


def test_codes_are_six_digits_drawn_from_zero_to_eight() -> None:
    codes = [auth.new_magic_code() for _ in range(300)]
    assert all(re.fullmatch(r"[0-8]{6}", code) for code in codes)
    # 1800 draws: every digit the server uses shows up.
    assert set("".join(codes)) == set("012345678")


def test_a_code_is_stored_only_as_its_sha256(engine: AppEngine) -> None:
    code = auth.create_magic_code(engine, " Alice@Example.com ")
    [row] = rows(engine, "$magicCodes")
    assert row["email"] == "alice@example.com"
    assert row["codeHash"] == hashlib.sha256(code.encode()).hexdigest()
    assert code not in stored_values(engine)


def test_a_code_signs_in_once_and_creates_the_user(engine: AppEngine) -> None:
    code = auth.create_magic_code(engine, "alice@example.com")
    user, created = auth.verify_magic_code(engine, email="ALICE@example.com", code=code)
    assert created is True
    assert user["email"] == "alice@example.com"
    assert user["type"] == "user"
    assert user["isGuest"] is False
    assert engine.find_user(refresh_token=user["refresh_token"])["id"] == user["id"]
    again = error_of(lambda: auth.verify_magic_code(engine, email="alice@example.com", code=code))
    assert again.type == "record-not-found"
    assert again.message == "Record not found: app-user-magic-code"
    assert rows(engine, "$magicCodes") == []


def test_an_existing_user_is_not_created_again(engine: AppEngine) -> None:
    known, _ = auth.create_token(engine, email="bob@example.com")
    code = auth.create_magic_code(engine, "bob@example.com")
    # Extra fields are only looked at when a user is created.
    user, created = auth.verify_magic_code(
        engine, email="bob@example.com", code=code, extra_fields={"unknown": 1}
    )
    assert created is False
    assert user["id"] == known["id"]
    assert "type" not in user  # made by create_token, which sets no type
    assert user["refresh_token"] != known["refresh_token"]


def test_older_codes_stay_valid(engine: AppEngine) -> None:
    first = auth.create_magic_code(engine, "c@example.com")
    second = auth.create_magic_code(engine, "c@example.com")
    auth.verify_magic_code(engine, email="c@example.com", code=second)
    auth.verify_magic_code(engine, email="c@example.com", code=first)
    assert rows(engine, "$magicCodes") == []


def test_a_code_belongs_to_its_email(engine: AppEngine) -> None:
    code = auth.create_magic_code(engine, "d@example.com")
    wrong_email = error_of(lambda: auth.verify_magic_code(engine, email="e@example.com", code=code))
    assert wrong_email.message == "Record not found: app-user-magic-code"
    other = "0" * 6 if code != "0" * 6 else "1" * 6
    wrong_code = error_of(lambda: auth.verify_magic_code(engine, email="d@example.com", code=other))
    assert wrong_code.type == "record-not-found"
    auth.verify_magic_code(engine, email="d@example.com", code=code)


def test_an_expired_code_is_refused_and_not_consumed(engine: AppEngine) -> None:
    code = auth.create_magic_code(engine, "f@example.com")
    later = time.time() + DAY + 60
    for _ in range(2):  # Correction 1: the retry is told the same
        expired = error_of(
            lambda: auth.verify_magic_code(engine, email="f@example.com", code=code, now=later)
        )
        assert expired.type == "record-expired"
        assert expired.message == "Record expired: app-user-magic-code"
    assert len(rows(engine, "$magicCodes")) == 1
    assert engine.find_user(email="f@example.com") is None
    # Still there, so still usable within its lifetime.
    auth.verify_magic_code(engine, email="f@example.com", code=code)


def test_the_lifetime_is_configurable(engine: AppEngine) -> None:
    code = auth.create_magic_code(engine, "g@example.com")
    soon = time.time() + 120
    short = timedelta(minutes=1)
    expired = error_of(
        lambda: auth.verify_magic_code(
            engine, email="g@example.com", code=code, lifetime=short, now=soon
        )
    )
    assert expired.type == "record-expired"
    auth.verify_magic_code(
        engine, email="g@example.com", code=code, lifetime=timedelta(minutes=5), now=soon
    )


@pytest.mark.parametrize("email", ["nope", "", None, 3, "a @b.co"])
def test_bad_emails_are_param_malformed(engine: AppEngine, email: Any) -> None:
    assert error_of(lambda: auth.create_magic_code(engine, email)).type == "param-malformed"


def test_extra_fields_on_signup_must_be_schema_fields(engine: AppEngine) -> None:
    engine.apply_schema(SCHEMA)
    code = auth.create_magic_code(engine, "h@example.com")
    error = error_of(
        lambda: auth.verify_magic_code(
            engine,
            email="h@example.com",
            code=code,
            extra_fields={"nickname": "h", "color": "red", "email": "x@y.co", "posts": []},
        )
    )
    assert error.type == "validation-failed"
    assert error.hint is not None
    assert error.hint["data-type"] == "extra-fields"
    assert error.message == (
        "Validation failed for extra-fields: "
        "Unknown field: color. It must be defined in your $users schema., "
        "Cannot set system field: email, "
        "Unknown field: posts. It must be defined in your $users schema."
    )
    # Refused before anything was written: the code still works.
    user, created = auth.verify_magic_code(
        engine, email="h@example.com", code=code, extra_fields={"nickname": "h"}
    )
    assert created is True
    assert user["nickname"] == "h"


def test_extra_fields_are_type_checked(engine: AppEngine) -> None:
    engine.apply_schema(SCHEMA)
    code = auth.create_magic_code(engine, "i@example.com")
    error = error_of(
        lambda: auth.verify_magic_code(
            engine, email="i@example.com", code=code, extra_fields={"nickname": 5}
        )
    )
    assert error.type == "validation-failed"
    assert engine.find_user(email="i@example.com") is None
    assert len(rows(engine, "$magicCodes")) == 1


# -- guests ----------------------------------------------------------------------------------


def test_a_guest_has_no_email_and_a_working_token(engine: AppEngine) -> None:
    engine.apply_schema(SCHEMA)
    guest = auth.sign_in_guest(engine, extra_fields={"nickname": "anon"})
    assert guest["type"] == "guest"
    assert guest["isGuest"] is True
    assert guest.get("email") is None
    assert guest["nickname"] == "anon"
    assert engine.find_user(refresh_token=guest["refresh_token"])["id"] == guest["id"]
    assert error_of(lambda: auth.sign_in_guest(engine, extra_fields={"type": "user"})).hint[
        "errors"
    ] == [{"message": "Cannot set system field: type", "in": ["type"]}]


def test_a_guest_signing_up_keeps_its_id(engine: AppEngine) -> None:
    guest = auth.sign_in_guest(engine)
    code = auth.create_magic_code(engine, "j@example.com")
    user, created = auth.verify_magic_code(
        engine, email="j@example.com", code=code, refresh_token=guest["refresh_token"]
    )
    assert created is True
    assert user["id"] == guest["id"]
    assert user["type"] == "user"
    assert user["isGuest"] is False
    assert user["email"] == "j@example.com"
    # Both tokens now sign in the same, upgraded user.
    for token in (guest["refresh_token"], user["refresh_token"]):
        assert engine.find_user(refresh_token=token)["email"] == "j@example.com"


def test_a_guest_signing_in_to_an_existing_account_is_linked_to_it(engine: AppEngine) -> None:
    primary, _ = auth.create_token(engine, email="k@example.com")
    guest = auth.sign_in_guest(engine)
    code = auth.create_magic_code(engine, "k@example.com")
    user, created = auth.verify_magic_code(
        engine, email="k@example.com", code=code, refresh_token=guest["refresh_token"]
    )
    assert created is False
    assert user["id"] == primary["id"]
    linked = engine.find_user(id=guest["id"])
    assert linked is not None
    assert linked["linkedPrimaryUser"] == primary["id"]
    assert linked["isGuest"] is True


def test_the_refresh_token_of_a_non_guest_links_nothing(engine: AppEngine) -> None:
    other, _ = auth.create_token(engine, email="l@example.com")
    code = auth.create_magic_code(engine, "m@example.com")
    user, created = auth.verify_magic_code(
        engine, email="m@example.com", code=code, refresh_token=other["refresh_token"]
    )
    assert created is True
    assert user["id"] != other["id"]
    assert "linkedPrimaryUser" not in engine.find_user(id=other["id"])


def test_an_unknown_or_malformed_guest_token_is_refused(engine: AppEngine) -> None:
    code = auth.create_magic_code(engine, "n@example.com")
    unknown = error_of(
        lambda: auth.verify_magic_code(
            engine, email="n@example.com", code=code, refresh_token=uid(9)
        )
    )
    assert unknown.message == "Record not found: app-user"
    malformed = error_of(
        lambda: auth.verify_magic_code(
            engine, email="n@example.com", code=code, refresh_token="secret-token"
        )
    )
    assert malformed.type == "param-malformed"
    assert "secret-token" not in json.dumps(malformed.body())
    auth.verify_magic_code(engine, email="n@example.com", code=code)  # not consumed


# -- refresh tokens --------------------------------------------------------------------------


def test_create_token_applies_extra_fields_to_new_users_only(engine: AppEngine) -> None:
    engine.apply_schema(SCHEMA)
    user, created = auth.create_token(engine, email="o@example.com", extra_fields={"nickname": "o"})
    assert created is True
    assert user["nickname"] == "o"
    same, created_again = auth.create_token(
        engine, email="o@example.com", extra_fields={"nickname": "changed"}
    )
    assert created_again is False
    assert same["nickname"] == "o"
    refused = error_of(lambda: auth.create_token(engine, id=uid(4), extra_fields={"color": "red"}))
    assert refused.type == "validation-failed"
    assert engine.find_user(id=uid(4)) is None


def test_create_token_with_id_and_email_prefers_the_email(engine: AppEngine) -> None:
    known, _ = auth.create_token(engine, email="p@example.com")
    user, created = auth.create_token(engine, email="p@example.com", id=uid(3))
    assert created is False
    assert user["id"] == known["id"]
    fresh, created_fresh = auth.create_token(engine, email="q@example.com", id=uid(3))
    assert created_fresh is True
    assert fresh["id"] == uid(3)


# -- signing out -----------------------------------------------------------------------------


def tokens_of(engine: AppEngine, *users: dict[str, Any]) -> list[bool]:
    return [engine.find_user(refresh_token=u["refresh_token"]) is not None for u in users]


def test_sign_out_by_id_or_email_revokes_every_token(engine: AppEngine) -> None:
    a1, _ = auth.create_token(engine, email="r@example.com")
    a2, _ = auth.create_token(engine, email="r@example.com")
    b, _ = auth.create_token(engine, email="s@example.com")
    auth.sign_out(engine, id=a1["id"])
    assert tokens_of(engine, a1, a2, b) == [False, False, True]
    auth.sign_out(engine, email="S@example.com")
    assert tokens_of(engine, b) == [False]
    # The users themselves stay.
    assert engine.find_user(id=a1["id"]) is not None


def test_sign_out_by_token_revokes_only_that_token(engine: AppEngine) -> None:
    t1, _ = auth.create_token(engine, email="t@example.com")
    t2, _ = auth.create_token(engine, email="t@example.com")
    auth.sign_out(engine, refresh_token=t1["refresh_token"])
    assert tokens_of(engine, t1, t2) == [False, True]
    auth.sign_out(engine, refresh_token=t1["refresh_token"])  # again: a no-op


def test_sign_out_edge_cases(engine: AppEngine) -> None:
    u, _ = auth.create_token(engine, email="u@example.com")
    v, _ = auth.create_token(engine, email="v@example.com")
    auth.sign_out(engine, id=uid(77))  # no such user: nothing to do
    missing = error_of(lambda: auth.sign_out(engine, email="nobody@example.com"))
    assert missing.message == "Record not found: app-user"
    # id wins over email, which wins over refresh_token.
    auth.sign_out(engine, id=u["id"], email="v@example.com", refresh_token=v["refresh_token"])
    assert tokens_of(engine, u, v) == [False, True]
    none = error_of(lambda: auth.sign_out(engine))
    assert none.message == (
        "Validation failed for body: Please provide an `id`, `email`, or `refresh_token`"
    )
    assert error_of(lambda: auth.sign_out(engine, refresh_token="x")).type == "param-malformed"


# -- deleting users --------------------------------------------------------------------------


def test_delete_user_cascades_to_tokens_guests_and_cascade_links(engine: AppEngine) -> None:
    engine.apply_schema(SCHEMA)
    user, _ = auth.create_token(engine, email="w@example.com", extra_fields={"nickname": "w"})
    auth.create_token(engine, email="w@example.com")
    guest = auth.sign_in_guest(engine)
    code = auth.create_magic_code(engine, "w@example.com")
    auth.verify_magic_code(
        engine, email="w@example.com", code=code, refresh_token=guest["refresh_token"]
    )
    other, _ = auth.create_token(engine, email="x@example.com")
    engine.transact(
        [
            ["update", "posts", uid(1), {"title": "mine"}],
            ["link", "posts", uid(1), {"author": user["id"]}],
            ["update", "posts", uid(2), {"title": "theirs"}],
            ["link", "posts", uid(2), {"author": other["id"]}],
        ],
        ADMIN,
    )
    before = engine.find_user(id=user["id"])
    deleted = auth.delete_user(engine, email="w@example.com")
    assert deleted == before
    assert engine.find_user(id=user["id"]) is None
    assert engine.find_user(id=guest["id"]) is None
    assert [p["title"] for p in rows(engine, "posts")] == ["theirs"]
    tokens = rows(engine, "$userRefreshTokens")
    assert len(tokens) == 1  # only the other user's
    assert engine.find_user(refresh_token=other["refresh_token"]) is not None
    assert auth.delete_user(engine, email="w@example.com") is None


def test_delete_user_by_token_or_id(engine: AppEngine) -> None:
    a, _ = auth.create_token(engine, email="y@example.com")
    b, _ = auth.create_token(engine, id=uid(8))
    assert auth.delete_user(engine, refresh_token=a["refresh_token"])["id"] == a["id"]
    assert auth.delete_user(engine, id=uid(8))["id"] == b["id"]
    assert rows(engine, "$users") == []
