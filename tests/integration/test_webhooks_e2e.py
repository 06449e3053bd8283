"""Webhooks end to end: the SDK (both clients) manages webhooks on the local server, a
receiver on loopback gets the signed deliveries, and validate + fetch_payloads +
process_payload hand the right records to the handlers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from instantdb import AsyncInstant, Instant, InstantWebhookSignatureError
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.webhooks import service_for
from tests.local.webhooks.receiver import Delivery, Receiver, wait_until

SCHEMA = {"attrs": {"goals": {"title": {"type": "string"}}}, "links": {}}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        service_for(running.instance).configure(retry_schedule=(0.05,))
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


class Client:
    """Drives Instant or AsyncInstant with the same blocking calls."""

    def __init__(self, kind: str, app: AppCredentials) -> None:
        arguments = {"app_id": app.app_id, "admin_token": app.admin_token, "api_uri": app.api_uri}
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.db: Any = AsyncInstant(**arguments) if kind == "async" else Instant(**arguments)

    def __call__(self, target: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(target, method)(*args, **kwargs)
        return self.loop.run_until_complete(result) if self.loop is not None else result

    def transact(self, *chunks: Any) -> int:
        return int(self(self.db, "transact", list(chunks))["tx-id"])

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.db.aclose())
            self.loop.close()
        else:
            self.db.close()


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest, server: LocalServer) -> Iterator[Client]:
    made = Client(request.param, server.create_app(title="e2e", schema=SCHEMA))
    yield made
    made.close()


@pytest.fixture(params=["sync", "async"])
def localhost_client(request: pytest.FixtureRequest, server: LocalServer) -> Iterator[Client]:
    """A client that names the server ``localhost``; the server, bound to 127.0.0.1, puts
    ``http://127.0.0.1:PORT`` in every payloadUrl."""
    app = server.create_app(title="e2e localhost", schema=SCHEMA)
    assert app.api_uri.startswith("http://127.0.0.1:")
    named = dataclasses.replace(app, api_uri=app.api_uri.replace("127.0.0.1", "localhost"))
    made = Client(request.param, named)
    yield made
    made.close()


def isn_of(delivery: Delivery) -> str:
    url = json.loads(delivery.body)["payloadUrl"]
    return str(url.split("/webhooks/payload/")[1].split("/", 2)[2])


def receive(client: Client, delivery: Delivery, handlers: Any) -> dict[str, Any]:
    """What a receiver does with one delivery."""
    hooks = client.db.webhooks
    body = client(
        hooks,
        "validate",
        signature_header=delivery.headers["instant-signature"],
        body=delivery.body,
    )
    payload: dict[str, Any] = client(hooks, "fetch_payloads", body)
    client(hooks, "process_payload", handlers, payload)
    return payload


def test_create_update_delete_reach_the_handlers(client: Client, receiver: Receiver) -> None:
    manager = client.db.webhooks.manager
    hook = client(
        manager,
        "create",
        url=receiver.url,
        namespaces=["goals"],
        actions=["create", "update", "delete"],
    )
    goal = str(uuid.uuid4())
    tx_ids = [
        client.transact(client.db.tx.goals[goal].update({"title": "a"})),
        client.transact(client.db.tx.goals[goal].update({"title": "b"})),
        client.transact(client.db.tx.goals[goal].delete()),
    ]
    # Deliveries run concurrently; the ISN says which transaction each one is.
    deliveries = sorted(receiver.wait_for(3), key=lambda d: int(isn_of(d).split("/")[2], 16))
    seen: list[tuple[str, Any, Any]] = []
    handlers = {
        "goals": {
            "create": lambda r: seen.append(("create", r["before"], r["after"])),
            "$default": lambda r: seen.append((r["action"], r["before"], r["after"])),
        }
    }
    for delivery in deliveries:
        payload = receive(client, delivery, handlers)
        assert payload["idempotencyKey"] == delivery.headers["idempotency-key"]
    assert seen == [
        ("create", None, {"id": goal, "title": "a"}),
        ("update", {"id": goal, "title": "a"}, {"id": goal, "title": "b"}),
        ("delete", {"id": goal, "title": "b"}, None),
    ]
    assert [isn_of(d) for d in deliveries] == [f"0/0/{tx:X}" for tx in tx_ids]

    events = wait_until(
        lambda: (
            (page := client(manager, "list_events", hook["id"]))
            and all(e["status"] == "success" for e in page["events"])
            and page
        )
    )
    assert [e["isn"] for e in events["events"]] == [f"0/0/{tx:X}" for tx in reversed(tx_ids)]
    assert events["cursor"] is None
    # An int isn is the transaction's tx-id.
    event = client(manager, "get_event", hook["id"], isn=tx_ids[0])
    assert event["attempts"][0]["success"] is True
    assert event["attempts"][0]["statusCode"] == 200
    payload = client(manager, "get_payload", hook["id"], isn=tx_ids[1])
    assert [r["action"] for r in payload["data"]] == ["update"]


