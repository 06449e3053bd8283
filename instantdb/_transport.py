"""Running a `Call` over HTTP: the only module of the SDK that does I/O.

`SyncTransport` and `AsyncTransport` each own (or borrow) one pooled httpx client, send a
call's request, retry what the `RetryPolicy` allows, and turn every failure into an
`InstantError`. Everything they decide is delegated to pure code shared by both:
`_retry` decides about retries, `_protocol` builds requests and reads responses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

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
from ._retry import RetryPolicy, RetryState
from ._settings import Settings
from ._upload import UploadSource, exact_pieces, exact_pieces_async

__all__ = ["AsyncTransport", "SyncTransport"]

T = TypeVar("T")

logger = logging.getLogger("instantdb")

# Query parameters that carry credentials (auth.get_user / delete_user by refresh token).
SECRET_PARAMS = ("refresh_token",)


class _RedactSecretParams(logging.Filter):
    """Masks credential query parameters in httpx's own "HTTP Request: GET <url>" lines.

    The API takes a refresh token in the query string of /admin/users; without this, a
    user who turns on INFO logging would see the token in httpx's request log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_masked(arg) for arg in record.args)
        return True


def _masked(arg: object) -> object:
    if not isinstance(arg, httpx.URL):
        return arg
    for name in SECRET_PARAMS:
        if name in arg.params:
            arg = arg.copy_set_param(name, "<redacted>")
    return arg


_HTTPX_LOG_FILTER = _RedactSecretParams()


def _protect_httpx_log() -> None:
    httpx_logger = logging.getLogger("httpx")
    if _HTTPX_LOG_FILTER not in httpx_logger.filters:
        httpx_logger.addFilter(_HTTPX_LOG_FILTER)


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
        _protect_httpx_log()

    def _check_open(self, client_closed: bool) -> None:
        if self.closed or client_closed:
            raise InstantError(
                "This client is closed (close() or the end of its `with` block closed it, or "
                "the http_client you passed was closed). Create a new client to make requests."
            )

    def _httpx_arguments(
        self,
        request: Request,
        *,
        body: Iterator[bytes] | AsyncIterator[bytes] | None = None,
        length: int | None = None,
    ) -> dict[str, Any]:
        headers = dict(request.headers)
        if length is not None:
            # Always explicit, so a streamed body is never sent chunked.
            headers["content-length"] = str(length)
        return {
            "method": request.method,
            "url": request.url or self.base_url + request.path,
            # None, not (): httpx replaces a URL's own query string with empty params.
            "params": request.params or None,
            "headers": headers,
            "content": body if body is not None else request.content,
            "timeout": self.timeout,
            # Only file downloads go to absolute URLs, and they carry no credentials, so
            # following a storage redirect is safe there (and never elsewhere).
            "follow_redirects": request.url is not None,
        }

    def _network_error(self, exc: httpx.HTTPError, request: Request) -> InstantNetworkError:
        # A signed download URL is itself a credential: never name it in a message.
        where = "the file's storage URL" if request.url else self.base_url
        return _network_error(exc, request, where)

    def _start(self, call: Call[Any]) -> RetryState:
        return self.policy.start(call.safety, clock=self._clock, random=self._random)


def _answer(response: httpx.Response, content: bytes | None = None) -> Response:
    return Response(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        content=response.content if content is None else content,
    )


def _finish(call: Call[T], answer: Response) -> T:
    """The parsed result of a successful answer, else the error it stands for."""
    if not answer.is_success:
        raise api_error(answer, call.request.secrets)
    return call.parse(answer)


