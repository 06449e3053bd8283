"""Delivering events: one signed POST per attempt, run by a background worker.

The worker thread claims due events (``pending``, or ``error`` whose retry time has
passed), hands each to a small thread pool, and sleeps until the next retry is due or
it is woken (a new event, a resend, a finished delivery). Deliveries never run on a
request's or a transaction's thread. Events are rows in the webhooks database, so a
restart picks up whatever was pending; events a crashed run left ``processing`` go back
to ``pending`` after `DeliverySettings.stuck_after` seconds (at once on start).

Statuses and retries follow the real server (live protocol §3.5): 2xx -> ``success``;
410 -> ``failed`` and the webhook is disabled; the 11th attempt -> ``failed``; anything
else -> ``error`` with a retry after 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, then 12 h
(configurable, so tests can run it in milliseconds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from .store import Event, WebhookStore

__all__ = ["REAL_RETRY_SCHEDULE", "DeliverySettings", "DeliveryWorker", "attempt_record", "send"]

logger = logging.getLogger("instantdb_local")

REAL_RETRY_SCHEDULE = (60.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 43200.0)
USER_AGENT = "InstantDB Webhook Sender"
_RESPONSE_TEXT_BYTES = 256


@dataclass(frozen=True)
class DeliverySettings:
    """How events are delivered. The defaults are the real server's."""

    retry_schedule: tuple[float, ...] = REAL_RETRY_SCHEDULE
    """Seconds to wait before the next attempt, by the number of earlier attempts
    (the last entry repeats)."""
    max_attempts: int = 11
    request_timeout: float = 20.0
    concurrency: int = 4
    stuck_after: float = 60.0

    def __post_init__(self) -> None:
        # NaN or infinity would only fail later, when a retry time is computed.
        if not self.retry_schedule or not all(
            math.isfinite(s) and s >= 0 for s in self.retry_schedule
        ):
            raise ValueError("retry_schedule must be a non-empty list of finite seconds >= 0")
        if self.max_attempts < 1 or self.concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        if self.request_timeout <= 0 or self.stuck_after <= 0:
            raise ValueError("request_timeout and stuck_after must be positive")

    def backoff(self, earlier_attempts: int) -> float:
        """The wait after a failed attempt that had ``earlier_attempts`` before it."""
        return self.retry_schedule[min(earlier_attempts, len(self.retry_schedule) - 1)]


def _iso_instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def attempt_record(
    started: datetime,
    duration_ms: int,
    *,
    status_code: int | None = None,
    response_text: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """An attempt as the real server records it (kebab-case keys, ``success?``)."""
    return {
        "attempt-at": _iso_instant(started),
        "duration-ms": duration_ms,
        "success?": status_code is not None and 200 <= status_code < 300,
        "status-code": status_code,
        "response-text": response_text,
        "error-type": error_type,
        "error-message": error_message,
    }


def _error_type(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
            return "dns"
        if "ssl" in text or "certificate" in text:
            return "tls"
        return "connect"
    if isinstance(exc, (httpx.ProtocolError, httpx.UnsupportedProtocol)):
        return "protocol"
    if isinstance(exc, httpx.NetworkError):
        return "network"
    return "unknown"


def send(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> dict[str, Any]:
    """POST one delivery; the attempt record says how it went (never raises for I/O)."""
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    try:
        with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            # Only the start of the answer is kept; a huge body is not read.
            head = b""
            for chunk in response.iter_bytes():
                head += chunk
                if len(head) >= _RESPONSE_TEXT_BYTES:
                    break
            status = response.status_code
    except httpx.HTTPError as exc:
        return attempt_record(
            started,
            int((time.monotonic() - clock) * 1000),
            error_type=_error_type(exc),
            error_message=str(exc) or type(exc).__name__,
        )
    text = head[:_RESPONSE_TEXT_BYTES].decode("utf-8", errors="replace")
    return attempt_record(
        started, int((time.monotonic() - clock) * 1000), status_code=status, response_text=text
    )


class DeliveryWorker:
    """Claims due events and runs ``deliver(event)`` for each on a bounded pool."""

    def __init__(
        self,
        store: WebhookStore,
        settings: DeliverySettings,
        deliver: Callable[[Event], None],
    ) -> None:
        self.settings = settings
        self._store = store
        self._deliver = deliver
        self._wake = threading.Condition()
        self._woken = False
        self._stopping = False
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        now = time.time_ns()
        # Nothing is in flight yet: anything marked processing was cut off by a stop.
        self._store.release_stuck(now + 1, now)
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.concurrency, thread_name_prefix="instantdb-webhook"
        )
        self._thread = threading.Thread(
            target=self._run, name="instantdb-webhook-dispatch", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, timeout: float = 2.0) -> None:
        """Stop claiming; wait up to ``timeout`` for deliveries in flight.

        A delivery still running then is abandoned: its event stays ``processing`` and
        goes back to ``pending`` when the worker starts again.
        """
        deadline = time.monotonic() + timeout
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            while self._in_flight and time.monotonic() < deadline:
                self._wake.wait(deadline - time.monotonic())
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread = self._pool = None

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while True:
            with self._wake:
                if self._stopping:
                    return
                free = self.settings.concurrency - self._in_flight
                self._woken = False
            try:
                if time.monotonic() - last_sweep >= self.settings.stuck_after:
                    last_sweep = time.monotonic()
                    now = time.time_ns()
                    self._store.release_stuck(now - int(self.settings.stuck_after * 1e9), now)
                claimed = self._store.claim_due(time.time_ns(), free) if free > 0 else []
                for event in claimed:
                    with self._wake:
                        self._in_flight += 1
                    assert self._pool is not None
                    self._pool.submit(self._deliver_one, event)
                wait = self._wait_seconds(free, len(claimed))
            except Exception:
                logger.exception("Webhook dispatch failed; retrying shortly")
                wait = 1.0
            with self._wake:
                if not self._woken and not self._stopping:
                    self._wake.wait(wait)

    def _wait_seconds(self, free: int, claimed: int) -> float:
        if free > 0 and claimed == free:
            return 0.0  # there may be more due right now
        limit = self.settings.stuck_after
        due = self._store.next_due_ns()
        if due is None:
            return limit
        return min(limit, max(0.0, (due - time.time_ns()) / 1e9))

    def _deliver_one(self, event: Event) -> None:
        try:
            self._deliver(event)
        except Exception:
            # The event stays processing and is swept back to pending later. After a
            # stop, the store and client are closed under an abandoned delivery: no news.
            if not self._stopping:
                logger.exception("Delivering webhook event %s failed", event.isn)
        finally:
            with self._wake:
                self._in_flight -= 1
                self._woken = True
                self._wake.notify_all()
