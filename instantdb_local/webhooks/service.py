"""`WebhookService`: webhooks for one `Instance` (its data directory).

It watches every engine's commits (asking for per-entity changes only while the app
has an active webhook), turns matching transactions into pending events, delivers them
in the background, and answers the manager, payload and JWKS routes. One service per
instance: `service_for` makes it (the ASGI app does, when it is created) and the
instance's close stops it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import httpx

from instantdb_local import errors
from instantdb_local.engine import AppEngine, Commit, EntityChange
from instantdb_local.errors import ServerError
from instantdb_local.instance import Instance

from . import records
from .cursor import decode_cursor, encode_cursor
from .delivery import USER_AGENT, DeliverySettings, DeliveryWorker, attempt_record, send
from .isn import isn_text, parse_isn
from .signing import SigningKey
from .store import Event, Webhook, WebhookStore

__all__ = ["RETRY_SCHEDULE_VARIABLE", "WebhookService", "service_for"]

logger = logging.getLogger("instantdb_local")

RETRY_SCHEDULE_VARIABLE = "INSTANTDB_LOCAL_WEBHOOK_RETRY_SCHEDULE"
MAX_ACTIVE_WEBHOOKS = 100
PAGE_SIZE = 100
TOKEN_SECONDS = 3600
ACTIONS = ("create", "update", "delete")
DISABLED_BY_410 = "Endpoint returned 410 status code."
_STORE_FILE = "webhooks.sqlite3"

_services: weakref.WeakKeyDictionary[Instance, WebhookService] = weakref.WeakKeyDictionary()
_services_lock = threading.Lock()


def service_for(instance: Instance) -> WebhookService:
    """The instance's webhook service, started on first use."""
    with _services_lock:
        service = _services.get(instance)
        if service is None:
            service = WebhookService(instance, settings=settings_from_environment())
            _services[instance] = service
            instance.on_close(lambda: _forget(instance))
            service.start()
        return service


def _forget(instance: Instance) -> None:
    with _services_lock:
        service = _services.pop(instance, None)
    if service is not None:
        service.stop()


def settings_from_environment() -> DeliverySettings:
    """The real server's schedule, or ``INSTANTDB_LOCAL_WEBHOOK_RETRY_SCHEDULE`` (comma
    separated seconds, e.g. ``1,2,5``) for trying out retries without waiting hours."""
    text = os.environ.get(RETRY_SCHEDULE_VARIABLE, "").strip()
    if not text:
        return DeliverySettings()
    try:
        schedule = tuple(float(part) for part in text.split(","))
        return DeliverySettings(retry_schedule=schedule)
    except ValueError:
        logger.error(
            "%s=%r is not a comma separated list of seconds (finite, >= 0, e.g. 1,2,5); "
            "using the real schedule",
            RETRY_SCHEDULE_VARIABLE,
            text,
        )
        return DeliverySettings()


def _webhook_error(message: str, **hint: Any) -> ServerError:
    error = errors.validation_failed("webhook", None, [{"message": message}])
    if hint:
        error.hint = {**(error.hint or {}), **hint}
    return error


