"""Deliveries: the signed request, retries, 410, disabling, resend, restarts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.webhooks import WebhookService, service_for
from instantdb_local.webhooks.isn import parse_isn
from instantdb_local.webhooks.records import payload_key
from instantdb_local.webhooks.store import Event
from tests.local.webhooks.conftest import FAST_RETRIES, SCHEMA
from tests.local.webhooks.helpers import create, request, transact
from tests.local.webhooks.receiver import Delivery, Receiver, wait_until


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def goal(app: AppCredentials, title: str = "a", goal_id: str | None = None) -> int:
    return transact(app, ["update", "goals", goal_id or str(uuid.uuid4()), {"title": title}])


def event_of(service: WebhookService, hook: dict[str, Any], tx: int) -> Event | None:
    return service.store.event(hook["id"], tx)


def settled(service: WebhookService, hook: dict[str, Any], tx: int, status: str) -> Event:
    def check() -> Event | None:
        event = event_of(service, hook, tx)
        return event if event is not None and event.status == status else None

    return wait_until(check)  # type: ignore[no-any-return]


def verify(service: WebhookService, delivery: Delivery) -> None:
    fields = dict(piece.split("=", 1) for piece in delivery.headers["instant-signature"].split(","))
    assert fields["kid"] == service.signing_key.kid
    public = Ed25519PublicKey.from_public_bytes(service.signing_key.public_bytes)
    public.verify(bytes.fromhex(fields["v1"]), fields["t"].encode() + b"." + delivery.body)


def test_a_transaction_is_delivered_signed_with_the_exact_headers_and_body(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    hook = create(app, url=receiver.url, actions=["create"])
    tx = goal(app)
    (delivery,) = receiver.wait_for(1)
    assert delivery.path == "/hook"
    assert delivery.headers["content-type"] == "application/json; charset=utf-8"
    assert delivery.headers["user-agent"] == "InstantDB Webhook Sender"
    assert delivery.headers["idempotency-key"] == payload_key(hook["id"], tx)
    verify(service, delivery)
    body = json.loads(delivery.body)
    assert list(body) == ["payloadUrl", "token"]
    assert delivery.body == json.dumps(body, separators=(",", ":")).encode()
    assert body["payloadUrl"] == (
        f"{app.api_uri}/webhooks/payload/{app.app_id}/{hook['id']}/0/0/{tx:X}"
    )
    event = settled(service, hook, tx, "success")
    assert event.next_attempt_ns is None
    (attempt,) = event.attempts or ()
    assert attempt["success?"] is True
    assert attempt["status-code"] == 200
    assert attempt["response-text"] == "status 200"
    assert attempt["error-type"] is None
    assert attempt["attempt-at"].endswith("Z")


def test_failures_are_retried_on_the_schedule_with_the_same_idempotency_key(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 503])
    hook = create(app, url=receiver.url)
    tx = goal(app)
    deliveries = receiver.wait_for(3)
    event = settled(service, hook, tx, "success")
    assert [a["status-code"] for a in event.attempts or ()] == [500, 503, 200]
    assert [a["success?"] for a in event.attempts or ()] == [False, False, True]
    assert len({d.headers["idempotency-key"] for d in deliveries}) == 1
    for delivery in deliveries:
        verify(service, delivery)


def test_an_unreachable_receiver_records_a_connect_error(
    app: AppCredentials, service: WebhookService
) -> None:
    hook = create(app, url="http://127.0.0.1:9/nobody")
    tx = goal(app)
    event = wait_until(lambda: (e := event_of(service, hook, tx)) and e.attempts and e)
    attempt = event.attempts[0]
    assert attempt["success?"] is False
    assert attempt["status-code"] is None
    assert attempt["error-type"] == "connect"


def test_gives_up_after_max_attempts(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    service.configure(max_attempts=3)
    try:
        receiver.statuses.extend([500] * 5)
        hook = create(app, url=receiver.url)
        tx = goal(app)
        event = settled(service, hook, tx, "failed")
    finally:
        service.configure(max_attempts=11)
    assert len(event.attempts or ()) == 3
    assert len(receiver.deliveries) == 3


def test_410_fails_the_event_and_disables_the_webhook(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    receiver.statuses.append(410)
    hook = create(app, url=receiver.url)
    tx = goal(app)
    settled(service, hook, tx, "failed")
    row = request(app, "GET").json()["webhooks"][0]
    assert row["status"] == "disabled"
    assert row["disabled_reason"] == "Endpoint returned 410 status code."
    # Disabled: later transactions make no events and send nothing.
    later = goal(app)
    assert event_of(service, hook, later) is None
    assert len(receiver.deliveries) == 1


def test_a_webhook_disabled_before_a_retry_fails_the_event(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    service.configure(retry_schedule=(0.3,))
    try:
        receiver.statuses.append(500)
        hook = create(app, url=receiver.url)
        tx = goal(app)
        settled(service, hook, tx, "error")
        request(app, "POST", f"/{hook['id']}/disable", json={})
        event = settled(service, hook, tx, "failed")
    finally:
        service.configure(retry_schedule=FAST_RETRIES)
    last = (event.attempts or ())[-1]
    assert last["error-type"] == "disabled"
    assert last["error-message"] == "Webhook is disabled."
    assert last["duration-ms"] == 0
    assert len(receiver.deliveries) == 1


def test_resend_delivers_again_but_not_while_in_flight(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    hook = create(app, url=receiver.url)
    receiver.hold.clear()
    tx = goal(app)
    # The transaction returned while the receiver still holds the delivery.
    assert receiver.deliveries == []
    settled(service, hook, tx, "processing")
    busy = request(app, "POST", f"/{hook['id']}/events/0/0/{tx:X}", json={})
    assert busy.status_code == 400
    assert "Could not resend event. Try again in one minute." in busy.json()["message"]
    receiver.hold.set()
    settled(service, hook, tx, "success")
    resent = request(app, "POST", f"/{hook['id']}/events/0/0/{tx:X}", json={})
    assert resent.status_code == 200, resent.text
    assert resent.json()["event"]["status"] == "pending"
    first, second = receiver.wait_for(2)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    event = wait_until(
        lambda: (e := event_of(service, hook, tx)) and len(e.attempts or ()) == 2 and e
    )
    assert event.status == "success"


def test_only_matching_namespaces_and_actions_make_events(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    hook = create(app, url=receiver.url, namespaces=["goals"], actions=["update"])
    goal_id = str(uuid.uuid4())
    created = goal(app, goal_id=goal_id)
    other = transact(app, ["update", "todos", str(uuid.uuid4()), {"title": "t"}])
    updated = goal(app, "b", goal_id=goal_id)
    assert event_of(service, hook, created) is None
    assert event_of(service, hook, other) is None
    settled(service, hook, updated, "success")
    (delivery,) = receiver.wait_for(1)
    url = json.loads(delivery.body)["payloadUrl"]
    assert parse_isn(url.split("/webhooks/payload/")[1].split("/", 2)[2]) == updated


def test_pending_deliveries_resume_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    with LocalServer(data_dir=data) as first:
        service = service_for(first.instance)
        service.configure(retry_schedule=(0.5,))
        app = first.create_app(title="restart", schema=SCHEMA)
        receiver.statuses.append(500)
        hook = create(app, url=receiver.url)
        tx = goal(app)
        settled(service, hook, tx, "error")
    assert len(receiver.deliveries) == 1
    with LocalServer(data_dir=data) as second:
        again = service_for(second.instance)
        event = settled(again, hook, tx, "success")
    assert len(event.attempts or ()) == 2
    assert len(receiver.wait_for(2)) == 2
