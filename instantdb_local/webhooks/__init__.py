"""Webhooks on the local server: events from transactions, signed deliveries, the
manager, payload and JWKS routes (live protocol §3).

Layout: `isn` (sequence numbers), `records` (what an event carries, idempotency keys),
`signing` (Ed25519 key, signatures, JWTs, JWKS), `cursor` (events-page cursors), `store`
(the webhooks database), `delivery` (attempts and the background worker), `service`
(ties them to an `Instance`).
"""

from __future__ import annotations

from .delivery import REAL_RETRY_SCHEDULE, DeliverySettings
from .service import RETRY_SCHEDULE_VARIABLE, WebhookService, service_for
from .signing import SigningKey

__all__ = [
    "REAL_RETRY_SCHEDULE",
    "RETRY_SCHEDULE_VARIABLE",
    "DeliverySettings",
    "SigningKey",
    "WebhookService",
    "service_for",
]