def test_tampered_and_replayed_deliveries_are_rejected(client: Client, receiver: Receiver) -> None:
    client(
        client.db.webhooks.manager,
        "create",
        url=receiver.url,
        namespaces=["goals"],
        actions=["create"],
    )
    client.transact(client.db.tx.goals[str(uuid.uuid4())].update({"title": "x"}))
    (delivery,) = receiver.wait_for(1)
    header = delivery.headers["instant-signature"]
    hooks = client.db.webhooks
    tampered = delivery.body.replace(b'"token":"', b'"token":"x')
    with pytest.raises(InstantWebhookSignatureError, match="did not validate"):
        client(hooks, "validate", signature_header=header, body=tampered)
    signed_at = int(header.split(",")[0].removeprefix("t="))
    with pytest.raises(InstantWebhookSignatureError, match="too old"):
        client(
            hooks,
            "validate",
            signature_header=header,
            body=delivery.body,
            received_at=signed_at + 301,
        )
    assert client(hooks, "validate", signature_header=header, body=delivery.body)["token"]


def test_retries_resend_disable_and_410(client: Client, receiver: Receiver) -> None:
    manager = client.db.webhooks.manager
    receiver.statuses.append(500)
    hook = client(manager, "create", url=receiver.url, namespaces=["goals"], actions=["create"])
    tx = client.transact(client.db.tx.goals[str(uuid.uuid4())].update({"title": "x"}))
    event = wait_until(
        lambda: (e := client(manager, "get_event", hook["id"], isn=tx))["status"] == "success" and e
    )
    assert [a["statusCode"] for a in event["attempts"]] == [500, 200]
    assert len(receiver.wait_for(2)) == 2

    resent = client(manager, "resend_event", hook["id"], isn=f"0/0/{tx:X}")
    assert resent["status"] in ("pending", "processing", "success")
    assert len(receiver.wait_for(3)) == 3

    client(manager, "disable", hook["id"], reason="quiet")
    client.transact(client.db.tx.goals[str(uuid.uuid4())].update({"title": "y"}))
    assert len(client(manager, "list_events", hook["id"])["events"]) == 1

    client(manager, "enable", hook["id"])
    receiver.statuses.append(410)
    client.transact(client.db.tx.goals[str(uuid.uuid4())].update({"title": "z"}))
    gone = wait_until(lambda: (h := client(manager, "list")[0])["status"] == "disabled" and h)
    assert gone["disabledReason"] == "Endpoint returned 410 status code."
    assert client(manager, "delete", hook["id"])["id"] == hook["id"]
    assert client(manager, "list") == []


def test_a_client_naming_the_server_localhost_fetches_payloads(
    localhost_client: Client, receiver: Receiver
) -> None:
    client = localhost_client
    client(
        client.db.webhooks.manager,
        "create",
        url=receiver.url,
        namespaces=["goals"],
        actions=["create"],
    )
    goal = str(uuid.uuid4())
    client.transact(client.db.tx.goals[goal].update({"title": "local"}))
    (delivery,) = receiver.wait_for(1)
    assert json.loads(delivery.body)["payloadUrl"].startswith("http://127.0.0.1:")
    seen: list[Any] = []
    payload = receive(client, delivery, {"goals": {"create": lambda r: seen.append(r["after"])}})
    assert payload["idempotencyKey"] == delivery.headers["idempotency-key"]
    assert seen == [{"id": goal, "title": "local"}]
