"""The auth routes over HTTP (in-process): shapes, parameters, errors, limits, secrets."""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from instantdb_local.app import create_app
from instantdb_local.auth import MagicCodePolicy
from instantdb_local.engine import AppEngine
from instantdb_local.instance import Instance
from instantdb_local.routes import configure


@contextmanager
def configured_client(instance: Instance, **options: Any) -> Iterator[TestClient]:
    app = create_app(instance)
    configure(app, **options)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def post(client: TestClient, path: str, headers: dict[str, str], **body: Any) -> Any:
    return client.post(path, json=body, headers=headers)


# -- refresh tokens --------------------------------------------------------------------------


def test_refresh_tokens_by_email_normalises_and_creates(client, admin_headers):
    body = post(client, "/admin/refresh_tokens", admin_headers, email="  Alice@Example.COM ").json()
    assert body["created"] is True
    assert body["user"]["email"] == "alice@example.com"
    assert uuid.UUID(body["user"]["refresh_token"])
    again = post(client, "/admin/refresh_tokens", admin_headers, email="alice@example.com").json()
    assert again["created"] is False
    assert again["user"]["id"] == body["user"]["id"]
    assert again["user"]["refresh_token"] != body["user"]["refresh_token"]


def test_refresh_tokens_validation(client, admin_headers, app_engine: AppEngine):
    neither = post(client, "/admin/refresh_tokens", admin_headers)
    assert neither.status_code == 400
    assert neither.json()["message"] == (
        "Validation failed for body: Please provide an `email` or `id`"
    )
    bad_email = post(client, "/admin/refresh_tokens", admin_headers, email="nope")
    assert bad_email.json()["type"] == "param-malformed"
    bad_id = post(client, "/admin/refresh_tokens", admin_headers, id="12")
    assert bad_id.json()["hint"]["in"] == ["body", "id"]
    extra = post(
        client,
        "/admin/refresh_tokens",
        admin_headers,
        email="a@b.co",
        **{"extra-fields": {"nick": "a"}},
    )
    assert extra.status_code == 400
    assert extra.json()["hint"]["data-type"] == "extra-fields"
    assert app_engine.find_user(email="a@b.co") is None
    not_a_map = post(
        client, "/admin/refresh_tokens", admin_headers, email="a@b.co", **{"extra-fields": [1]}
    )
    assert not_a_map.json()["hint"]["in"] == ["body", "extra-fields"]


def test_auth_routes_need_the_admin_token_and_ignore_impersonation(client, instance):
    app_id = instance.default_app.id
    guest = post(client, "/admin/refresh_tokens", {"app-id": app_id, "as-guest": "true"}, id=None)
    assert guest.json()["type"] == "param-missing"
    assert guest.json()["hint"]["in"] == ["headers", "authorization"]
    wrong = post(
        client,
        "/admin/magic_code",
        {"app-id": app_id, "authorization": f"Bearer {uuid.uuid4()}"},
        email="a@b.co",
    )
    assert wrong.json()["hint"]["record-type"] == "app-admin-token"
    admin = {
        "app-id": app_id,
        "authorization": f"Bearer {instance.default_app.admin_token}",
        "as-token": str(uuid.uuid4()),  # unknown, and not looked at
    }
    assert post(client, "/admin/sign_in_guest", admin).status_code == 200


def test_verify_refresh_token_needs_no_admin_token(client, instance, app_engine):
    user, _ = app_engine.create_refresh_token(email="bob@example.com")
    token = user["refresh_token"]
    response = client.post(
        "/runtime/auth/verify_refresh_token",
        json={"app-id": instance.default_app.id, "refresh-token": token},
    )
    assert response.status_code == 200
    assert response.json()["user"]["email"] == "bob@example.com"
    assert response.json()["user"]["refresh_token"] == token


def test_verify_refresh_token_errors(client, instance):
    app_id = instance.default_app.id
    route = "/runtime/auth/verify_refresh_token"
    assert client.post(route, json={"refresh-token": str(uuid.uuid4())}).json()["hint"] == {
        "in": ["body", "app-id"]
    }
    malformed = client.post(route, json={"app-id": app_id, "refresh-token": "tok-secret"})
    assert malformed.json()["type"] == "param-malformed"
    assert "tok-secret" not in malformed.text
    for target in (app_id, str(uuid.uuid4())):
        unknown = client.post(route, json={"app-id": target, "refresh-token": str(uuid.uuid4())})
        assert unknown.status_code == 400
        assert unknown.json()["message"] == "Record not found: app-user"


