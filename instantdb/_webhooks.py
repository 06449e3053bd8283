"""``db.webhooks`` for both clients: the manager, and receiving (validate, fetch, dispatch).

Everything decided here is decided in `instantdb._protocol.webhooks`; this module only
sends the manager's calls, fetches the JWKS and the payload, and calls the handlers. The
receive steps are functions of a ``run`` callable so that the standalone functions of
`instantdb.webhooks` share them with the clients.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

from ._errors import InstantTypeError
from ._protocol import webhooks as protocol
from ._protocol._call import Call, Request, Response
from ._protocol._responses import json_object
from ._protocol.webhooks import Handlers, WebhookBody
from ._retry import RetrySafety
from ._settings import DEFAULT_TIMEOUT, Settings, resolve_settings
from ._transport import AsyncTransport, SyncTransport

__all__ = [
    "AsyncWebhookManager",
    "AsyncWebhooks",
    "WebhookManager",
    "Webhooks",
    "receiver_settings",
]

T = TypeVar("T")
Webhook = dict[str, Any]
WebhookList = list[Webhook]
SyncRun = Callable[[Call[Any]], Any]
AsyncRun = Callable[[Call[Any]], Awaitable[Any]]

# Receivers need no app: this placeholder satisfies Settings and is never sent (the
# JWKS and payload requests carry no app-id).
_RECEIVER_APP_ID = "webhook-receiver"


def receiver_settings(
    api_uri: str | None, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, retry: bool = True
) -> Settings:
    """Settings for the standalone receive functions (``api_uri`` as clients resolve it)."""
    return resolve_settings(
        app_id=_RECEIVER_APP_ID, admin_token="", api_uri=api_uri, timeout=timeout, retry=retry
    )


# -- receive steps, shared by the clients and instantdb.webhooks ------------------------------


def _jwks_call(api_uri: str) -> Call[dict[str, bytes]]:
    request = protocol.jwks_request(api_uri)

    def parse(response: Response) -> dict[str, bytes]:
        return protocol.parse_jwks(response, request)

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def _payload_call(api_uri: str, webhook_body: object) -> Call[dict[str, Any]]:
    request: Request = protocol.payload_request(api_uri, webhook_body)

    def parse(response: Response) -> dict[str, Any]:
        return protocol.parse_payload(json_object(response, request))

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def _known_key(api_uri: str, kid: str) -> bytes | None:
    return protocol.bundled_key(api_uri, kid) or protocol.JWKS_CACHE.key(api_uri, kid)


def validate_sync(
    run: SyncRun,
    api_uri: str,
    signature_header: object,
    body: object,
    max_age_seconds: float,
    received_at: object,
) -> WebhookBody:
    delivery = protocol.read_signed_delivery(
        signature_header,
        body,
        max_age_seconds=max_age_seconds,
        received_at=received_at,
        now=time.time(),
    )
    key = _known_key(api_uri, delivery.kid)
    if key is None and protocol.JWKS_CACHE.may_fetch(api_uri):
        protocol.JWKS_CACHE.store(api_uri, run(_jwks_call(api_uri)))
        key = protocol.JWKS_CACHE.key(api_uri, delivery.kid)
    if key is None:
        raise protocol.unknown_kid(api_uri, delivery.kid)
    protocol.verify_signature(delivery, key)
    return protocol.webhook_body(delivery)


async def validate_async(
    run: AsyncRun,
    api_uri: str,
    signature_header: object,
    body: object,
    max_age_seconds: float,
    received_at: object,
) -> WebhookBody:
    delivery = protocol.read_signed_delivery(
        signature_header,
        body,
        max_age_seconds=max_age_seconds,
        received_at=received_at,
        now=time.time(),
    )
    key = _known_key(api_uri, delivery.kid)
    if key is None and protocol.JWKS_CACHE.may_fetch(api_uri):
        protocol.JWKS_CACHE.store(api_uri, await run(_jwks_call(api_uri)))
        key = protocol.JWKS_CACHE.key(api_uri, delivery.kid)
    if key is None:
        raise protocol.unknown_kid(api_uri, delivery.kid)
    protocol.verify_signature(delivery, key)
    return protocol.webhook_body(delivery)


def fetch_payloads_sync(run: SyncRun, api_uri: str, webhook_body: object) -> dict[str, Any]:
    result: dict[str, Any] = run(_payload_call(api_uri, webhook_body))
    return result


async def fetch_payloads_async(run: AsyncRun, api_uri: str, webhook_body: object) -> dict[str, Any]:
    result: dict[str, Any] = await run(_payload_call(api_uri, webhook_body))
    return result


def process_payload_sync(handlers: object, payload: object) -> None:
    checked = protocol.check_handlers(handlers, allow_async=False)
    for record in protocol.payload_records(payload):
        handler = protocol.handler_for(checked, record)
        if handler is None:
            continue
        result = handler(record)
        if inspect.isawaitable(result):
            # A plain function that returned a coroutine: it would never run.
            if inspect.iscoroutine(result):
                result.close()
            raise InstantTypeError(
                f"the handler for {record['namespace']}.{record['action']} returned an "
                "awaitable, which the blocking client cannot await: use AsyncInstant (or "
                "instantdb.webhooks.process_payload_async) for async handlers"
            )


async def process_payload_async(handlers: object, payload: object) -> None:
    checked = protocol.check_handlers(handlers, allow_async=True)
    for record in protocol.payload_records(payload):
        handler = protocol.handler_for(checked, record)
        if handler is None:
            continue
        result = handler(record)
        if inspect.isawaitable(result):
            await result


# -- the manager --------------------------------------------------------------------------


class WebhookManager:
    """Create, inspect and change webhooks (blocking). Needs the admin token; always runs
    as admin, also on an ``as_user`` client."""

    def __init__(self, settings: Settings, transport: SyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    def create(self, *, url: str, namespaces: Sequence[str], actions: Sequence[str]) -> Webhook:
        """A new active webhook for changes (``actions``) to ``namespaces``, sent to ``url``."""
        call = protocol.create_call(self._settings, url, namespaces, actions)
        return self._transport.run(call)

    def list(self) -> WebhookList:
        """Every webhook of the app, newest first."""
        return self._transport.run(protocol.list_call(self._settings))

    def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        namespaces: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
    ) -> Webhook:
        """Change the given fields only; the status stays as it is."""
        call = protocol.update_call(self._settings, webhook_id, url, namespaces, actions)
        return self._transport.run(call)

    def delete(self, webhook_id: str) -> Webhook:
        """Delete a webhook; returns it as it was."""
        return self._transport.run(protocol.delete_call(self._settings, webhook_id))

    def enable(self, webhook_id: str) -> Webhook:
        """Make a webhook active again (no events are backfilled)."""
        return self._transport.run(protocol.enable_call(self._settings, webhook_id))

    def disable(self, webhook_id: str, *, reason: str | None = None) -> Webhook:
        """Stop a webhook: no events are created while it is disabled."""
        return self._transport.run(protocol.disable_call(self._settings, webhook_id, reason))

    def list_events(self, webhook_id: str, *, after: str | None = None) -> dict[str, Any]:
        """One page of events, newest first: ``{"events", "pageInfo", "cursor"}``.

        Pass ``after=page["cursor"]`` for the next page; ``cursor`` is None on the last.
        """
        return self._transport.run(protocol.list_events_call(self._settings, webhook_id, after))

    def get_event(self, webhook_id: str, *, isn: str | int) -> dict[str, Any]:
        """One event and its delivery attempts."""
        return self._transport.run(protocol.get_event_call(self._settings, webhook_id, isn))

    def resend_event(self, webhook_id: str, *, isn: str | int) -> dict[str, Any]:
        """Queue an event for delivery again; returns it (now ``pending``)."""
        return self._transport.run(protocol.resend_event_call(self._settings, webhook_id, isn))

    def get_payload(self, webhook_id: str, *, isn: str | int) -> dict[str, Any]:
        """The records of an event: ``{"data": [record, ...], "idempotencyKey"}``."""
        return self._transport.run(protocol.get_payload_call(self._settings, webhook_id, isn))


class AsyncWebhookManager:
    """Create, inspect and change webhooks (asyncio); the same methods as `WebhookManager`."""

    def __init__(self, settings: Settings, transport: AsyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    async def create(
        self, *, url: str, namespaces: Sequence[str], actions: Sequence[str]
    ) -> Webhook:
        """A new active webhook for changes (``actions``) to ``namespaces``, sent to ``url``."""
        call = protocol.create_call(self._settings, url, namespaces, actions)
        return await self._transport.run(call)

    async def list(self) -> WebhookList:
        """Every webhook of the app, newest first."""
        return await self._transport.run(protocol.list_call(self._settings))

    async def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        namespaces: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
    ) -> Webhook:
        """Change the given fields only; the status stays as it is."""
        call = protocol.update_call(self._settings, webhook_id, url, namespaces, actions)
        return await self._transport.run(call)

    async def delete(self, webhook_id: str) -> Webhook:
        """Delete a webhook; returns it as it was."""
        return await self._transport.run(protocol.delete_call(self._settings, webhook_id))

    async def enable(self, webhook_id: str) -> Webhook:
        """Make a webhook active again (no events are backfilled)."""
        return await self._transport.run(protocol.enable_call(self._settings, webhook_id))

    async def disable(self, webhook_id: str, *, reason: str | None = None) -> Webhook:
        """Stop a webhook: no events are created while it is disabled."""
        call = protocol.disable_call(self._settings, webhook_id, reason)
        return await self._transport.run(call)

    async def list_events(self, webhook_id: str, *, after: str | None = None) -> dict[str, Any]:
        """One page of events, newest first: ``{"events", "pageInfo", "cursor"}``."""
        call = protocol.list_events_call(self._settings, webhook_id, after)
        return await self._transport.run(call)

    async def get_event(self, webhook_id: str, *, isn: str | int) -> dict[str, Any]:
        """One event and its delivery attempts."""
        call = protocol.get_event_call(self._settings, webhook_id, isn)
        return await self._transport.run(call)

    async def resend_event(self, webhook_id: str, *, isn: str | int) -> dict[str, Any]:
        """Queue an event for delivery again; returns it (now ``pending``)."""
        call = protocol.resend_event_call(self._settings, webhook_id, isn)
        return await self._transport.run(call)

    async def get_payload(self, webhook_id: str, *, isn: str | int) -> dict[str, Any]:
        """The records of an event: ``{"data": [record, ...], "idempotencyKey"}``."""
        call = protocol.get_payload_call(self._settings, webhook_id, isn)
        return await self._transport.run(call)


# -- db.webhooks ------------------------------------------------------------------------------


class Webhooks:
    """``db.webhooks`` (blocking): ``manager``, and receiving deliveries."""

    def __init__(self, settings: Settings, transport: SyncTransport) -> None:
        self._settings = settings
        self._transport = transport
        self._manager = WebhookManager(settings, transport)

    @property
    def manager(self) -> WebhookManager:
        """Create, list, change and delete webhooks; inspect and resend their events."""
        return self._manager

    def validate(
        self,
        *,
        signature_header: str,
        body: bytes | str,
        max_age_seconds: float = protocol.DEFAULT_MAX_AGE_SECONDS,
        received_at: float | Any = None,
    ) -> WebhookBody:
        """Check a delivery's ``Instant-Signature`` against its raw body; return the body.

        Raises `InstantWebhookSignatureError` when the delivery is not proven to come from
        this client's Instant server within ``max_age_seconds`` (either way) of now (or
        of ``received_at``: unix seconds or an aware datetime).
        """
        return validate_sync(
            self._transport.run,
            self._settings.api_uri,
            signature_header,
            body,
            max_age_seconds,
            received_at,
        )

    def fetch_payloads(self, webhook_body: WebhookBody) -> dict[str, Any]:
        """Exchange a validated body for its records: ``{"data": [...], "idempotencyKey"}``.

        The token is only ever sent to this client's ``api_uri`` host.
        """
        return fetch_payloads_sync(self._transport.run, self._settings.api_uri, webhook_body)

    def process_payload(self, handlers: Handlers, payload: dict[str, Any]) -> None:
        """Call the most specific handler for each record, in order (plain functions only)."""
        process_payload_sync(handlers, payload)


class AsyncWebhooks:
    """``db.webhooks`` (asyncio): ``manager``, and receiving deliveries."""

    def __init__(self, settings: Settings, transport: AsyncTransport) -> None:
        self._settings = settings
        self._transport = transport
        self._manager = AsyncWebhookManager(settings, transport)

    @property
    def manager(self) -> AsyncWebhookManager:
        """Create, list, change and delete webhooks; inspect and resend their events."""
        return self._manager

    async def validate(
        self,
        *,
        signature_header: str,
        body: bytes | str,
        max_age_seconds: float = protocol.DEFAULT_MAX_AGE_SECONDS,
        received_at: float | Any = None,
    ) -> WebhookBody:
        """Check a delivery's ``Instant-Signature`` against its raw body; return the body."""
        return await validate_async(
            self._transport.run,
            self._settings.api_uri,
            signature_header,
            body,
            max_age_seconds,
            received_at,
        )

    async def fetch_payloads(self, webhook_body: WebhookBody) -> dict[str, Any]:
        """Exchange a validated body for its records (only from this client's host)."""
        return await fetch_payloads_async(self._transport.run, self._settings.api_uri, webhook_body)

    async def process_payload(self, handlers: Handlers, payload: dict[str, Any]) -> None:
        """Call the most specific handler for each record, in order; async handlers are
        awaited, plain ones called."""
        await process_payload_async(handlers, payload)
