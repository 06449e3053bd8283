"""Receiving Instant webhooks without a client: for receivers that hold no admin token.

::

    from instantdb import webhooks

    body = webhooks.validate(signature_header=request.headers["Instant-Signature"],
                             body=raw_body_bytes)          # InstantWebhookSignatureError if forged
    payload = webhooks.fetch_payloads(body)                # {"data": [record, ...], ...}
    webhooks.process_payload({"goals": {"create": on_goal_create}}, payload)

``api_uri`` is the Instant API that sends the deliveries (default: ``INSTANT_API_URI``,
else ``https://api.instantdb.com``); signing keys are fetched from it and payloads only
from it. ``http_client`` lends an ``httpx.Client`` (``httpx.AsyncClient`` for the
``*_async`` functions) to reuse connections; it is never closed here. The same three
steps exist on every client as ``db.webhooks.validate/fetch_payloads/process_payload``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from ._protocol._call import Call
from ._protocol.webhooks import (
    DEFAULT_MAX_AGE_SECONDS,
    Handler,
    Handlers,
    InstantWebhookError,
    InstantWebhookSignatureError,
    WebhookBody,
)
from ._settings import DEFAULT_TIMEOUT
from ._transport import AsyncTransport, SyncTransport
from ._webhooks import (
    AsyncWebhookManager,
    AsyncWebhooks,
    WebhookManager,
    Webhooks,
    receiver_settings,
)
from ._webhooks import fetch_payloads_async as _fetch_payloads_async
from ._webhooks import fetch_payloads_sync as _fetch_payloads_sync
from ._webhooks import process_payload_async as _process_payload_async
from ._webhooks import process_payload_sync as _process_payload_sync
from ._webhooks import validate_async as _validate_async
from ._webhooks import validate_sync as _validate_sync

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS",
    "AsyncWebhookManager",
    "AsyncWebhooks",
    "Handler",
    "Handlers",
    "InstantWebhookError",
    "InstantWebhookSignatureError",
    "WebhookBody",
    "WebhookManager",
    "Webhooks",
    "fetch_payloads",
    "fetch_payloads_async",
    "process_payload",
    "process_payload_async",
    "validate",
    "validate_async",
]

T = TypeVar("T")


class _Sender:
    """Runs calls on a transport made on first use (a bundled or cached key needs none)."""

    def __init__(
        self, api_uri: str | None, http_client: httpx.Client | None, timeout: float | httpx.Timeout
    ) -> None:
        self.settings = receiver_settings(api_uri, timeout)
        self._http_client = http_client
        self._transport: SyncTransport | None = None

    def run(self, call: Call[T]) -> T:
        if self._transport is None:
            self._transport = SyncTransport(self.settings, http_client=self._http_client)
        return self._transport.run(call)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _AsyncSender:
    """`_Sender` for asyncio."""

    def __init__(
        self,
        api_uri: str | None,
        http_client: httpx.AsyncClient | None,
        timeout: float | httpx.Timeout,
    ) -> None:
        self.settings = receiver_settings(api_uri, timeout)
        self._http_client = http_client
        self._transport: AsyncTransport | None = None

    async def run(self, call: Call[T]) -> T:
        if self._transport is None:
            self._transport = AsyncTransport(self.settings, http_client=self._http_client)
        return await self._transport.run(call)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def validate(
    *,
    signature_header: str,
    body: bytes | str,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    received_at: float | Any = None,
    api_uri: str | None = None,
    http_client: httpx.Client | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
) -> WebhookBody:
    """Check a delivery's ``Instant-Signature`` header against its raw body.

    Returns the signed ``{"payloadUrl", "token"}``. Raises `InstantWebhookSignatureError`
    if the header is malformed, names a key ``api_uri`` does not publish, the signature
    does not match ``body`` byte for byte, or the timestamp is more than
    ``max_age_seconds`` before or after now (or ``received_at``: unix seconds or an aware
    datetime). Keys are fetched from ``{api_uri}/.well-known/webhooks/jwks.json`` on first
    use and cached for the process.
    """
    sender = _Sender(api_uri, http_client, timeout)
    try:
        return _validate_sync(
            sender.run,
            sender.settings.api_uri,
            signature_header,
            body,
            max_age_seconds,
            received_at,
        )
    finally:
        sender.close()


def fetch_payloads(
    webhook_body: WebhookBody,
    *,
    api_uri: str | None = None,
    http_client: httpx.Client | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Fetch a validated delivery's records: ``{"data": [record, ...], "idempotencyKey"}``.

    The token is sent only if ``payloadUrl`` is on ``api_uri``'s scheme, host and port
    (``localhost``, ``127.x.y.z`` and ``[::1]`` count as one host), and then to
    ``api_uri``'s host; anything else raises `instantdb.InstantValueError` before any
    request.
    """
    sender = _Sender(api_uri, http_client, timeout)
    try:
        return _fetch_payloads_sync(sender.run, sender.settings.api_uri, webhook_body)
    finally:
        sender.close()


def process_payload(handlers: Handlers, payload: dict[str, Any]) -> None:
    """Call the most specific handler for each record, in order.

    ``handlers[namespace][action]``, else ``handlers[namespace]["$default"]``, else
    ``handlers["$default"]``; records with none are skipped. Handlers must be plain
    functions (an ``async def`` is refused before any runs: use `process_payload_async`).
    The first exception a handler raises stops the rest and propagates.
    """
    _process_payload_sync(handlers, payload)


async def validate_async(
    *,
    signature_header: str,
    body: bytes | str,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    received_at: float | Any = None,
    api_uri: str | None = None,
    http_client: httpx.AsyncClient | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
) -> WebhookBody:
    """`validate` for asyncio."""
    sender = _AsyncSender(api_uri, http_client, timeout)
    try:
        return await _validate_async(
            sender.run,
            sender.settings.api_uri,
            signature_header,
            body,
            max_age_seconds,
            received_at,
        )
    finally:
        await sender.aclose()


async def fetch_payloads_async(
    webhook_body: WebhookBody,
    *,
    api_uri: str | None = None,
    http_client: httpx.AsyncClient | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """`fetch_payloads` for asyncio."""
    sender = _AsyncSender(api_uri, http_client, timeout)
    try:
        return await _fetch_payloads_async(sender.run, sender.settings.api_uri, webhook_body)
    finally:
        await sender.aclose()


async def process_payload_async(handlers: Handlers, payload: dict[str, Any]) -> None:
    """`process_payload` for asyncio: ``async def`` handlers are awaited, plain ones
    called, one record after the other."""
    await _process_payload_async(handlers, payload)
