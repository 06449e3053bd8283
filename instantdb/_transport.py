"""Running a `Call` over HTTP: the only module of the SDK that does I/O.

`SyncTransport` and `AsyncTransport` each own (or borrow) one pooled httpx client, send a
call's request, retry what the `RetryPolicy` allows, and turn every failure into an
`InstantError`. Everything they decide is delegated to pure code shared by both:
`_retry` decides about retries, `_protocol` builds requests and reads responses.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from ._errors import (
    InstantConnectionError,
    InstantError,
    InstantNetworkError,
    InstantTimeoutError,
    InstantTypeError,
    InstantValueError,
)
from ._protocol._call import Call, Request, Response
from ._protocol._responses import api_error, redact
from ._retry import RetryPolicy
from ._settings import Settings

__all__ = ["AsyncTransport", "SyncTransport"]

T = TypeVar("T")

logger = logging.getLogger("instantdb")


class _TransportBase:
    """What both transports share: configuration, URL building and bookkeeping."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        self.base_url = settings.api_uri
        self.timeout = settings.timeout
        self.policy: RetryPolicy = settings.retry
        self._clock = clock
        self._random = random
        self.closed = False

    def _check_open(self, client_closed: bool) -> None:
        if self.closed or client_closed:
            raise InstantError(
                "This client is closed (close() or the end of its `with` block closed it, or "
                "the http_client you passed was closed). Create a new client to make requests."
            )

    def _httpx_arguments(self, request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "url": self.base_url + request.path,
            "params": request.params,
            "headers": dict(request.headers),
            "content": request.content,
            "timeout": self.timeout,
        }

    def _start(self, call: Call[Any]) -> Any:
        return self.policy.start(call.safety, clock=self._clock, random=self._random)


def _finish(call: Call[T], response: httpx.Response) -> T:
    """The parsed result of a successful answer, else the error it stands for."""
    answer = Response(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        content=response.content,
    )
    if not answer.is_success:
        raise api_error(answer, call.request.secrets)
    return call.parse(answer)


def _network_error(exc: httpx.HTTPError, request: Request, base_url: str) -> InstantNetworkError:
    """The `InstantError` for an httpx failure; says whether the request may have been sent."""
    where = f"{request.method} {request.path}"
    detail = redact(str(exc) or type(exc).__name__, request.secrets)
    if isinstance(exc, httpx.ConnectTimeout):
        return InstantTimeoutError(
            f"{where}: timed out connecting to {base_url} ({detail}). Check api_uri and "
            "your network, or raise the connect timeout.",
            may_have_been_sent=False,
        )
    if isinstance(exc, httpx.PoolTimeout):
        return InstantTimeoutError(
            f"{where}: timed out waiting for a free connection in the pool ({detail}). Too "
            "many requests are in flight on this client at once.",
            may_have_been_sent=False,
        )
    if isinstance(exc, httpx.TimeoutException):
        return InstantTimeoutError(
            f"{where}: the server at {base_url} did not answer in time ({detail}). The "
            "request may have been processed; raise timeout= for slow queries.",
            may_have_been_sent=True,
        )
    if isinstance(exc, httpx.ConnectError):
        return InstantConnectionError(
            f"{where}: could not connect to {base_url} ({detail}). Check api_uri and your network.",
            may_have_been_sent=False,
        )
    return InstantConnectionError(
        f"{where}: the connection to {base_url} failed before the answer arrived "
        f"({type(exc).__name__}: {detail}). The request may have been processed.",
        may_have_been_sent=True,
    )


def _log_retry(request: Request, error: InstantError, delay: float, attempt: int) -> None:
    # Never log headers or params: they carry the tokens.
    status = getattr(error, "status", None)
    reason = f"{status} {type(error).__name__}" if status else type(error).__name__
    logger.info(
        "instantdb: %s %s failed (%s); retrying in %.2fs (attempt %d)",
        request.method,
        request.path,
        reason,
        delay,
        attempt,
    )


class SyncTransport(_TransportBase):
    """Runs calls with a pooled `httpx.Client`, blocking."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(settings, clock=clock, random=random)
        _check_client_arguments(http_client, transport, httpx.Client, "Instant")
        self.owns_client = http_client is None
        self.client = http_client or httpx.Client(
            transport=transport, timeout=settings.timeout, follow_redirects=False
        )
        self._sleep = sleep

    def run(self, call: Call[T]) -> T:
        state = self._start(call)
        while True:
            try:
                return _finish(call, self._send(call.request))
            except InstantError as error:
                delay = state.delay_after(error)
                if delay is None:
                    raise
                _log_retry(call.request, error, delay, state.attempt)
                self._sleep(delay)

    def _send(self, request: Request) -> httpx.Response:
        self._check_open(self.client.is_closed)
        try:
            return self.client.request(**self._httpx_arguments(request))
        except httpx.HTTPError as exc:
            raise _network_error(exc, request, self.base_url) from exc

    def close(self) -> None:
        """Close the pool if this transport created it; a borrowed client stays open."""
        self.closed = True
        if self.owns_client:
            self.client.close()


class AsyncTransport(_TransportBase):
    """Runs calls with a pooled `httpx.AsyncClient`, awaiting."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(settings, clock=clock, random=random)
        _check_client_arguments(http_client, transport, httpx.AsyncClient, "AsyncInstant")
        self.owns_client = http_client is None
        self._own_transport = transport
        self.client = http_client or self._make_client()
        self._sleep = sleep
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, call: Call[T]) -> T:
        state = self._start(call)
        while True:
            try:
                return _finish(call, await self._send(call.request))
            except InstantError as error:
                delay = state.delay_after(error)
                if delay is None:
                    raise
                _log_retry(call.request, error, delay, state.attempt)
                await self._sleep(delay)

    async def _send(self, request: Request) -> httpx.Response:
        self._check_open(self.client.is_closed)
        self._follow_event_loop()
        try:
            return await self.client.request(**self._httpx_arguments(request))
        except httpx.HTTPError as exc:
            raise _network_error(exc, request, self.base_url) from exc

    def _follow_event_loop(self) -> None:
        # Pooled connections belong to the event loop that opened them. A script that
        # calls asyncio.run() twice with one client would otherwise reuse connections of
        # a closed loop; our own pool is replaced instead (a borrowed one is the owner's
        # business).
        loop = asyncio.get_running_loop()
        previous = self._loop
        if (
            self.owns_client
            and previous is not None
            and previous is not loop
            and previous.is_closed()
        ):
            self.client = self._make_client()
        self._loop = loop

    def _make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._own_transport, timeout=self.timeout, follow_redirects=False
        )

    async def aclose(self) -> None:
        """Close the pool if this transport created it; a borrowed client stays open."""
        self.closed = True
        if self.owns_client:
            await self.client.aclose()


def _check_client_arguments(
    http_client: object, transport: object, expected: type, owner: str
) -> None:
    if http_client is not None and transport is not None:
        raise InstantValueError(
            "pass either http_client= or _transport=, not both: the transport of your own "
            "client is yours to configure"
        )
    if http_client is not None and not isinstance(http_client, expected):
        raise InstantTypeError(
            f"{owner}(http_client=...) takes an {expected.__module__}.{expected.__name__}, "
            f"got {type(http_client).__name__}"
        )
