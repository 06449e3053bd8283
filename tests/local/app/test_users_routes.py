"""refresh_tokens, verify_refresh_token and GET /admin/users."""

from __future__ import annotations

import uuid


def test_refresh_tokens_by_email_normalises_and_creates(client, admin_headers, fake_engine):
    response = client.post(
        "/admin/refresh_tokens", json={"email": "  Alice@Example.COM "}, headers=admin_headers
    )
    assert response.status_code == 200
    body = response.json()
    assert body["created"] is True
    assert body["user"]["email"] == "alice@example.com"
    assert uuid.UUID(body["user"]["refresh_token"])
    again = client.post(
        "/admin/refresh_tokens", json={"email": "alice@example.com"}, headers=admin_headers
    ).json()
    assert again["created"] is False
    assert again["user"]["refresh_token"] != body["user"]["refresh_token"]


def test_refresh_tokens_validation(client, admin_headers):
    neither = client.post("/admin/refresh_tokens", json={}, headers=admin_headers)
    assert neither.status_code == 400
    assert neither.json()["message"] == (
        "Validation failed for body: Please provide an `email` or `id`"
    )
    bad_email = client.post("/admin/refresh_tokens", json={"email": "nope"}, headers=admin_headers)
    assert bad_email.json()["type"] == "param-malformed"
    bad_id = client.post("/admin/refresh_tokens", json={"id": "12"}, headers=admin_headers)
    assert bad_id.json()["hint"]["in"] == ["body", "id"]
    extra = client.post(
        "/admin/refresh_tokens",
        json={"email": "a@b.co", "extra-fields": {"nick": "a"}},
        headers=admin_headers,
    )
    assert extra.status_code == 501


def test_refresh_tokens_ignores_impersonation_but_needs_the_admin_token(client, instance):
    response = client.post(
        "/admin/refresh_tokens",
        json={"email": "a@b.co"},
        headers={"app-id": instance.default_app.id, "as-guest": "true"},
    )
    assert response.json()["type"] == "param-missing"


def test_verify_refresh_token_needs_no_admin_token(client, instance, fake_engine):
    user, _ = fake_engine.create_refresh_token(email="bob@example.com")
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


def test_get_user_by_email_token_and_id(client, admin_headers, fake_engine):
    user, _ = fake_engine.create_refresh_token(email="carol@example.com")
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


def test_get_user_checks_email_first(client, admin_headers, fake_engine):
    fake_engine.add_user("dan@example.com")
    response = client.get(
        "/admin/users",
        params={"email": "dan@example.com", "id": "not-a-uuid"},
        headers=admin_headers,
    )
    assert response.json()["user"]["email"] == "dan@example.com"


def test_get_user_validation(client, admin_headers):
    none = client.get("/admin/users", headers=admin_headers)
    assert none.status_code == 400
    assert none.json()["message"] == (
        "Validation failed for params: Please provide a user id, email, or refresh_token"
    )
    bad = client.get("/admin/users", params={"id": "x"}, headers=admin_headers)
    assert bad.json()["hint"] == {"in": ["params", "id"], "original-input": "x"}
