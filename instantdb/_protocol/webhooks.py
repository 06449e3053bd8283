"""Webhooks (wire protocol §12-13): the manager's requests and rows, and everything a
receiver decides without I/O: the ``Instant-Signature`` header, the signed message, the
timestamp window, JWKS keys and their cache, the body, payload fetches and the order in
which handlers are picked.

The shells (`instantdb._webhooks`, `instantdb.webhooks`) only add the two fetches (JWKS,
payload) and the calls to the handlers.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import ipaddress
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

from instantdb._arguments import required_text, short_repr
from instantdb._errors import InstantError, InstantTypeError, InstantValueError
from instantdb._json import dumps
from instantdb._retry import RetrySafety
from instantdb._settings import Settings

from ._call import USER_AGENT, Call, Request, Response, admin_only_headers
from ._responses import json_body, json_object

__all__ = [
    "ACTIONS",
    "DEFAULT_MAX_AGE_SECONDS",
    "PRODUCTION_API_URI",
    "Handler",
    "Handlers",
    "InstantWebhookError",
    "InstantWebhookSignatureError",
    "JwksCache",
    "SignedDelivery",
    "WebhookBody",
    "check_handlers",
    "create_call",
    "delete_call",
    "disable_call",
    "enable_call",
    "get_event_call",
    "get_payload_call",
    "handler_for",
    "isn_text",
    "jwks_request",
    "list_call",
    "list_events_call",
    "parse_jwks",
    "parse_payload",
    "payload_records",
    "payload_request",
    "read_signed_delivery",
    "resend_event_call",
    "same_payload_origin",
    "update_call",
    "verify_signature",
    "webhook_body",
]

ACTIONS = ("create", "update", "delete")
DEFAULT_MAX_AGE_SECONDS = 300
PRODUCTION_API_URI = "https://api.instantdb.com"
JWKS_PATH = "/.well-known/webhooks/jwks.json"

# Instant's production signing key (wire protocol §13.2): bundled so that validating a
# production delivery needs no JWKS fetch. Only for exactly this origin.
_BUNDLED_KEYS: dict[tuple[str, str], str] = {
    ("https://api.instantdb.com", "1034696293"): "N-C41432STKAKkXAWmeIOXMnZcGRR1b9u1L3bTVqI_o",
}

# An ISN on the wire: slot / LSN high 32 bits / LSN low 32 bits, in hex.
_ISN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")
_DIGITS = re.compile(r"[0-9]{1,15}")
_MAX_LSN = 2**63 - 1


class InstantWebhookError(InstantError):
    """A webhook delivery could not be used: its JWKS, its body or its payload was not
    what Instant sends."""


class InstantWebhookSignatureError(InstantWebhookError):
    """A webhook delivery is not proven to come from Instant: the ``Instant-Signature``
    header is missing or malformed, names an unknown key, is outside the time window, or
    its signature does not match the body. Answer such requests with 400 or 401."""


class WebhookBody(TypedDict):
    """The signed body of a delivery: where to fetch the records, and the token to use."""

    payloadUrl: str
    token: str


Handler = Callable[[dict[str, Any]], Any]
Handlers = Mapping[str, Any]
"""``{namespace: {action: handler, "$default": handler}, "$default": handler}``."""


# -- the manager ----------------------------------------------------------------------------


def list_call(settings: Settings) -> Call[list[dict[str, Any]]]:
    """``GET /dash/apps/{app}/webhooks``: every webhook of the app, newest first."""
    request = _manager_request(settings, "GET", "", "list")

    def parse(response: Response) -> list[dict[str, Any]]:
        rows = json_object(response, request).get("webhooks")
        return [_webhook_row(row) for row in _list_of_rows(rows, "webhooks", response)]

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def create_call(
    settings: Settings, url: str, namespaces: Sequence[str], actions: Sequence[str]
) -> Call[dict[str, Any]]:
    """``POST /dash/apps/{app}/webhooks``: a new active webhook."""
    body = {
        "url": _sink_url(url, "create"),
        "namespaces": _namespaces(namespaces, "create"),
        "actions": _actions(actions, "create"),
    }
    request = _manager_request(settings, "POST", "", "create", body)
    return Call(request, _webhook_parser(request), RetrySafety.UNSENT_ONLY)


def update_call(
    settings: Settings,
    webhook_id: str,
    url: str | None,
    namespaces: Sequence[str] | None,
    actions: Sequence[str] | None,
) -> Call[dict[str, Any]]:
    """``POST /dash/apps/{app}/webhooks/{id}``: a patch of the given fields only."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = _sink_url(url, "update")
    if namespaces is not None:
        body["namespaces"] = _namespaces(namespaces, "update")
    if actions is not None:
        body["actions"] = _actions(actions, "update")
    if not body:
        raise InstantValueError(
            "update() needs at least one of url=, namespaces= or actions= (use enable() "
            "or disable() to change the status)"
        )
    path = "/" + _webhook_id(webhook_id, "update")
    request = _manager_request(settings, "POST", path, "update", body)
    # Applying the same patch twice leaves the same webhook.
    return Call(request, _webhook_parser(request), RetrySafety.IDEMPOTENT)