# -- users -----------------------------------------------------------------------------------


def test_get_user_by_email_token_and_id(client, admin_headers, app_engine):
    user, _ = app_engine.create_refresh_token(email="carol@example.com")
    plain = {k: v for k, v in user.items() if k != "refresh_token"}
    for params in (
        {"email": "Carol@example.com"},
        {"refresh_token": user["refresh_token"]},
        {"id": user["id"]},
    ):
        response = client.get("/admin/users", params=params, headers=admin_headers)
        assert response.status_code == 200
        assert response.json() == {"user": plain}
    missing = client.get("/admin/users", params={"id": str(uuid.uuid4())}, headers=admin_headers)
    assert missing.json() == {"user": None}


def test_get_user_checks_email_first(client, admin_headers, app_engine):
    app_engine.create_refresh_token(email="dan@example.com")
    response = client.get(
        "/admin/users",
        params={"email": "dan@example.com", "id": "not-a-uuid"},
        headers=admin_headers,
    )
    assert response.json()["user"]["email"] == "dan@example.com"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_user_selector_validation(client, admin_headers, method):
    none = client.request(method, "/admin/users", headers=admin_headers)
    assert none.status_code == 400
    assert none.json()["message"] == (
        "Validation failed for params: Please provide a user id, email, or refresh_token"
    )
    bad = client.request(method, "/admin/users", params={"id": "x"}, headers=admin_headers)
    assert bad.json()["hint"] == {"in": ["params", "id"], "original-input": "x"}
    token = client.request(
        method, "/admin/users", params={"refresh_token": "tok-secret"}, headers=admin_headers
    )
    assert token.json()["type"] == "param-malformed"
    assert "tok-secret" not in token.text


def test_delete_user_returns_the_deleted_record(client, admin_headers, app_engine):
    user, _ = app_engine.create_refresh_token(email="erin@example.com")
    plain = {k: v for k, v in user.items() if k != "refresh_token"}
    deleted = client.delete(
        "/admin/users", params={"refresh_token": user["refresh_token"]}, headers=admin_headers
    )
    assert deleted.json() == {"deleted": plain}
    assert app_engine.find_user(id=user["id"]) is None
    again = client.delete("/admin/users", params={"id": user["id"]}, headers=admin_headers)
    assert again.json() == {"deleted": None}


# -- magic codes -----------------------------------------------------------------------------


def test_magic_code_round_trip(client, admin_headers):
    code = post(client, "/admin/magic_code", admin_headers, email="Fay@Example.com").json()["code"]
    verified = post(
        client, "/admin/verify_magic_code", admin_headers, email="fay@example.com", code=code
    )
    assert verified.status_code == 200
    body = verified.json()
    assert body["created"] is True
    assert set(body["user"]) >= {"id", "email", "type", "app_id", "created_at", "isGuest"}
    assert body["user"]["refresh_token"]
    reused = post(
        client, "/admin/verify_magic_code", admin_headers, email="fay@example.com", code=code
    )
    assert reused.json()["message"] == "Record not found: app-user-magic-code"


def test_magic_code_parameters(client, admin_headers):
    for route in ("/admin/magic_code", "/admin/send_magic_code", "/admin/verify_magic_code"):
        missing = post(client, route, admin_headers)
        assert missing.json()["hint"] == {"in": ["body", "email"]}
        malformed = post(client, route, admin_headers, email="not an email", code="1")
        assert malformed.json()["type"] == "param-malformed"
    no_code = post(client, "/admin/verify_magic_code", admin_headers, email="a@b.co")
    assert no_code.json()["hint"] == {"in": ["body", "code"]}
    extra = post(
        client,
        "/admin/verify_magic_code",
        admin_headers,
        email="a@b.co",
        code="123456",
        **{"extra-fields": "x"},
    )
    assert extra.json()["hint"]["in"] == ["body", "extra-fields"]


@contextmanager
def server_log() -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``instantdb_local`` logger, whatever an earlier test (the CLI's
    own setup, say) did to its level, handlers or propagation."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("instantdb_local")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_send_magic_code_logs_the_code_and_no_secret(client, admin_headers, instance):
    with server_log() as records:
        code = post(client, "/admin/send_magic_code", admin_headers, email="gil@example.com")
        code = code.json()["code"]
        user = post(
            client, "/admin/verify_magic_code", admin_headers, email="gil@example.com", code=code
        ).json()["user"]
        post(client, "/admin/sign_out", admin_headers, refresh_token=user["refresh_token"])
    messages = [r.getMessage() for r in records]
    assert any(code in m and "gil@example.com" in m for m in messages)
    assert all(r.levelno == logging.INFO for r in records if code in r.getMessage())
    logged = "\n".join(messages)
    assert user["refresh_token"] not in logged
    assert instance.default_app.admin_token not in logged