class WebhookService:
    """Webhooks, events and deliveries of one instance."""

    def __init__(
        self,
        instance: Instance,
        *,
        settings: DeliverySettings | None = None,
        signing_key: SigningKey | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """``clock`` is the wall clock in integer nanoseconds that deliveries use: the
        signature's ``t``, an attempt's outcome time and its retry time (tests inject
        one to check the schedule without waiting)."""
        self.instance = instance
        self._clock = clock
        self.store = WebhookStore(instance.data_dir / _STORE_FILE)
        self.signing_key = signing_key or self.store.signing_key(time.time_ns())
        self._lock = threading.Lock()
        # Active webhooks by app, kept in memory: every commit consults it, and only the
        # manager (under self._lock) changes it.
        self._active: dict[str, tuple[Webhook, ...]] = {}
        self._refresh_active()
        # The engines being watched, to flush their released outbox rows before an
        # app's webhooks change (see `_changing`).
        self._engines: weakref.WeakValueDictionary[str, AppEngine] = weakref.WeakValueDictionary()
        self._worker = DeliveryWorker(self.store, settings or DeliverySettings(), self.deliver)
        self._stopped = False

    @property
    def settings(self) -> DeliverySettings:
        return self._worker.settings

    def configure(self, **changes: Any) -> None:
        """Change delivery settings (e.g. ``retry_schedule=(0.1, 0.2)`` in tests)."""
        self._worker.settings = replace(self._worker.settings, **changes)
        self._worker.wake()

    def start(self) -> None:
        self.instance.on_engine_open(self._watch)
        # Opening the engines of apps with webhooks drains what a crash left in their
        # outboxes now, not at the app's next request.
        for app_id in list(self._active):
            try:
                self.instance.engine(app_id)
            except Exception:  # an app removed meanwhile has nothing left to deliver
                logger.warning("Could not open app %s to resume its webhook events", app_id)
        self._worker.start()

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._worker.stop()
        self.store.close()

    # -- watching transactions ----------------------------------------------------------

    def _watch(self, engine: AppEngine) -> None:
        add = getattr(engine, "add_commit_listener", None)
        if add is None:
            return  # a stand-in engine (HTTP-layer tests) has no commits to watch
        app_id = engine.app_id

        def on_commit(commit: Commit) -> None:
            if not commit.changes:
                return
            # The engine already encoded the records for its outbox: the same text is
            # the change record kept here.
            encoded = commit.changes_json
            if encoded is None:
                encoded = records.encode([_change_record(c) for c in commit.changes])
            kinds: set[tuple[str, str]] = {(c.namespace, c.action) for c in commit.changes}
            self._record(engine, commit.tx_id, kinds, encoded)

        add(on_commit, wants_changes=lambda: app_id in self._active)
        self._engines[app_id] = engine
        # Changes committed before a crash that no event was made of yet: the engine
        # kept them in the transaction itself (its outbox). Those already recorded
        # (released, but the engine had not deleted them yet) made their events then.
        for tx_id, changes in engine.unreleased_changes():
            if self.store.has_changes(app_id, tx_id):
                engine.release_changes(tx_id)
            else:
                self._record(engine, tx_id, records.kinds(changes), records.encode(changes))

    def _record(
        self, engine: AppEngine, tx_id: int, kinds: set[tuple[str, str]], encoded: str
    ) -> None:
        """Events for the webhooks a transaction matches; then the engine may forget its
        changes. A failure (or a crash) before that leaves them in the engine's outbox,
        to be recorded when the engine is next opened.

        ``kinds`` are the transaction's ``(namespace, action)`` pairs, ``encoded`` its
        change records as JSON text.
        """
        if self._stopped:
            return
        app_id = engine.app_id
        hooks = [
            hook.id
            for hook in self._active.get(app_id, ())
            if records.matches(kinds, hook.namespaces, hook.actions)
        ]
        if hooks:
            # The same tx twice (a retry of the drain) makes no second event.
            self.store.record_transaction(app_id, tx_id, encoded, hooks, time.time_ns())
            self._worker.wake()
        engine.release_changes(tx_id)

    def _changing(self, app_id: str) -> None:
        """Before an app's active webhooks change: the transactions released so far
        were matched against the old ones, so their outbox rows go now; a crash must
        not replay them through the new ones."""
        engine = self._engines.get(app_id)
        if engine is not None:
            engine.flush_released_changes()

    def _refresh_active(self) -> None:
        active: dict[str, list[Webhook]] = {}
        for hook in self.store.active_webhooks():
            active.setdefault(hook.app_id, []).append(hook)
        self._active = {app_id: tuple(hooks) for app_id, hooks in active.items()}

    # -- the manager ----------------------------------------------------------------------

    def list_webhooks(self, app_id: str) -> list[dict[str, Any]]:
        return [hook.to_json() for hook in self.store.webhooks(app_id)]

    def create(self, app_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        url = self._url(body.get("url"), required=True)
        namespaces = self._namespaces(app_id, body.get("namespaces"), required=True)
        actions = self._actions(body.get("actions"), required=True)
        assert url is not None
        assert namespaces is not None
        assert actions is not None
        now = time.time_ns()
        hook = Webhook(
            str(uuid.uuid4()), app_id, url, namespaces, actions, "active", None, now, now
        )
        with self._lock:
            self._check_can_be_active(hook)
            self._changing(app_id)
            self.store.insert_webhook(hook)
            self._refresh_active()
        return hook.to_json()

    def update(self, app_id: str, webhook_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            hook = self.require(app_id, webhook_id)
            url = self._url(body.get("url"), required=False)
            namespaces = self._namespaces(app_id, body.get("namespaces"), required=False)
            actions = self._actions(body.get("actions"), required=False)
            hook = replace(
                hook,
                url=url or hook.url,
                namespaces=namespaces or hook.namespaces,
                actions=actions or hook.actions,
                updated_ns=time.time_ns(),
            )
            if hook.status == "active":
                self._check_can_be_active(hook, counting=False)
            self._changing(app_id)
            self.store.save_webhook(hook)
            self._refresh_active()
        return hook.to_json()

    def set_status(
        self, app_id: str, webhook_id: str, *, active: bool, reason: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            hook = self.require(app_id, webhook_id)
            if active:
                if hook.status != "active":
                    self._check_can_be_active(hook)
                hook = replace(hook, status="active", disabled_reason=None)
            else:
                hook = replace(hook, status="disabled", disabled_reason=reason)
            hook = replace(hook, updated_ns=time.time_ns())
            self._changing(app_id)
            self.store.save_webhook(hook)
            self._refresh_active()
        return hook.to_json()

    def delete(self, app_id: str, webhook_id: str) -> dict[str, Any]:
        with self._lock:
            hook = self.require(app_id, webhook_id)
            self._changing(app_id)
            self.store.delete_webhook(hook.id)
            self._refresh_active()
        return hook.to_json()

    def require(self, app_id: str, webhook_id: str) -> Webhook:
        hook = self.store.webhook(app_id, _canonical_id(webhook_id))
        if hook is None:
            raise errors.record_not_found("webhook", args=[{"id": webhook_id}])
        return hook

    def events_page(self, app_id: str, webhook_id: str, after: str | None) -> dict[str, Any]:
        hook = self.require(app_id, webhook_id)
        cursor = decode_cursor(after) if after else None
        rows = self.store.events_page(hook.id, cursor, PAGE_SIZE + 1)
        page = rows[:PAGE_SIZE]
        return {
            "events": [event.to_json() for event in page],
            "pageInfo": {
                "startCursor": encode_cursor(page[0].created_ns, page[0].isn) if page else None,
                "endCursor": encode_cursor(page[-1].created_ns, page[-1].isn) if page else None,
                "hasNextPage": len(rows) > PAGE_SIZE,
            },
        }

    def event(self, app_id: str, webhook_id: str, isn: str) -> Event:
        hook = self.require(app_id, webhook_id)
        number = parse_isn(isn)
        event = None if number is None else self.store.event(hook.id, number)
        if event is None:
            raise errors.record_not_found("webhook-event", args=[{"isn": isn}])
        return event

    def resend(self, app_id: str, webhook_id: str, isn: str) -> dict[str, Any]:
        event = self.event(app_id, webhook_id, isn)
        if not self.store.resend(event.webhook_id, event.isn, time.time_ns()):
            raise _webhook_error("Could not resend event. Try again in one minute.")
        self._worker.wake()
        resent = self.store.event(event.webhook_id, event.isn)
        assert resent is not None
        return resent.to_json()

    def _check_can_be_active(self, hook: Webhook, *, counting: bool = True) -> None:
        active = [h for h in self.store.webhooks(hook.app_id, active_only=True) if h.id != hook.id]
        if counting and len(active) >= MAX_ACTIVE_WEBHOOKS:
            raise errors.validation_failed(
                "webhooks",
                None,
                [{"message": "An app may not have more than 100 active webhooks."}],
            )
        for other in active:
            if (
                other.url == hook.url
                and set(other.namespaces) == set(hook.namespaces)
                and set(other.actions) == set(hook.actions)
            ):
                raise _webhook_error(
                    "A webhook already exists with all of the same properties",
                    **{"webhook-id": other.id},
                )

    def _url(self, value: Any, *, required: bool) -> str | None:
        if value is None:
            if required:
                raise errors.param_missing(["body", "url"])
            return None
        if not isinstance(value, str):
            raise errors.param_malformed(["body", "url"], value)
        try:
            parsed = httpx.URL(value)
        except (httpx.InvalidURL, TypeError):
            parsed = None
        # Unlike the real server (https to a public host only), plain http and loopback
        # receivers are allowed: local development is what this server is for.
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise _webhook_error("The Webhook url must be an http or https URL")
        return value

    def _namespaces(self, app_id: str, value: Any, *, required: bool) -> tuple[str, ...] | None:
        if value is None:
            if required:
                raise errors.param_missing(["body", "namespaces"])
            return None
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise errors.param_malformed(["body", "namespaces"], value)
        if not value:
            raise _webhook_error("Webhook must have at least one table.")
        known = self._app_namespaces(app_id)
        for name in value:
            if name not in known:
                raise _webhook_error(f"Could not find matching table for {name}")
        return tuple(dict.fromkeys(value))

    def _app_namespaces(self, app_id: str) -> set[str]:
        schema = self.instance.engine(app_id).schema_json().get("schema", {})
        namespaces = set(schema.get("blobs", {}))
        for ref in schema.get("refs", {}).values():
            for side in ref.get("forward-identity", [])[1:2] + ref.get("reverse-identity", [])[1:2]:
                namespaces.add(side)
        return namespaces

    def _actions(self, value: Any, *, required: bool) -> tuple[str, ...] | None:
        if value is None:
            if required:
                raise errors.param_missing(["body", "actions"])
            return None
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise errors.param_malformed(["body", "actions"], value)
        if not value:
            raise _webhook_error("Webhook must have at least one action.")
        for action in value:
            if action not in ACTIONS:
                raise _webhook_error(
                    f"Invalid action {action}: actions are create, update and delete"
                )
        return tuple(dict.fromkeys(value))

    # -- payloads -------------------------------------------------------------------------

    def payload(self, app_id: str, webhook_id: str, isn: str) -> dict[str, Any]:
        """``{"data": [records] | null, "idempotencyKey"}`` with the webhook's current
        namespaces and actions; data is null if the change record is gone."""
        hook = self.require(app_id, webhook_id)
        number = parse_isn(isn)
        if number is None:
            raise errors.record_not_found("webhook-event", args=[{"isn": isn}])
        changes = self.store.changes(app_id, number)
        data = (
            None
            if changes is None
            else records.payload_records(changes, hook.namespaces, hook.actions, number)
        )
        return {"data": data, "idempotencyKey": records.payload_key(hook.id, number)}

    def check_token(self, token: str, app_id: str, webhook_id: str, isn: str) -> None:
        """A payload JWT: ours, unexpired, and for exactly this app, webhook and ISN."""
        claims = self.signing_key.verified_claims(token)
        problem = None
        if claims is None:
            problem = "Invalid JWT."
        elif not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            problem = "JWT has expired."
        elif claims.get("iss") != self._origin():
            problem = "JWT has the wrong issuer."
        elif (
            claims.get("sub") != app_id
            or claims.get("app-id") != app_id
            or claims.get("webhook-id") != _canonical_id(webhook_id)
            or parse_isn(str(claims.get("isn"))) != parse_isn(isn)
        ):
            problem = "JWT is not valid for this payload."
        if problem is not None:
            raise errors.validation_failed("jwt", None, [{"message": problem}])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.jwk()]}

    # -- delivering -----------------------------------------------------------------------

    def _origin(self) -> str:
        return self.instance.last_api_uri() or "http://127.0.0.1:8888"

    def delivery(self, hook: Webhook, isn: int, now: float) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers of one attempt (live protocol §3.3)."""
        origin = self._origin()
        token = self.signing_key.jwt(
            {
                "iss": origin,
                "sub": hook.app_id,
                "app-id": hook.app_id,
                "exp": int(now) + TOKEN_SECONDS,
                "isn": isn_text(isn),
                "webhook-id": hook.id,
            }
        )
        url = f"{origin}/webhooks/payload/{hook.app_id}/{hook.id}/{isn_text(isn)}"
        body = json.dumps({"payloadUrl": url, "token": token}, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": records.payload_key(hook.id, isn),
            "Instant-Signature": self.signing_key.signature_header(int(now), body),
        }
        return body, headers

    def deliver(self, event: Event) -> None:
        """One attempt at an event the worker claimed, and its outcome recorded."""
        hook = self.store.webhook(event.app_id, event.webhook_id)
        if hook is None:
            return  # deleted meanwhile, with its events
        if hook.status != "active":
            attempt = attempt_record(
                _utc_now(), 0, error_type="disabled", error_message="Webhook is disabled."
            )
            self.store.finish_attempt(event, attempt, "failed", None, self._clock())
            return
        body, headers = self.delivery(hook, event.isn, self._clock() / 1e9)
        attempt = send(hook.url, body, headers, self.settings.request_timeout)
        earlier = len(event.attempts or ())
        status_code = attempt["status-code"]
        now = self._clock()
        if attempt["success?"]:
            self.store.finish_attempt(event, attempt, "success", None, now)
        elif status_code == 410:
            # The webhook first: whoever sees the event failed sees it disabled too.
            self.set_status(hook.app_id, hook.id, active=False, reason=DISABLED_BY_410)
            self.store.finish_attempt(event, attempt, "failed", None, now)
        elif earlier + 1 >= self.settings.max_attempts:
            self.store.finish_attempt(event, attempt, "failed", None, now)
        else:
            retry_at = now + int(self.settings.backoff(earlier) * 1e9)
            self.store.finish_attempt(event, attempt, "error", retry_at, now)


def _change_record(change: EntityChange) -> dict[str, Any]:
    return {
        "namespace": change.namespace,
        "id": change.id,
        "action": change.action,
        "before": change.before,
        "after": change.after,
    }


def _canonical_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
