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

An attempt has one deadline, `DeliverySettings.request_timeout` after it starts, for
connecting, sending the request and reading the status line, the headers and the body
(live protocol §3.3: one call may take 20 s in total). httpx's timeouts bound each socket
operation, so a receiver trickling a byte at a time could hold an attempt for as long as
it liked. Each attempt therefore runs on an httpcore connection pool of its own whose
network backend gives every connect, TLS handshake, read and write only what is left of
the attempt's time: no watchdog thread, nothing closed from another thread, and the
deadline is met whether the receiver stalls in its status line, its headers or its body.
"""

from __future__ import annotations

import base64
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any

import httpcore
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
    """Seconds one attempt may take in all: connect, send, status line, headers, body."""
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


class NameResolutionError(httpcore.ConnectError):
    """The receiver's host name did not resolve (the attempt's ``error-type`` ``dns``)."""


def _error_type(exc: Exception) -> str:
    if isinstance(exc, httpcore.TimeoutException):
        return "timeout"
    if isinstance(exc, NameResolutionError):
        return "dns"
    if isinstance(exc, httpcore.ConnectError):
        text = str(exc).lower()
        if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
            return "dns"
        if "ssl" in text or "certificate" in text:
            return "tls"
        return "connect"
    if isinstance(exc, (httpcore.ProtocolError, httpcore.UnsupportedProtocol)):
        return "protocol"
    if isinstance(exc, httpcore.NetworkError):
        return "network"
    return "unknown"


# What a failed attempt can raise; anything else is a bug, logged by the worker.
_ATTEMPT_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpx.InvalidURL,
)


def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """POST one delivery within ``timeout`` seconds in all; the attempt record says how it
    went (never raises for I/O). No redirects are followed and no proxy is used."""
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    deadline = AttemptDeadline(timeout)
    try:
        parsed = httpx.URL(url)
        target = httpcore.URL(
            scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
        )
        with (
            httpcore.ConnectionPool(
                ssl_context=_tls_context() if target.scheme == b"https" else None,
                network_backend=DeadlineBackend(deadline),
            ) as pool,
            pool.stream(
                "POST",
                target,
                headers=[*headers.items(), *_basic_auth(parsed)],
                content=body,
                extensions={
                    "timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)
                },
            ) as response,
        ):
            # Only the start of the answer is kept; a huge body is not read.
            head = b""
            for chunk in response.iter_stream():
                head += chunk
                if len(head) >= _RESPONSE_TEXT_BYTES:
                    break
            status = response.status
    except _ATTEMPT_ERRORS as exc:
        error_type = _error_type(exc)
        message = (
            f"no complete answer within {timeout:g} s (connecting, sending the request "
            "and reading the status, headers and body count together)"
            if error_type == "timeout"
            else str(exc) or type(exc).__name__
        )
        return attempt_record(
            started,
            int((time.monotonic() - clock) * 1000),
            error_type=error_type,
            error_message=message,
        )
    text = head[:_RESPONSE_TEXT_BYTES].decode("utf-8", errors="replace")
    return attempt_record(
        started, int((time.monotonic() - clock) * 1000), status_code=status, response_text=text
    )


def _basic_auth(url: httpx.URL) -> list[tuple[str, str]]:
    """The ``Authorization`` header of a URL with ``user:password@``, as httpx sends it: a
    receiver may be protected that way."""
    if not (url.username or url.password):
        return []
    pair = f"{url.username}:{url.password}".encode()
    return [("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))]


@cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes milliseconds: once per process, and only for https.
    return httpcore.default_ssl_context()


class AttemptDeadline:
    """The moment one attempt's time is up, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def left(self, timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
        """How long the next I/O step may take: what is left, and at most ``timeout``.

        Raises ``expired`` when nothing is left, so no step starts after the deadline.
        """
        remaining = self._at - time.monotonic()
        if remaining <= 0:
            raise expired(f"the attempt's {self.seconds:g} s are up")
        return remaining if timeout is None else min(timeout, remaining)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's blocking sockets, with every step bounded by an `AttemptDeadline`.

    Name resolution is the one step it cannot bound: ``getaddrinfo`` takes no timeout.
    """

    def __init__(self, deadline: AttemptDeadline) -> None:
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # socket.create_connection would give each address of the host the whole
        # timeout; resolving here gives each one only what is left of the attempt.
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise NameResolutionError(f"{host}: {exc}") from exc
        failure = httpcore.ConnectError(f"{host} has no address to connect to")
        for *_, address in addresses:
            try:
                stream = self._sockets.connect_tcp(
                    str(address[0]),
                    port,
                    self._deadline.left(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return DeadlineStream(stream, self._deadline)
        raise failure


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads, writes and TLS handshake end by the attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: AttemptDeadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # A delivery is about a kilobyte: one socket send, bounded by what is left.
        self._stream.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


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
