"""The manager, payload and JWKS routes over HTTP, as any client sees them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.webhooks import WebhookService
from instantdb_local.webhooks.signing import SigningKey
from tests.local.webhooks.helpers import HTTP, URL, admin, create, error, request, transact


def test_create_list_update_disable_enable_delete(app: AppCredentials) -> None:
    made = create(app, actions=["create", "update"])
    assert made["sink"] == {"url": URL}
    assert made["namespaces"] == ["goals"]
    assert made["status"] == "active"
    assert made["disabled_reason"] is None
    assert made["created_at"].endswith("Z")
    assert len(made["created_at"]) == len("2026-05-04T04:38:53Z")
    newer = create(app, namespaces=["todos"])
    listed = request(app, "GET").json()["webhooks"]
    assert [w["id"] for w in listed] == [newer["id"], made["id"]]

    patched = request(app, "POST", f"/{made['id']}", json={"namespaces": ["goals", "todos"]})
    assert patched.json()["webhook"]["namespaces"] == ["goals", "todos"]
    assert patched.json()["webhook"]["actions"] == ["create", "update"]

    disabled = request(app, "POST", f"/{made['id']}/disable", json={"reason": "pause"})
    assert disabled.json()["webhook"]["status"] == "disabled"
    assert disabled.json()["webhook"]["disabled_reason"] == "pause"
    enabled = request(app, "POST", f"/{made['id']}/enable", json={})
    assert enabled.json()["webhook"]["status"] == "active"
    assert enabled.json()["webhook"]["disabled_reason"] is None

    deleted = request(app, "DELETE", f"/{made['id']}")
    assert deleted.json()["webhook"]["id"] == made["id"]
    assert [w["id"] for w in request(app, "GET").json()["webhooks"]] == [newer["id"]]
    assert error(request(app, "POST", f"/{made['id']}/enable", json={}))[:2] == (
        400,
        "record-not-found",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"namespaces": ["nope"]}, "Could not find matching table for nope"),
        ({"namespaces": []}, "Webhook must have at least one table."),
        ({"actions": []}, "Webhook must have at least one action."),
        ({"actions": ["upsert"]}, "Invalid action upsert: actions are create, update and delete"),
        ({"url": "ftp://example.com"}, "The Webhook url must be an http or https URL"),
    ],
)
def test_validation_messages(app: AppCredentials, body: dict[str, Any], message: str) -> None:
    full = {"url": URL, "namespaces": ["goals"], "actions": ["create"], **body}
    status, kind, text = error(request(app, "POST", json=full))
    assert (status, kind) == (400, "validation-failed")
    assert text == f"Validation failed for webhook: {message}"


def test_missing_params_and_bad_auth(app: AppCredentials, server: LocalServer) -> None:
    assert error(request(app, "POST", json={"url": URL, "actions": ["create"]}))[1] == (
        "param-missing"
    )
    assert error(request(app, "GET", headers={}))[1] == "param-missing"
    other = server.create_app(title="other")
    wrong = request(app, "GET", headers={"authorization": f"Bearer {other.admin_token}"})
    assert error(wrong)[:2] == (400, "record-not-found")
    assert wrong.json()["hint"]["record-type"] == "app-admin-token"


def test_http_and_loopback_sinks_are_allowed_and_duplicates_refused(app: AppCredentials) -> None:
    first = create(app, url="http://localhost:1234/x")
    again = request(
        app,
        "POST",
        json={"url": "http://localhost:1234/x", "namespaces": ["goals"], "actions": ["create"]},
    )
    status, kind, message = error(again)
    assert (status, kind) == (400, "validation-failed")
    assert "A webhook already exists with all of the same properties" in message
    assert again.json()["hint"]["webhook-id"] == first["id"]
    # A disabled duplicate does not count, until it is enabled again.
    request(app, "POST", f"/{first['id']}/disable", json={})
    second = create(app, url="http://localhost:1234/x")
    assert error(request(app, "POST", f"/{first['id']}/enable", json={}))[0] == 400
    assert second["status"] == "active"


def test_at_most_100_active_webhooks(app: AppCredentials) -> None:
    hooks = [create(app, url=f"http://127.0.0.1:9/{i}") for i in range(100)]
    refused = request(
        app, "POST", json={"url": URL, "namespaces": ["goals"], "actions": ["create"]}
    )
    assert error(refused) == (
        400,
        "validation-failed",
        "Validation failed for webhooks: An app may not have more than 100 active webhooks.",
    )
    request(app, "POST", f"/{hooks[0]['id']}/disable", json={})
    create(app)
    assert error(request(app, "POST", f"/{hooks[0]['id']}/enable", json={}))[0] == 400


def test_events_are_paged_newest_first_100_at_a_time(app: AppCredentials) -> None:
    hook = create(app, actions=["create", "update"])
    tx_ids = [
        transact(app, ["update", "goals", str(uuid.uuid4()), {"title": str(i)}]) for i in range(101)
    ]
    first = request(app, "GET", f"/{hook['id']}/events").json()
    assert len(first["events"]) == 100
    assert first["pageInfo"]["hasNextPage"] is True
    second = request(
        app, "GET", f"/{hook['id']}/events", params={"after": first["pageInfo"]["endCursor"]}
    ).json()
    assert second["pageInfo"]["hasNextPage"] is False
    isns = [e["isn"] for e in first["events"] + second["events"]]
    assert isns == [f"0/0/{tx:X}" for tx in reversed(tx_ids)]
    # An undecodable cursor means the first page.
    garbage = request(app, "GET", f"/{hook['id']}/events", params={"after": "%%%"}).json()
    assert garbage["events"][0]["isn"] == isns[0]


def test_get_event_and_payload_with_an_admin_token(app: AppCredentials) -> None:
    hook = create(app, namespaces=["goals", "todos"], actions=["create", "delete"])
    goal = str(uuid.uuid4())
    tx = transact(app, ["update", "goals", goal, {"title": "a"}])
    event = request(app, "GET", f"/{hook['id']}/events/0/0/{tx:X}").json()["event"]
    assert event["isn"] == f"0/0/{tx:X}"
    assert set(event) == {
        "isn",
        "status",
        "attempts",
        "next_attempt_after",
        "created_at",
        "updated_at",
    }
    payload = HTTP.get(
        f"{app.api_uri}/webhooks/payload/{app.app_id}/{hook['id']}/0/0/{tx:X}",
        headers=admin(app),
    )
    assert payload.headers["cache-control"] == "no-store, private"
    assert payload.headers["vary"] == "Authorization"
    [record] = payload.json()["data"]
    assert record["after"] == {"id": goal, "title": "a"}
    assert record["before"] is None
    assert error(request(app, "GET", f"/{hook['id']}/events/0/0/FFFF"))[1] == "record-not-found"
    assert error(request(app, "GET", f"/{hook['id']}/events/junk"))[1] == "record-not-found"


def test_payload_follows_the_webhooks_current_actions(app: AppCredentials) -> None:
    hook = create(app, actions=["create", "update"])
    goal = str(uuid.uuid4())
    tx = transact(app, ["update", "goals", goal, {"title": "a"}])
    path = f"{app.api_uri}/webhooks/payload/{app.app_id}/{hook['id']}/0/0/{tx:X}"
    assert len(HTTP.get(path, headers=admin(app)).json()["data"]) == 1
    request(app, "POST", f"/{hook['id']}", json={"actions": ["update"]})
    assert HTTP.get(path, headers=admin(app)).json()["data"] == []


def jwt_for(service: WebhookService, app: AppCredentials, hook: str, isn: str, **over: Any) -> str:
    claims = {
        "iss": app.api_uri,
        "sub": app.app_id,
        "app-id": app.app_id,
        "exp": int(time.time()) + 60,
        "isn": isn,
        "webhook-id": hook,
        **over,
    }
    return service.signing_key.jwt(claims)


def test_payload_tokens_are_checked(app: AppCredentials, service: WebhookService) -> None:
    hook = create(app)["id"]
    tx = transact(app, ["update", "goals", str(uuid.uuid4()), {"title": "a"}])
    isn = f"0/0/{tx:X}"
    path = f"{app.api_uri}/webhooks/payload/{app.app_id}/{hook}/{isn}"

    def fetch(token: str) -> httpx.Response:
        return HTTP.get(path, headers={"authorization": f"Bearer {token}"})

    assert fetch(jwt_for(service, app, hook, isn)).status_code == 200
    refusals = [
        jwt_for(service, app, hook, isn, exp=int(time.time()) - 1),
        jwt_for(service, app, hook, "0/0/FFFF"),
        jwt_for(service, app, str(uuid.uuid4()), isn),
        jwt_for(service, app, hook, isn, iss="http://elsewhere"),
        SigningKey("123456789", bytes(32)).jwt({"sub": app.app_id}),
        "eyJnot-a-token",
    ]
    for token in refusals:
        response = fetch(token)
        assert response.status_code == 400, token
        assert response.json()["type"] == "validation-failed"
        assert response.json()["hint"]["data-type"] == "jwt"


def test_jwks_lists_the_servers_key(app: AppCredentials, service: WebhookService) -> None:
    response = HTTP.get(f"{app.api_uri}/.well-known/webhooks/jwks.json")
    assert response.json() == {"keys": [service.signing_key.jwk()]}
    assert service.signing_key.kid not in ("1034696293", "503090235")


def test_the_signing_key_persists_in_a_private_file(tmp_path: Any) -> None:
    data = tmp_path / "data"
    with LocalServer(data_dir=data) as first:
        kid = HTTP.get(f"{first.api_uri}/.well-known/webhooks/jwks.json").json()["keys"][0]
    assert (data / "webhooks.sqlite3").stat().st_mode & 0o777 == 0o600
    with LocalServer(data_dir=data) as second:
        again = HTTP.get(f"{second.api_uri}/.well-known/webhooks/jwks.json").json()["keys"][0]
    assert again == kid