def test_guest_upgrade_over_http(client, admin_headers):
    guest = post(client, "/admin/sign_in_guest", admin_headers).json()["user"]
    assert guest["isGuest"] is True
    assert guest["type"] == "guest"
    code = post(client, "/admin/magic_code", admin_headers, email="hal@example.com").json()["code"]
    body = post(
        client,
        "/admin/verify_magic_code",
        admin_headers,
        email="hal@example.com",
        code=code,
        **{"refresh-token": guest["refresh_token"]},
    ).json()
    assert body["user"]["id"] == guest["id"]
    assert body["user"]["isGuest"] is False


def test_sign_in_guest_validates_extra_fields(client, admin_headers):
    refused = post(client, "/admin/sign_in_guest", admin_headers, **{"extra-fields": {"x": 1}})
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "Validation failed for extra-fields: Unknown field: x. It must be defined in your "
        "$users schema."
    )


def test_sign_out_over_http(client, admin_headers, app_engine):
    user, _ = app_engine.create_refresh_token(email="ivy@example.com")
    ok = post(client, "/admin/sign_out", admin_headers, email="ivy@example.com")
    assert ok.json() == {"ok": True}
    assert app_engine.find_user(refresh_token=user["refresh_token"]) is None
    unknown = post(client, "/admin/sign_out", admin_headers, email="nobody@example.com")
    assert unknown.json()["type"] == "record-not-found"
    none = post(client, "/admin/sign_out", admin_headers)
    assert none.json()["message"] == (
        "Validation failed for body: Please provide an `id`, `email`, or `refresh_token`"
    )


def test_send_limit(instance, admin_headers):
    policy = MagicCodePolicy(sends_per_hour=2)
    with configured_client(instance, magic_codes=policy) as client:
        for _ in range(2):
            sent = post(client, "/admin/send_magic_code", admin_headers, email="jo@example.com")
            assert sent.status_code == 200
        # The email is normalised before it is counted.
        refused = post(client, "/admin/send_magic_code", admin_headers, email=" JO@example.com")
        assert refused.status_code == 429
        assert refused.json()["type"] == "rate-limited"
        assert refused.json()["message"] == (
            "Too many verification codes requested for this email. Please try again later."
        )
        other = post(client, "/admin/send_magic_code", admin_headers, email="kim@example.com")
        assert other.status_code == 200
        # Generating a code (nothing is sent) is not limited.
        for _ in range(3):
            made = post(client, "/admin/magic_code", admin_headers, email="jo@example.com")
            assert made.status_code == 200


def test_verify_limit_is_spent_before_the_code_is_looked_at(instance, admin_headers):
    with configured_client(instance, magic_codes=MagicCodePolicy(verifies_per_hour=2)) as client:
        code = post(client, "/admin/magic_code", admin_headers, email="lu@example.com").json()
        wrong = "000000" if code["code"] != "000000" else "111111"
        for _ in range(2):
            attempt = post(
                client,
                "/admin/verify_magic_code",
                admin_headers,
                email="lu@example.com",
                code=wrong,
            )
            assert attempt.status_code == 400
        blocked = post(
            client,
            "/admin/verify_magic_code",
            admin_headers,
            email="lu@example.com",
            code=code["code"],
        )
        assert blocked.status_code == 429
        assert blocked.json()["hint"]["retry-after"] > 0


def test_code_lifetime_from_the_policy(instance, admin_headers):
    policy = MagicCodePolicy(code_lifetime=timedelta(microseconds=1))
    with configured_client(instance, magic_codes=policy) as client:
        code = post(client, "/admin/magic_code", admin_headers, email="mo@example.com").json()
        time.sleep(0.005)  # past the 1 us lifetime, whatever the clock's resolution
        expired = post(
            client, "/admin/verify_magic_code", admin_headers, email="mo@example.com", **code
        )
        assert expired.json()["type"] == "record-expired"


def test_configure_refuses_bad_limits(instance):
    app = create_app(instance)
    with pytest.raises(ValueError, match="max_upload_bytes"):
        configure(app, max_upload_bytes=0)
