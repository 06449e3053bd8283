"""Deliveries: the signed request, retries, 410, disabling, resend, restarts."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials, Instance
from instantdb_local.webhooks import (
    REAL_RETRY_SCHEDULE,
    RETRY_SCHEDULE_VARIABLE,
    DeliverySettings,
    WebhookService,
    service_for,
)
from instantdb_local.webhooks.delivery import send
from instantdb_local.webhooks.isn import parse_isn
from instantdb_local.webhooks.records import payload_key
from instantdb_local.webhooks.service import settings_from_environment
from instantdb_local.webhooks.store import Event, Webhook, iso_seconds
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


def test_a_receiver_url_with_credentials_gets_them_as_basic_auth(receiver: Receiver) -> None:
    url = receiver.url.replace("http://", "http://hook%20user:p%40ss@")
    attempt = send(url, b"{}", {"Content-Type": "application/json"}, 5.0)
    assert attempt["status-code"] == 200
    (delivery,) = receiver.wait_for(1)
    assert delivery.headers["authorization"] == "Basic " + base64.b64encode(
        b"hook user:p@ss"
    ).decode("ascii")
    assert delivery.path == "/hook"


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


# -- the retry schedule -------------------------------------------------------------------

# The real server's backoff by number of earlier attempts (live protocol §3.5): 1 min,
# 5 min, 30 min, 2 h, 5 h, 10 h, then 12 h for every later one; the 11th attempt fails.
SPEC_BACKOFF_SECONDS = (60, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 12 * 3600)
SPEC_MAX_ATTEMPTS = 11


def test_the_default_schedule_and_cap_are_the_real_servers() -> None:
    settings = DeliverySettings()
    assert settings.retry_schedule == REAL_RETRY_SCHEDULE == SPEC_BACKOFF_SECONDS
    assert settings.max_attempts == SPEC_MAX_ATTEMPTS
    for earlier in range(SPEC_MAX_ATTEMPTS + 3):
        expected = SPEC_BACKOFF_SECONDS[min(earlier, len(SPEC_BACKOFF_SECONDS) - 1)]
        assert settings.backoff(earlier) == expected


NOW_NS = 1_780_000_000_123_456_789  # an injected wall clock: no sleeping, no drift


def test_an_error_is_retried_after_exactly_the_scheduled_wait(
    tmp_path: Path, receiver: Receiver
) -> None:
    instance = Instance.open(tmp_path / "data")
    service = WebhookService(instance, clock=lambda: NOW_NS)  # not started: no worker
    try:
        hook = Webhook(
            str(uuid.uuid4()), "app", receiver.url, ("goals",), ("create",), "active", None, 0, 0
        )
        service.store.insert_webhook(hook)
        earlier_counts = [*range(len(SPEC_BACKOFF_SECONDS) + 2), SPEC_MAX_ATTEMPTS - 1]
        receiver.statuses.extend([500] * len(earlier_counts))
        for isn, earlier in enumerate(earlier_counts, start=1):
            service.store.record_transaction("app", isn, "[]", [hook.id], NOW_NS)
            past = tuple({"attempt": n} for n in range(earlier))
            service.deliver(Event(hook.id, "app", isn, "processing", past, None, None, 0, 0))
            event = service.store.event(hook.id, isn)
            assert event is not None
            assert len(event.attempts or ()) == earlier + 1
            assert (event.attempts or ())[-1]["status-code"] == 500
            if earlier + 1 >= SPEC_MAX_ATTEMPTS:
                assert (event.status, event.next_attempt_ns) == ("failed", None)
                continue
            wait = SPEC_BACKOFF_SECONDS[min(earlier, len(SPEC_BACKOFF_SECONDS) - 1)]
            assert event.status == "error"
            assert event.next_attempt_ns == NOW_NS + wait * 1_000_000_000
            assert event.to_json()["next_attempt_after"] == iso_seconds(
                NOW_NS + wait * 1_000_000_000
            )
        # Every attempt was signed at the injected time.
        stamps = {d.headers["instant-signature"].split(",")[0] for d in receiver.deliveries}
        assert stamps == {f"t={NOW_NS // 1_000_000_000}"}
    finally:
        service.stop()
        instance.close()


def test_the_schedule_variable_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETRY_SCHEDULE_VARIABLE, " 0.5, 2,10 ")
    settings = settings_from_environment()
    assert settings.retry_schedule == (0.5, 2.0, 10.0)
    assert settings.backoff(0) == 0.5
    assert settings.backoff(7) == 10.0
    assert settings.max_attempts == SPEC_MAX_ATTEMPTS  # only the waits change
    monkeypatch.delenv(RETRY_SCHEDULE_VARIABLE)
    assert settings_from_environment() == DeliverySettings()


@pytest.mark.parametrize("text", ["soon", "1,,2", "1;2", "-1,2", "nan", "1,inf"])
def test_a_bad_schedule_variable_falls_back_to_the_real_schedule_with_an_error(
    text: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(RETRY_SCHEDULE_VARIABLE, text)
    with caplog.at_level(logging.ERROR, logger="instantdb_local"):
        settings = settings_from_environment()
    assert settings.retry_schedule == SPEC_BACKOFF_SECONDS
    (record,) = [r for r in caplog.records if RETRY_SCHEDULE_VARIABLE in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert repr(text) in record.getMessage()
    assert "using the real schedule" in record.getMessage()


# -- a stalled receiver -------------------------------------------------------------------


def test_a_stalled_receiver_does_not_hold_up_transactions(
    app: AppCredentials, service: WebhookService, receiver: Receiver
) -> None:
    hook = create(app, url=receiver.url)
    receiver.hold.clear()  # the receiver takes each delivery and then blocks
    first = goal(app)
    settled(service, hook, first, "processing")  # its delivery is in flight, held
    later = [goal(app, f"later {n}") for n in range(8)]
    # Every transaction returned while the receiver still held the first delivery
    # (it only records a delivery once released), and each has its event.
    assert receiver.deliveries == []
    for tx in later:
        assert event_of(service, hook, tx) is not None
    receiver.hold.set()
    for tx in [first, *later]:
        settled(service, hook, tx, "success")
    delivered = receiver.wait_for(1 + len(later))
    keys = {d.headers["idempotency-key"] for d in delivered}
    assert keys == {payload_key(hook["id"], tx) for tx in [first, *later]}