class _PartFile:
    """A download being written next to its target, renamed into place only when complete,
    so a failed download never leaves a truncated file under the target's name."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self.file: IO[bytes] = open(self.part, "wb")  # noqa: SIM115 - closed by commit/discard
        except OSError as exc:
            raise InstantError(f"could not write the download to {target}: {exc}") from exc

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        self.file.close()
        os.replace(self.part, self.target)

    def discard(self) -> None:
        self.file.close()
        self.part.unlink(missing_ok=True)


def _network_error(exc: httpx.HTTPError, request: Request, server: str) -> InstantNetworkError:
    """The `InstantError` for an httpx failure; says whether the request may have been sent."""
    where = f"{request.method} {request.target}"
    detail = redact(str(exc) or type(exc).__name__, request.secrets)
    _scrub_chain(exc, request.secrets)
    if isinstance(exc, httpx.ConnectTimeout):
        return InstantTimeoutError(
            f"{where}: timed out connecting to {server} ({detail}). Check api_uri and "
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
            f"{where}: the server at {server} did not answer in time ({detail}). The "
            "request may have been processed; raise timeout= for slow queries.",
            may_have_been_sent=True,
        )
    if isinstance(exc, httpx.ConnectError):
        return InstantConnectionError(
            f"{where}: could not connect to {server} ({detail}). Check api_uri and your network.",
            may_have_been_sent=False,
        )
    return InstantConnectionError(
        f"{where}: the connection to {server} failed before the answer arrived "
        f"({type(exc).__name__}: {detail}). The request may have been processed.",
        may_have_been_sent=True,
    )


def _scrub_chain(exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Redact secrets from the messages of ``exc`` and the exceptions it wraps.

    The httpx error stays chained to ours (``__cause__``), and a traceback prints every
    message in the chain: one that quotes a header value (h11 does, for a header it
    refuses) would otherwise show a token in the user's logs.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        args = redact(list(current.args), secrets)
        if args != list(current.args):
            current.args = tuple(args)
        current = current.__cause__ or current.__context__


def _log_retry(request: Request, error: InstantError, delay: float, attempt: int) -> None:
    # Never log headers or params: they carry the tokens.
    status = getattr(error, "status", None)
    reason = f"{status} {type(error).__name__}" if status else type(error).__name__
    logger.info(
        "instantdb: %s %s failed (%s); retrying in %.2fs (attempt %d)",
        request.method,
        request.target,
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

    def _send(self, request: Request) -> Response:
        self._check_open(self.client.is_closed)
        try:
            if isinstance(request.content, UploadSource):
                return self._upload(request, request.content)
            if request.save_to is not None:
                return self._download(request, request.save_to)
            return _answer(self.client.request(**self._httpx_arguments(request)))
        except httpx.HTTPError as exc:
            raise self._network_error(exc, request) from exc

    def _upload(self, request: Request, source: UploadSource) -> Response:
        reader = source.open()
        try:
            body = exact_pieces(reader, source.description)
            arguments = self._httpx_arguments(request, body=body, length=reader.size)
            return _answer(self.client.request(**arguments))
        finally:
            reader.close()

    def _download(self, request: Request, target: Path) -> Response:
        with self.client.stream(**self._httpx_arguments(request)) as response:
            if not response.is_success:
                response.read()
                return _answer(response)
            part = _PartFile(target)
            try:
                for data in response.iter_bytes():
                    part.write(data)
            except BaseException:
                part.discard()
                raise
            part.commit()
            return _answer(response, content=b"")

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

    async def _send(self, request: Request) -> Response:
        self._check_open(self.client.is_closed)
        self._follow_event_loop()
        try:
            if isinstance(request.content, UploadSource):
                return await self._upload(request, request.content)
            if request.save_to is not None:
                return await self._download(request, request.save_to)
            return _answer(await self.client.request(**self._httpx_arguments(request)))
        except httpx.HTTPError as exc:
            raise self._network_error(exc, request) from exc

    async def _upload(self, request: Request, source: UploadSource) -> Response:
        reader = await source.open_async()
        try:
            body = exact_pieces_async(reader, source.description)
            arguments = self._httpx_arguments(request, body=body, length=reader.size)
            return _answer(await self.client.request(**arguments))
        finally:
            await reader.close()

    async def _download(self, request: Request, target: Path) -> Response:
        async with self.client.stream(**self._httpx_arguments(request)) as response:
            if not response.is_success:
                await response.aread()
                return _answer(response)
            # File writes block: they run in a worker thread, as uploads' reads do.
            part = await asyncio.to_thread(_PartFile, target)
            try:
                async for data in response.aiter_bytes():
                    await asyncio.to_thread(part.write, data)
            except BaseException:
                await asyncio.to_thread(part.discard)
                raise
            await asyncio.to_thread(part.commit)
            return _answer(response, content=b"")

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
        if not self.owns_client:
            return
        if self._loop is not None and self._loop.is_closed():
            # The pool's connections belong to a loop that has ended (a script closing
            # the client in its own asyncio.run()); closing them would need that loop,
            # and asyncio raises "Event loop is closed". Drop them (their sockets are
            # released when collected) and close an empty pool in their place.
            self.client = self._make_client()
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