def delete_call(settings: Settings, webhook_id: str) -> Call[dict[str, Any]]:
    """``DELETE /dash/apps/{app}/webhooks/{id}``: the webhook as it was before deletion."""
    path = "/" + _webhook_id(webhook_id, "delete")
    request = _manager_request(settings, "DELETE", path, "delete")
    # A second delete would answer record-not-found for a webhook the first one removed.
    return Call(request, _webhook_parser(request), RetrySafety.UNSENT_ONLY)


def enable_call(settings: Settings, webhook_id: str) -> Call[dict[str, Any]]:
    """``POST .../{id}/enable``: status ``active``, no disabled reason."""
    path = f"/{_webhook_id(webhook_id, 'enable')}/enable"
    request = _manager_request(settings, "POST", path, "enable", {})
    return Call(request, _webhook_parser(request), RetrySafety.IDEMPOTENT)


def disable_call(settings: Settings, webhook_id: str, reason: str | None) -> Call[dict[str, Any]]:
    """``POST .../{id}/disable``: status ``disabled``, with ``reason`` if given."""
    path = f"/{_webhook_id(webhook_id, 'disable')}/disable"
    body: dict[str, Any] = {}
    if reason is not None:
        if not isinstance(reason, str):
            raise InstantTypeError(f"disable(): reason must be a str, got {type(reason).__name__}")
        body["reason"] = reason
    request = _manager_request(settings, "POST", path, "disable", body)
    return Call(request, _webhook_parser(request), RetrySafety.IDEMPOTENT)


def list_events_call(
    settings: Settings, webhook_id: str, after: str | None
) -> Call[dict[str, Any]]:
    """``GET .../{id}/events[?after=<cursor>]``: one page of 100 events, newest first.

    The page is ``{"events", "pageInfo": {"startCursor", "endCursor", "hasNextPage"},
    "cursor"}``; ``cursor`` is the ``after=`` of the next page, None on the last page.
    """
    path = f"/{_webhook_id(webhook_id, 'list_events')}/events"
    params: tuple[tuple[str, str], ...] = ()
    if after is not None:
        if not isinstance(after, str):
            raise InstantTypeError(
                f"list_events(): after must be the str cursor of the previous page, "
                f"got {type(after).__name__}"
            )
        if after:
            params = (("after", after),)
    request = _manager_request(settings, "GET", path, "list_events", params=params)

    def parse(response: Response) -> dict[str, Any]:
        body = json_object(response, request)
        rows = _list_of_rows(body.get("events"), "events", response)
        info = body.get("pageInfo")
        info = info if isinstance(info, dict) else {}
        page_info = {
            "startCursor": info.get("startCursor"),
            "endCursor": info.get("endCursor"),
            "hasNextPage": bool(info.get("hasNextPage")),
        }
        more = page_info["hasNextPage"] and isinstance(page_info["endCursor"], str)
        return {
            "events": [_event_row(row) for row in rows],
            "pageInfo": page_info,
            "cursor": page_info["endCursor"] if more else None,
        }

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def get_event_call(settings: Settings, webhook_id: str, isn: str | int) -> Call[dict[str, Any]]:
    """``GET .../{id}/events/{isn}``: one event with its attempts."""
    path = f"/{_webhook_id(webhook_id, 'get_event')}/events/{isn_text(isn, 'get_event')}"
    request = _manager_request(settings, "GET", path, "get_event")
    return Call(request, _event_parser(request), RetrySafety.IDEMPOTENT)


