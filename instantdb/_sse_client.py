"""Open event streams over the client's pooled httpx connection, sync and async.

The only I/O of the live features besides pushes and file downloads: open an SSE
request, judge its answer, and turn its body into protocol messages. Failures come out
as `InstantError` s that `_protocol.reconnect.is_terminal` can classify.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ._errors import InstantError
from ._logging import LiveLog
from ._protocol._call import Request, Response
from ._protocol.live import open_failure
from ._protocol.reconnect import TransientError
from ._protocol.sse import SSEDecoder, messages_of
from ._transport import AsyncTransport, SyncTransport, _TransportBase

__all__ = ["AsyncEventSource", "SyncEventSource"]


def _arguments(transport: _TransportBase, request: Request) -> tuple[dict[str, Any], bool]:
    arguments = transport._httpx_arguments(request)
    follow = bool(arguments.pop("follow_redirects"))
    return arguments, follow


def _head(response: httpx.Response, content: bytes = b"") -> Response:
    return Response(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        content=content,
    )


def _closed_by_server() -> TransientError:
    return TransientError("the server closed the event stream")


class _Messages:
    """Decodes a body into messages and logs them (tokens masked)."""

    def __init__(self, log: LiveLog) -> None:
        self.decoder = SSEDecoder()
        self._log = log

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for event in self.decoder.feed(chunk):
            for message in messages_of(event):
                token = message.get("sse-token")
                if isinstance(token, str):
                    self._log.hide(token)
                self._log.debug("[receive] %s", message)
                messages.append(message)
        return messages


class SyncEventSource:
    """One open event stream, read in the calling thread."""

    def __init__(self, response: httpx.Response, request: Request, transport: SyncTransport):
        self._response = response
        self._request = request
        self._transport = transport
        self._messages: _Messages | None = None

    @classmethod
    def open(cls, transport: SyncTransport, request: Request, log: LiveLog) -> SyncEventSource:
        """Send ``request``; raise the `InstantError` its answer stands for, if any."""
        transport._check_open(transport.client.is_closed)
        arguments, follow = _arguments(transport, request)
        try:
            response = transport.client.send(
                transport.client.build_request(**arguments), stream=True, follow_redirects=follow
            )
        except httpx.HTTPError as exc:
            raise transport._network_error(exc, request) from exc
        try:
            content = response.read() if not response.is_success else b""
        except httpx.HTTPError as exc:
            response.close()
            raise transport._network_error(exc, request) from exc
        failure = open_failure(_head(response, content), request.secrets)
        if failure is not None:
            response.close()
            raise failure
        log.info("[sse][open] %s", request.path)
        source = cls(response, request, transport)
        source._messages = _Messages(log)
        return source

    @property
    def retry_ms(self) -> int | None:
        return self._messages.decoder.retry_ms if self._messages else None

    def messages(self) -> Iterator[dict[str, Any]]:
        """The messages as they arrive; ends only by raising (the server never ends it)."""
        assert self._messages is not None
        try:
            for chunk in self._response.iter_bytes():
                yield from self._messages.feed(chunk)
        except httpx.HTTPError as exc:
            raise self._transport._network_error(exc, self._request) from exc
        except (httpx.StreamClosed, OSError, ValueError) as exc:
            # abort() from another thread closed the stream under the reader.
            raise TransientError(f"the event stream was closed ({type(exc).__name__})") from exc
        raise _closed_by_server()

    def abort(self) -> None:
        """Make a read blocked in another thread fail now (safe from any thread)."""
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)
        else:  # no socket (a mock transport): closing the stream is all there is
            self.close()

    def close(self) -> None:
        # Closing while another thread reads may complain; that reader ends on its own.
        with contextlib.suppress(httpx.HTTPError, RuntimeError, ValueError):
            self._response.close()


class AsyncEventSource:
    """One open event stream, read in the event loop."""

    def __init__(self, response: httpx.Response, request: Request, transport: AsyncTransport):
        self._response = response
        self._request = request
        self._transport = transport
        self._messages: _Messages | None = None

    @classmethod
    async def open(
        cls, transport: AsyncTransport, request: Request, log: LiveLog
    ) -> AsyncEventSource:
        transport._check_open(transport.client.is_closed)
        transport._follow_event_loop()
        arguments, follow = _arguments(transport, request)
        try:
            response = await transport.client.send(
                transport.client.build_request(**arguments), stream=True, follow_redirects=follow
            )
        except httpx.HTTPError as exc:
            raise transport._network_error(exc, request) from exc
        try:
            content = await response.aread() if not response.is_success else b""
        except httpx.HTTPError as exc:
            await response.aclose()
            raise transport._network_error(exc, request) from exc
        failure = open_failure(_head(response, content), request.secrets)
        if failure is not None:
            await response.aclose()
            raise failure
        log.info("[sse][open] %s", request.path)
        source = cls(response, request, transport)
        source._messages = _Messages(log)
        return source

    @property
    def retry_ms(self) -> int | None:
        return self._messages.decoder.retry_ms if self._messages else None

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        assert self._messages is not None
        try:
            async for chunk in self._response.aiter_bytes():
                for message in self._messages.feed(chunk):
                    yield message
        except httpx.HTTPError as exc:
            raise self._transport._network_error(exc, self._request) from exc
        raise _closed_by_server()

    async def aclose(self) -> None:
        # The task that reads a session is cancelled when its reader or writer stops,
        # often while it is closing the stream: the close must still finish, or the
        # connection stays checked out of the pool for good.
        closing = asyncio.ensure_future(self._close_response())
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait({closing})
            raise

    async def _close_response(self) -> None:
        with contextlib.suppress(httpx.HTTPError, RuntimeError):
            await self._response.aclose()


def describe(error: InstantError) -> str:
    """How a failure is named in logs: class and message (tokens are already masked)."""
    return f"{type(error).__name__}: {error}"