def resend_event_call(settings: Settings, webhook_id: str, isn: str | int) -> Call[dict[str, Any]]:
    """``POST .../{id}/events/{isn}``: queue the event for delivery again."""
    path = f"/{_webhook_id(webhook_id, 'resend_event')}/events/{isn_text(isn, 'resend_event')}"
    request = _manager_request(settings, "POST", path, "resend_event", {})
    # A second resend of a delivered event would send it a third time.
    return Call(request, _event_parser(request), RetrySafety.UNSENT_ONLY)


def get_payload_call(settings: Settings, webhook_id: str, isn: str | int) -> Call[dict[str, Any]]:
    """``GET /webhooks/payload/{app}/{id}/{isn}`` as admin: the records of one event."""
    webhook = _webhook_id(webhook_id, "get_payload")
    path = f"/webhooks/payload/{settings.app_id}/{webhook}/{isn_text(isn, 'get_payload')}"
    headers = admin_only_headers(settings, "db.webhooks.manager.get_payload()")
    request = Request(method="GET", path=path, headers=headers, secrets=settings.secrets)

    def parse(response: Response) -> dict[str, Any]:
        return parse_payload(json_object(response, request))

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def isn_text(isn: object, method: str = "isn") -> str:
    """An ISN as the server's routes take it: ``"0/328/5307A1A0"``.

    An ``int`` n stands for the LSN n of slot 0, i.e. ``"0/{n >> 32:X}/{n & 0xFFFFFFFF:X}"``;
    on the local server that is the event of transaction ``tx-id`` n.
    """
    if isinstance(isn, bool) or not isinstance(isn, (str, int)):
        raise InstantTypeError(
            f"{method}(): isn must be a str like '0/328/5307A1A0' or an int, "
            f"got {type(isn).__name__}"
        )
    if isinstance(isn, int):
        if not 0 <= isn <= _MAX_LSN:
            raise InstantValueError(f"{method}(): isn must be between 0 and 2**63 - 1, got {isn}")
        return f"0/{isn >> 32:X}/{isn & 0xFFFFFFFF:X}"
    text = isn.strip()
    if not _ISN.fullmatch(text):
        raise InstantValueError(
            f"{method}(): isn must look like '0/328/5307A1A0' (three hex numbers, as in an "
            f"event's 'isn'), or be an int; got {short_repr(isn)}"
        )
    return text


def _manager_request(
    settings: Settings,
    method: str,
    path: str,
    what: str,
    body: Any = None,
    *,
    params: tuple[tuple[str, str], ...] = (),
) -> Request:
    # Manager routes always run as admin (never with an as_user identity, which the
    # official SDK sent along), and carry no app_id query parameter.
    headers = admin_only_headers(settings, f"db.webhooks.manager.{what}()")
    return Request(
        method=method,
        path=f"/dash/apps/{settings.app_id}/webhooks{path}",
        params=params,
        headers=headers,
        content=None if body is None else dumps(body),
        secrets=settings.secrets,
    )


def _webhook_id(value: object, method: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    text = required_text(value, f"{method}(): webhook_id")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InstantValueError(
            f"{method}(): webhook_id must be a webhook's id (a UUID, as in webhook['id']), "
            f"got {short_repr(value)}"
        ) from None


def _sink_url(value: object, method: str) -> str:
    url = required_text(value, f"{method}(): url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InstantValueError(
            f"{method}(): url must be an absolute http(s) URL such as "
            f"'https://example.com/instant-webhook', got {short_repr(value)}"
        )
    return url


def _namespaces(value: object, method: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (Sequence, set, frozenset)):
        raise InstantTypeError(
            f"{method}(): namespaces must be a list of namespace names such as ['goals'], "
            f"got {short_repr(value)}"
        )
    names = [required_text(name, f"{method}(): each namespace") for name in value]
    if not names:
        raise InstantValueError(f"{method}(): namespaces must name at least one namespace")
    return list(dict.fromkeys(names))


def _actions(value: object, method: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (Sequence, set, frozenset)):
        raise InstantTypeError(
            f"{method}(): actions must be a list such as ['create', 'update', 'delete'], "
            f"got {short_repr(value)}"
        )
    actions = list(dict.fromkeys(value))
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise InstantValueError(
            f"{method}(): unknown action {short_repr(unknown[0])}; actions are "
            "'create', 'update' and 'delete'"
        )
    if not actions:
        raise InstantValueError(f"{method}(): actions must name at least one action")
    return actions


def _list_of_rows(rows: Any, key: str, response: Response) -> list[dict[str, Any]]:
    if rows is None:
        return []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise InstantWebhookError(
            f"the server's answer has no list of {key} objects ({short_repr(rows)}); "
            "is api_uri pointing at an Instant server?"
        )
    return rows


def _webhook_parser(request: Request) -> Callable[[Response], dict[str, Any]]:
    def parse(response: Response) -> dict[str, Any]:
        row = json_object(response, request).get("webhook")
        if not isinstance(row, dict):
            raise InstantWebhookError(f"the server's answer has no webhook: {short_repr(row)}")
        return _webhook_row(row)

    return parse


def _event_parser(request: Request) -> Callable[[Response], dict[str, Any]]:
    def parse(response: Response) -> dict[str, Any]:
        row = json_object(response, request).get("event")
        if not isinstance(row, dict):
            raise InstantWebhookError(f"the server's answer has no event: {short_repr(row)}")
        return _event_row(row)

    return parse


# Server columns (snake_case, or kebab-case with "?") -> the camelCase keys we return,
# which are the JS SDK's. Keys not listed pass through unchanged.
_WEBHOOK_KEYS = {
    "disabled_reason": "disabledReason",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
}
_EVENT_KEYS = {
    "next_attempt_after": "nextAttemptAfter",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
}
_ATTEMPT_KEYS = {
    "attempt-at": "attemptAt",
    "duration-ms": "durationMs",
    "success?": "success",
    "status-code": "statusCode",
    "response-text": "responseText",
    "error-type": "errorType",
    "error-message": "errorMessage",
}


def _renamed(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in row.items()}


def _webhook_row(row: Mapping[str, Any]) -> dict[str, Any]:
    webhook = _renamed(row, _WEBHOOK_KEYS)
    if webhook.get("namespaces") is None:
        webhook["namespaces"] = []
    return webhook


def _event_row(row: Mapping[str, Any]) -> dict[str, Any]:
    event = _renamed(row, _EVENT_KEYS)
    attempts = event.get("attempts")
    event["attempts"] = [
        _renamed(attempt, _ATTEMPT_KEYS) if isinstance(attempt, dict) else attempt
        for attempt in (attempts if isinstance(attempts, list) else [])
    ]
    return event


# -- receiving: the signature ---------------------------------------------------------------


@dataclass(frozen=True)
class SignedDelivery:
    """A delivery whose header parsed and whose timestamp is inside the window; the
    signature is not checked yet (that needs the key named by ``kid``)."""

    timestamp: int
    kid: str
    signature: bytes
    message: bytes
    """Exactly what Instant signed: the header's ``t`` text, ``.``, the body bytes."""


def read_signed_delivery(
    signature_header: object,
    body: object,
    *,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    received_at: object = None,
    now: float,
) -> SignedDelivery:
    """Parse ``t=<unix seconds>,kid=<key id>,v1=<hex signature>`` and check the time window.

    The window is symmetric: a timestamp more than ``max_age_seconds`` in the past (a
    replay) or in the future (a forged or badly skewed clock) is refused.
    """
    body_bytes = _body_bytes(body)
    window = _max_age(max_age_seconds)
    moment = _received_at(received_at, now)
    fields = _header_fields(signature_header)
    t_text, kid, v1 = fields["t"], fields["kid"], fields["v1"]
    if not _DIGITS.fullmatch(t_text):
        raise InstantWebhookSignatureError(
            f"Instant-Signature: t must be a unix time in seconds, got {short_repr(t_text)}"
        )
    if not _HEX_SIGNATURE.fullmatch(v1):
        raise InstantWebhookSignatureError(
            "Instant-Signature: v1 must be 128 hex digits (an Ed25519 signature)"
        )
    timestamp = int(t_text)
    age = moment - timestamp
    if age > window:
        raise InstantWebhookSignatureError(
            f"Instant-Signature is too old: signed {age:.0f}s before it was received, more "
            f"than max_age_seconds={max_age_seconds}. A replayed delivery, or check this "
            "machine's clock."
        )
    if -age > window:
        raise InstantWebhookSignatureError(
            f"Instant-Signature is from the future: signed {-age:.0f}s after it was "
            f"received, more than max_age_seconds={max_age_seconds}. Check this machine's "
            "clock."
        )
    return SignedDelivery(
        timestamp=timestamp,
        kid=kid,
        signature=bytes.fromhex(v1),
        message=t_text.encode("ascii") + b"." + body_bytes,
    )


def _header_fields(header: object) -> dict[str, str]:
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            raise InstantWebhookSignatureError(
                "Instant-Signature must be ASCII text: t=<unix seconds>,kid=<key id>,v1=<hex>"
            ) from None
    if not isinstance(header, str):
        raise InstantWebhookSignatureError(
            f"signature_header must be the Instant-Signature header as a str, "
            f"got {type(header).__name__}"
        )
    fields: dict[str, str] = {}
    for piece in header.split(","):
        key, sep, value = piece.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            continue
        if key in ("t", "kid", "v1") and key in fields:
            # Two values for one field would leave it open which one was checked.
            raise InstantWebhookSignatureError(f"Instant-Signature names {key}= twice")
        fields[key] = value
    missing = [key for key in ("t", "kid", "v1") if key not in fields]
    if missing:
        shown = "empty" if not header.strip() else "missing " + ", ".join(missing)
        raise InstantWebhookSignatureError(
            f"Instant-Signature header is {shown}: expected t=<unix seconds>,kid=<key id>,"
            "v1=<hex signature>. Pass request.headers['Instant-Signature']."
        )
    return fields


def _body_bytes(body: object) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise InstantTypeError(
        f"body must be the raw request body as bytes (or str), got {type(body).__name__}; "
        "pass the bytes exactly as received, before any JSON parsing"
    )


def _max_age(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InstantTypeError(
            f"max_age_seconds must be a number of seconds, got {type(value).__name__}"
        )
    if not (math.isfinite(value) and value > 0):
        raise InstantValueError(f"max_age_seconds must be a positive number, got {value!r}")
    return float(value)


def _received_at(value: object, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InstantValueError(
                "received_at must be an aware datetime (e.g. datetime.now(timezone.utc)) "
                "or unix seconds; a naive datetime has no definite moment"
            )
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InstantTypeError(
            f"received_at must be unix seconds or an aware datetime, got {short_repr(value)}"
        )
    return float(value)


def bundled_key(api_uri: str, kid: str) -> bytes | None:
    """Instant's production key, when ``api_uri`` is Instant's production API."""
    x = _BUNDLED_KEYS.get((origin_of(api_uri), kid))
    return None if x is None else _b64url(x)


def verify_signature(delivery: SignedDelivery, public_key: bytes) -> None:
    """Check the Ed25519 signature of ``delivery`` with a raw 32-byte public key."""
    # Imported here: only receivers pay for loading cryptography.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(delivery.signature, delivery.message)
    except (InvalidSignature, ValueError):
        raise InstantWebhookSignatureError(
            "Instant signature did not validate: the body or the header was changed, or "
            "the request was not sent by Instant. Pass the raw body bytes as received."
        ) from None


def webhook_body(delivery: SignedDelivery) -> WebhookBody:
    """The signed body's ``{payloadUrl, token}`` (other keys are left out)."""
    try:
        parsed = json.loads(delivery.message.partition(b".")[2])
    except (ValueError, RecursionError):
        raise InstantWebhookError("the webhook body is not valid JSON") from None
    return checked_webhook_body(parsed)


def checked_webhook_body(value: object) -> WebhookBody:
    """``value`` as a `WebhookBody`, or a clear error naming what is missing."""
    if not isinstance(value, Mapping):
        raise InstantWebhookError(
            f"a webhook body must be an object with payloadUrl and token, got "
            f"{type(value).__name__}; pass what validate() returned"
        )
    url, token = value.get("payloadUrl"), value.get("token")
    bad = [
        name
        for name, item in (("payloadUrl", url), ("token", token))
        if not isinstance(item, str) or not item
    ]
    if bad:
        raise InstantWebhookError(
            f"invalid webhook body: {' and '.join(bad)} must be non-empty strings; pass "
            "what validate() returned"
        )
    assert isinstance(url, str)
    assert isinstance(token, str)
    return {"payloadUrl": url, "token": token}


# -- receiving: JWKS ------------------------------------------------------------------------


def jwks_request(api_uri: str) -> Request:
    """``GET {api_uri}/.well-known/webhooks/jwks.json``, without credentials."""
    return Request(
        method="GET",
        path=JWKS_PATH,
        headers={"accept": "application/json", "user-agent": USER_AGENT},
    )


def parse_jwks(response: Response, request: Request) -> dict[str, bytes]:
    """``{kid: raw Ed25519 public key}`` of the usable keys in a JWKS answer."""
    body = json_body(response, request)
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        raise InstantWebhookError(
            "Invalid webhook JWKS response: no 'keys' list. Is api_uri pointing at an "
            "Instant server?"
        )
    found: dict[str, bytes] = {}
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        kid, x = key.get("kid"), key.get("x")
        if isinstance(kid, int) and not isinstance(kid, bool):
            kid = str(kid)
        if not isinstance(kid, str) or not isinstance(x, str):
            continue
        try:
            raw = _b64url(x)
        except ValueError:
            continue
        if len(raw) == 32:
            found[kid] = raw
    return found


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


class JwksCache:
    """Signing keys fetched from JWKS endpoints, shared by every client of the process.

    Keyed by the API's base URL and the key id. A key is trusted for ``ttl`` seconds
    after the fetch that returned it; a kid that is not known causes at most one fetch
    per ``refetch_after`` seconds per base URL, so a flood of forged kids cannot turn a
    receiver into a JWKS fetch loop against Instant.
    """

    def __init__(
        self,
        *,
        ttl: float = 3600.0,
        refetch_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.refetch_after = refetch_after
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._fetched_at: dict[str, float] = {}

    def key(self, api_uri: str, kid: str) -> bytes | None:
        """The cached key, or None if it must be fetched."""
        origin = _base_of(api_uri)
        with self._lock:
            entry = self._keys.get((origin, kid))
            if entry is not None and self._clock() < entry[1]:
                return entry[0]
            return None

    def may_fetch(self, api_uri: str) -> bool:
        """Whether a fetch for an unknown kid is allowed now."""
        origin = _base_of(api_uri)
        with self._lock:
            last = self._fetched_at.get(origin)
            return last is None or self._clock() - last >= self.refetch_after

    def store(self, api_uri: str, keys: Mapping[str, bytes]) -> None:
        origin = _base_of(api_uri)
        now = self._clock()
        with self._lock:
            self._fetched_at[origin] = now
            for kid, raw in keys.items():
                self._keys[(origin, kid)] = (raw, now + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._fetched_at.clear()


JWKS_CACHE = JwksCache()


def _base_of(api_uri: str) -> str:
    """The base URL a JWKS belongs to: origin (normalized) and path prefix."""
    return origin_of(api_uri) + urlsplit(api_uri).path.rstrip("/")


def unknown_kid(api_uri: str, kid: str) -> InstantWebhookSignatureError:
    return InstantWebhookSignatureError(
        f"Instant-Signature names signing key kid={short_repr(kid)}, which "
        f"{_base_of(api_uri)}{JWKS_PATH} does not list. The delivery was not signed by "
        "the Instant server this client is configured for (check api_uri)."
    )


# -- receiving: payloads --------------------------------------------------------------------


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the scheme's default port left out, lowercased."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def payload_request(api_uri: str, body: object) -> Request:
    """``GET <payloadUrl>`` with the delivery's token, only to the configured API server.

    The token lets anyone read the event's records for an hour, so it is only sent when
    ``payloadUrl`` has the origin of ``api_uri`` (see `same_payload_origin`), and then to
    ``api_uri``'s own origin: the host this client was told to trust, not whatever name
    the body spells.
    """
    checked = checked_webhook_body(body)
    url, token = checked["payloadUrl"], checked["token"]
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InstantValueError(
            f"refusing to send the webhook token to {short_repr(url)}: payloadUrl must be "
            "an http(s) URL on the client's Instant server, as Instant sends it"
        )
    if parts.username is not None or parts.password is not None:
        raise InstantValueError(
            "refusing to send the webhook token: payloadUrl carries a user name or "
            "password (text before '@'), which Instant never sends; the body was not "
            "Instant's as it was signed"
        )
    mine, theirs = _origin_parts(url), _origin_parts(api_uri)
    if mine is None:
        raise InstantValueError(
            f"refusing to send the webhook token to {short_repr(url)}: payloadUrl has no "
            "valid host or port, so it is not a URL Instant sends"
        )
    if theirs is None:
        raise InstantValueError(
            f"api_uri {short_repr(api_uri)} has no valid host or port; set it to your "
            "Instant server's URL, such as 'https://api.instantdb.com'"
        )
    if not _same_origin(mine, theirs):
        found, expected = origin_of(url), origin_of(api_uri)
        raise InstantValueError(
            f"refusing to send the webhook token to {found}: payloadUrl's origin differs "
            f"from the origin of this client's api_uri ({expected}) in "
            f"{_origin_difference(mine, theirs)}. The token is only ever sent to the "
            f"client's own Instant server; if {found} really is your Instant server, "
            f"construct the client (or call fetch_payloads) with api_uri={found!r}."
        )
    headers = {
        "accept": "application/json",
        "authorization": f"Bearer {token}",
        "user-agent": USER_AGENT,
    }
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    prefix = urlsplit(api_uri).path.rstrip("/")
    if target.startswith(prefix + "/"):
        # A path under the base URL: sent like every other API request.
        return Request(method="GET", path=target[len(prefix) :], headers=headers, secrets=(token,))
    return Request(
        method="GET", path="", url=origin_of(api_uri) + target, headers=headers, secrets=(token,)
    )


def same_payload_origin(url: str, api_uri: str) -> bool:
    """Whether ``url`` is on the Instant server at ``api_uri``: same scheme, host and port.

    Loopback names are one host here: ``localhost``, ``127.x.y.z`` and ``[::1]`` with the
    same scheme and port count as the same origin. A local server names itself by the
    address it is bound to (``http://127.0.0.1:8888``) while clients often say
    ``http://localhost:8888``; a token sent to any of these names stays on this machine,
    on the same port, and is sent to ``api_uri``'s own name anyway. Every other host
    must match exactly: ``localhost.example.com`` or ``127.0.0.1.nip.io`` are other
    machines.
    """
    mine, theirs = _origin_parts(url), _origin_parts(api_uri)
    return mine is not None and theirs is not None and _same_origin(mine, theirs)


def _same_origin(mine: tuple[str, str, int], theirs: tuple[str, str, int]) -> bool:
    if mine == theirs:
        return True
    (scheme, host, port), (api_scheme, api_host, api_port) = mine, theirs
    return (
        scheme == api_scheme and port == api_port and _is_loopback(host) and _is_loopback(api_host)
    )


def _origin_parts(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` with the scheme's default port filled in, lowercased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if default is None or not host:
        return None
    return scheme, host, default if port is None else port


def _is_loopback(host: str) -> bool:
    # Only the canonical spellings: a resolver may read "127.1" or "2130706433" as
    # 127.0.0.1, but nothing Instant sends looks like that.
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _IPV4_LOOPBACK
    return address == _IPV6_LOOPBACK


_IPV4_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def _origin_difference(mine: tuple[str, str, int], theirs: tuple[str, str, int]) -> str:
    """What differs between two origins, in words: ``"its port (8889, not 8888)"``."""
    differences = [
        f"{name} ({_shown(found)}, not {_shown(expected)})"
        for name, found, expected in zip(("scheme", "host", "port"), mine, theirs, strict=True)
        if found != expected
        and not (name == "host" and _is_loopback(str(found)) and _is_loopback(str(expected)))
    ]
    if len(differences) > 1:
        return "its " + ", ".join(differences[:-1]) + " and " + differences[-1]
    return "its " + differences[0]


def _shown(part: object) -> str:
    text = str(part)
    return f"[{text}]" if ":" in text else text


def parse_payload(body: Mapping[str, Any]) -> dict[str, Any]:
    """A payload body with ``data`` null (the change record is gone) read as ``[]``."""
    payload = dict(body)
    if payload.get("data") is None:
        payload["data"] = []
    return payload


def payload_records(payload: object) -> list[dict[str, Any]]:
    """The records of a payload, each checked to have a str namespace and action."""
    if not isinstance(payload, Mapping):
        raise InstantTypeError(
            f"payload must be what fetch_payloads() returned (a dict), got {type(payload).__name__}"
        )
    data = payload.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise InstantWebhookError(f"payload['data'] must be a list, got {type(data).__name__}")
    for index, record in enumerate(data):
        if not (
            isinstance(record, dict)
            and isinstance(record.get("namespace"), str)
            and isinstance(record.get("action"), str)
        ):
            raise InstantWebhookError(
                f"payload['data'][{index}] is not a record with a namespace and an action: "
                f"{short_repr(record)}"
            )
    return data


# -- receiving: handlers --------------------------------------------------------------------


def check_handlers(handlers: object, *, allow_async: bool) -> Handlers:
    """``handlers`` after checking every entry is a callable (or None), before any runs.

    With ``allow_async=False`` (the blocking client) an ``async def`` handler is an error
    here, since nothing would ever await it.
    """
    if not isinstance(handlers, Mapping):
        raise InstantTypeError(
            f"handlers must be a dict like {{'goals': {{'create': fn}}, '$default': fn}}, "
            f"got {type(handlers).__name__}"
        )
    for name, entry in handlers.items():
        where = f"handlers[{name!r}]"
        if isinstance(entry, Mapping):
            if name == "$default":
                raise InstantTypeError(f"{where} must be a function, not a dict")
            for action, handler in entry.items():
                _check_handler(handler, f"{where}[{action!r}]", allow_async)
        else:
            _check_handler(entry, where, allow_async)
    return handlers


def _check_handler(handler: object, where: str, allow_async: bool) -> None:
    if handler is None:
        return
    if not callable(handler):
        raise InstantTypeError(f"{where} must be a function, got {short_repr(handler)}")
    if not allow_async and is_async_callable(handler):
        raise InstantTypeError(
            f"{where} is an async function, which the blocking client cannot await: use a "
            "plain def with Instant, or AsyncInstant for async handlers"
        )


def is_async_callable(handler: object) -> bool:
    while hasattr(handler, "func"):  # functools.partial
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an instance's async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def handler_for(handlers: Handlers, record: Mapping[str, Any]) -> Handler | None:
    """The most specific handler: ``[namespace][action]``, ``[namespace]["$default"]``,
    then ``["$default"]``; None if there is none (a None entry counts as absent)."""
    entry = handlers.get(record["namespace"])
    if isinstance(entry, Mapping):
        found = entry.get(record["action"])
        if found is None:
            found = entry.get("$default")
        if found is not None:
            return found  # type: ignore[no-any-return]
    elif entry is not None:
        # A namespace mapped straight to a function handles all its actions.
        return entry  # type: ignore[no-any-return]
    default = handlers.get("$default")
    return default if callable(default) else None
