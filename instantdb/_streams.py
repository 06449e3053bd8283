"""``db.streams``: durable text streams, written and read, for both clients.

The protocol decisions live in `instantdb._protocol.streams`; this module waits (with
timeouts), fetches stream files, decodes UTF-8, and gives the user context managers and
iterators. Guarantees beyond the official SDK (docs/api.md lists them): a writer always
ends the stream it started, ``close`` raises when the server did not confirm the final
flush, and a reader never ends early or repeats bytes across reconnects.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from ._arguments import required_text
from ._errors import (
    InstantAPIError,
    InstantError,
    InstantTimeoutError,
    InstantTypeError,
    InstantValueError,
)
from ._logging import LiveLog
from ._protocol._call import USER_AGENT
from ._protocol._responses import api_error
from ._protocol.streams import ReaderMachine, Segment, StreamCorruptedError, WriterMachine
from ._settings import Settings
from ._stream_session import AsyncSession, SyncSession
from ._transport import AsyncTransport, SyncTransport, _answer

__all__ = [
    "DEFAULT_STREAM_TIMEOUT",
    "AsyncStreamReader",
    "AsyncStreamWriter",
    "AsyncStreams",
    "StreamReader",
    "StreamWriter",
    "Streams",
]

DEFAULT_STREAM_TIMEOUT = 30.0
"""Seconds a writer waits for the stream to start, and for its final flush."""

ChunkT = TypeVar("ChunkT", str, bytes)


def _new_id() -> str:
    return str(uuid.uuid4())


def _check_timeout(timeout: object, method: str) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InstantValueError(
            f"{method}: timeout must be a positive number of seconds, got {timeout!r}"
        )
    return float(timeout)


def _writer_machine(
    settings: Settings, client_id: object, rule_params: Mapping[str, Any] | None
) -> WriterMachine:
    return WriterMachine(
        client_id=required_text(client_id, "streams.write(): client_id", strip=False),
        rule_params=rule_params,
        reconnect_token=_new_id(),
        new_id=_new_id,
        secrets=settings.secrets,
    )


def _reader_machine(
    settings: Settings,
    stream_id: object,
    client_id: object,
    byte_offset: object,
    rule_params: Mapping[str, Any] | None,
) -> ReaderMachine:
    if stream_id is None and client_id is None:
        raise InstantValueError(
            "streams.read() needs stream_id=... (the stream's id, from the writer's "
            "stream_id or the $streams namespace) or client_id=... (the id its writer chose)"
        )
    if isinstance(byte_offset, bool) or not isinstance(byte_offset, int):
        raise InstantTypeError(
            f"streams.read(): byte_offset must be an int, got {type(byte_offset).__name__}"
        )
    if byte_offset < 0:
        raise InstantValueError(f"streams.read(): byte_offset must be >= 0, got {byte_offset}")
    return ReaderMachine(
        stream_id=None
        if stream_id is None
        else required_text(stream_id, "streams.read(): stream_id", strip=False),
        client_id=None
        if client_id is None
        else required_text(client_id, "streams.read(): client_id", strip=False),
        byte_offset=byte_offset,
        rule_params=rule_params,
        new_id=_new_id,
        secrets=settings.secrets,
    )


def _not_started(machine: WriterMachine, timeout: float) -> InstantTimeoutError:
    return InstantTimeoutError(
        f"the server did not confirm the start of stream {machine.client_id!r} within "
        f"{timeout:g} s (no start-stream-ok). Check the connection to the server; the "
        "stream may not exist.",
        may_have_been_sent=True,
    )


def _not_flushed(machine: WriterMachine, timeout: float) -> InstantTimeoutError:
    if machine.stream_id is None:
        return InstantTimeoutError(
            f"stream {machine.client_id!r} was never confirmed by the server within "
            f"{timeout:g} s, so it could not be closed; if it was created, it stays open "
            "(not done)",
            may_have_been_sent=True,
        )
    return InstantTimeoutError(
        f"the server did not confirm the end of stream {machine.stream_id} within {timeout:g} s "
        f"(no final stream-flushed); {machine.flushed_offset} of {machine.total_bytes} bytes "
        "are confirmed durable",
        may_have_been_sent=True,
    )


def _not_durable(machine: WriterMachine, target: int, timeout: float) -> InstantTimeoutError:
    return InstantTimeoutError(
        f"the server did not confirm the bytes written to stream {machine.client_id!r} "
        f"within {timeout:g} s: {machine.flushed_offset} of {target} bytes are confirmed "
        "durable. Check the connection to the server; the writer keeps trying, so a later "
        "flush() may succeed.",
        may_have_been_sent=True,
    )


def _flush_outcome(machine: WriterMachine, target: int, confirmed: bool, timeout: float) -> None:
    """What `flush()` does once its wait ended: return, or raise why it cannot."""
    if machine.flushed_offset >= target:
        return
    if machine.error is not None:
        raise machine.error
    if not confirmed:
        raise _not_durable(machine, target, timeout)
    raise InstantError(
        f"stream {machine.client_id!r} ended before the server confirmed all its bytes "
        f"({machine.flushed_offset} of {target} are durable)"
    )


def _no_room(machine: WriterMachine, timeout: float) -> InstantTimeoutError:
    return InstantTimeoutError(
        f"the server confirmed none of the {machine.buffered} bytes waiting on stream "
        f"{machine.client_id!r} within {timeout:g} s, and a writer holds at most "
        f"{machine.buffer_limit} unconfirmed bytes, so this write was not taken. Check the "
        "connection to the server; the writer keeps trying, and a later write may succeed.",
        may_have_been_sent=False,
    )


def _next_segment(machine: ReaderMachine) -> Segment | None:
    return machine.segments.popleft() if machine.segments else None


class StreamFetchError(InstantError):
    """A part of the stream could not be downloaded (the reader re-subscribes)."""


def _download_failure(response: httpx.Response, content: bytes) -> StreamFetchError:
    cause: InstantAPIError = api_error(_answer(response, content))
    error = StreamFetchError(f"downloading a part of the stream failed: {response.status_code}")
    error.__cause__ = cause
    return error


class _Decoder(Generic[ChunkT]):
    """Bytes -> what the reader yields: text decoded incrementally, or the bytes."""

    def __init__(self, as_bytes: bool) -> None:
        self.as_bytes = as_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")

    def chunk(self, data: bytes, *, final: bool = False) -> Any:
        if self.as_bytes:
            return data
        try:
            return self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise InstantError(
                f"the stream is not valid UTF-8 text ({exc.reason}); read it with "
                "as_bytes=True to get the raw bytes"
            ) from None


class _WriterBase:
    _machine: WriterMachine
    _timeout: float

    @property
    def client_id(self) -> str:
        return self._machine.client_id

    @property
    def error(self) -> InstantError | None:
        """Why the stream failed (also raised by the call that found out), or None."""
        return self._machine.error

    @property
    def bytes_written(self) -> int:
        """UTF-8 bytes written so far."""
        return self._machine.total_bytes

    @property
    def bytes_flushed(self) -> int:
        """Bytes the server has confirmed durable."""
        return self._machine.flushed_offset

    def __repr__(self) -> str:
        state = "closed" if self._machine.done_requested else "open"
        return f"<{type(self).__name__} client_id={self.client_id!r} {state}>"


class StreamWriter(_WriterBase):
    """Writes one stream (blocking). Use as a context manager (see `Streams.write`)."""

    def __init__(
        self,
        settings: Settings,
        transport: SyncTransport,
        client_id: str,
        rule_params: Mapping[str, Any] | None,
        log: LiveLog,
        timeout: float,
    ) -> None:
        self._machine = _writer_machine(settings, client_id, rule_params)
        self._timeout = _check_timeout(timeout, "streams.write()")
        self._session = SyncSession(
            settings, transport, self._machine, log, name=f"instantdb-stream-writer-{client_id}"
        )
        self._opened = False
        self._closed = False

    def __enter__(self) -> StreamWriter:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # A failure to end the stream stays in .error: the block's own exception is the
        # one to see.
        with contextlib.suppress(InstantError):
            self.abort(str(exc) or type(exc).__name__)

    @property
    def stream_id(self) -> str:
        """The stream's id; waits (up to the writer's timeout) for the server to start it."""
        return self.wait_stream_id()

    def wait_stream_id(self, timeout: float | None = None) -> str:
        """The stream's id, waiting up to ``timeout`` seconds (default: the writer's).

        Once known it stays readable after the writer closed (to store or share it).
        """
        if self._machine.stream_id is not None:
            return self._machine.stream_id
        self._open()
        limit = self._timeout if timeout is None else timeout
        machine = self._machine
        self._session.wait_for(lambda: machine.stream_id is not None or machine.finished, limit)
        if machine.stream_id is not None:
            return machine.stream_id
        if machine.error is not None:
            raise machine.error
        raise _not_started(machine, limit)

    def write(self, data: str | bytes) -> None:
        """Append text (or UTF-8 bytes). Returns once it is buffered: it waits for the
        stream to start, and for room while the writer holds its limit of unconfirmed
        bytes, never for a push or the server's flush."""
        machine = self._machine
        if machine.stream_id is None and not machine.finished:
            self.wait_stream_id()
        if not machine.has_room and not machine.finished:
            room = self._session.wait_for(
                lambda: machine.has_room or machine.finished, self._timeout
            )
            if not room and machine.error is None:
                raise _no_room(machine, self._timeout)
        self._session.act(lambda: machine.write(data))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every byte written so far is confirmed durable by the server
        (``stream-flushed``), up to ``timeout`` seconds (default: the writer's).

        Writes return once buffered; call this where a checkpoint matters. Raises
        `InstantTimeoutError` when the confirmation did not come in time.
        """
        machine = self._machine
        target = machine.total_bytes
        if machine.flushed_offset >= target:
            return
        limit = self._timeout if timeout is None else _check_timeout(timeout, "flush()")
        confirmed = self._session.wait_for(
            lambda: machine.flushed_offset >= target or machine.finished, limit
        )
        _flush_outcome(machine, target, confirmed, limit)

    def close(self) -> None:
        """End the stream and wait for the server to confirm it durable. Idempotent.

        Raises when it was not confirmed within the timeout, or the stream failed.
        """
        self._finish(None)

    def abort(self, reason: str) -> None:
        """End the stream marked as aborted with ``reason`` (readers see it)."""
        self._finish(required_text(reason, "abort(): reason", strip=False))

    def _open(self) -> None:
        if self._closed:
            raise InstantError(f"the writer of stream {self.client_id!r} is closed")
        if not self._opened:
            self._opened = True
            self._session.start()

    def _finish(self, reason: str | None) -> None:
        if self._closed:
            if self._machine.error is not None and not self._machine.done_flushed:
                raise self._machine.error
            return
        self._closed = True
        if not self._opened:
            return  # nothing was sent, so nothing exists on the server
        machine = self._machine
        try:
            self._session.act(lambda: machine.finish(reason))
            confirmed = self._session.wait_for(lambda: machine.finished, self._timeout)
        finally:
            self._session.stop()
        if machine.error is not None:
            raise machine.error
        if not confirmed:
            machine.error = _not_flushed(machine, self._timeout)
            raise machine.error


class _StreamIdAwaitable:
    """``await writer.stream_id``: waits up to the writer's timeout."""

    def __init__(self, writer: AsyncStreamWriter) -> None:
        self._writer = writer

    def __await__(self) -> Generator[Any, None, str]:
        return self._writer.wait_stream_id().__await__()


class AsyncStreamWriter(_WriterBase):
    """Writes one stream (asyncio). Use as an async context manager (`AsyncStreams.write`)."""

    def __init__(
        self,
        settings: Settings,
        transport: AsyncTransport,
        client_id: str,
        rule_params: Mapping[str, Any] | None,
        log: LiveLog,
        timeout: float,
    ) -> None:
        self._machine = _writer_machine(settings, client_id, rule_params)
        self._timeout = _check_timeout(timeout, "streams.write()")
        self._session = AsyncSession(
            settings, transport, self._machine, log, name=f"instantdb-stream-writer-{client_id}"
        )
        self._opened = False
        self._closed = False

    async def __aenter__(self) -> AsyncStreamWriter:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        with contextlib.suppress(InstantError):  # kept in .error, as above
            await self.abort(str(exc) or type(exc).__name__)

    @property
    def stream_id(self) -> Awaitable[str]:
        """``await writer.stream_id``: the id, once the server started the stream."""
        return _StreamIdAwaitable(self)

    async def wait_stream_id(self, timeout: float | None = None) -> str:
        """The stream's id, waiting up to ``timeout`` seconds (default: the writer's).

        Once known it stays readable after the writer closed (to store or share it).
        """
        if self._machine.stream_id is not None:
            return self._machine.stream_id
        self._open()
        limit = self._timeout if timeout is None else timeout
        machine = self._machine
        await self._session.wait_for(
            lambda: machine.stream_id is not None or machine.finished, limit
        )
        self._session.check_crash()
        if machine.stream_id is not None:
            return machine.stream_id
        if machine.error is not None:
            raise machine.error
        raise _not_started(machine, limit)

    async def write(self, data: str | bytes) -> None:
        """Append text (or UTF-8 bytes); returns once it is buffered (see
        `StreamWriter.write`)."""
        machine = self._machine
        if machine.stream_id is None and not machine.finished:
            await self.wait_stream_id()
        if not machine.has_room and not machine.finished:
            room = await self._session.wait_for(
                lambda: machine.has_room or machine.finished, self._timeout
            )
            self._session.check_crash()
            if not room and machine.error is None:
                raise _no_room(machine, self._timeout)
        await self._session.act(lambda: machine.write(data))

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every byte written so far is confirmed durable (see
        `StreamWriter.flush`)."""
        machine = self._machine
        target = machine.total_bytes
        if machine.flushed_offset >= target:
            return
        limit = self._timeout if timeout is None else _check_timeout(timeout, "flush()")
        confirmed = await self._session.wait_for(
            lambda: machine.flushed_offset >= target or machine.finished, limit
        )
        self._session.check_crash()
        _flush_outcome(machine, target, confirmed, limit)

    async def close(self) -> None:
        """End the stream and wait for the server to confirm it durable. Idempotent."""
        await self._finish(None)

    async def abort(self, reason: str) -> None:
        """End the stream marked as aborted with ``reason`` (readers see it)."""
        await self._finish(required_text(reason, "abort(): reason", strip=False))

    def _open(self) -> None:
        if self._closed:
            raise InstantError(f"the writer of stream {self.client_id!r} is closed")
        if not self._opened:
            self._opened = True
            self._session.start()

    async def _finish(self, reason: str | None) -> None:
        if self._closed:
            if self._machine.error is not None and not self._machine.done_flushed:
                raise self._machine.error
            return
        self._closed = True
        if not self._opened:
            return
        machine = self._machine
        try:
            await self._session.act(lambda: machine.finish(reason))
            confirmed = await self._session.wait_for(lambda: machine.finished, self._timeout)
        finally:
            await self._session.stop()
        self._session.check_crash()
        if machine.error is not None:
            raise machine.error
        if not confirmed:
            machine.error = _not_flushed(machine, self._timeout)
            raise machine.error


class _ReaderBase(Generic[ChunkT]):
    _machine: ReaderMachine

    @property
    def stream_id(self) -> str | None:
        """The stream's id (known once the server answered, or when given)."""
        return self._machine.stream_id

    @property
    def client_id(self) -> str | None:
        return self._machine.client_id

    @property
    def abort_reason(self) -> str | None:
        """Why the writer aborted the stream, once the end was read; None otherwise."""
        return self._machine.abort_reason

    @property
    def byte_offset(self) -> int:
        """Bytes of the stream received so far (including the starting ``byte_offset``);
        pass it to a new ``read()`` to resume."""
        return self._machine.seen_offset

    @property
    def done(self) -> bool:
        """True once the end of the stream was read."""
        return self._machine.done

    def __repr__(self) -> str:
        which = self.stream_id or self.client_id
        return f"<{type(self).__name__} {which!r} at byte {self.byte_offset}>"


class StreamReader(_ReaderBase[ChunkT]):
    """Reads one stream (blocking): ``for chunk in reader``; ends at the stream's end."""

    def __init__(
        self,
        settings: Settings,
        transport: SyncTransport,
        machine: ReaderMachine,
        log: LiveLog,
        as_bytes: bool,
    ) -> None:
        self._machine = machine
        self._transport = transport
        self._session = SyncSession(
            settings, transport, machine, log, name="instantdb-stream-reader"
        )
        self._decoder: _Decoder[ChunkT] = _Decoder(as_bytes)
        self._chunks: Iterator[ChunkT] | None = None
        self._closed = False

    def __enter__(self) -> StreamReader[ChunkT]:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[ChunkT]:
        return self

    def __next__(self) -> ChunkT:
        self._start()
        assert self._chunks is not None
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop reading (unsubscribes if the stream has not ended). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._chunks is not None:
            self._session.act(self._machine.close)
            self._session.stop()

    def _start(self) -> None:
        if self._closed:
            raise InstantError("this stream reader is closed; open a new one to read again")
        if self._chunks is None:
            self._session.start()
            self._chunks = self._produce()

    def _produce(self) -> Iterator[ChunkT]:
        machine = self._machine
        while True:
            self._session.wait_for(lambda: bool(machine.segments) or machine.finished, None)
            segment = self._session.read(_next_segment, machine)
            if segment is None:
                if machine.error is not None:
                    raise machine.error
                if machine.done or self._closed:
                    return  # closed meanwhile (from another thread or task): end here
                continue
            try:
                yield from self._segment(segment)
            except (StreamFetchError, StreamCorruptedError) as error:
                self._session.act(functools.partial(machine.resubscribe, error))
                continue
            if segment.done:
                tail = self._decoder.chunk(b"", final=True)
                self._session.read(machine.complete, segment)
                if tail:
                    yield tail
                return

    def _segment(self, segment: Segment) -> Iterator[ChunkT]:
        if segment.offset is None:
            return
        position = segment.offset
        for url in segment.files:
            for data in self._download(url):
                fresh = self._session.read(self._machine.accept, position, data)
                position += len(data)
                if fresh:
                    out = self._decoder.chunk(fresh)
                    if out:
                        yield out
        if segment.content:
            fresh = self._session.read(self._machine.accept, position, segment.content)
            if fresh:
                out = self._decoder.chunk(fresh)
                if out:
                    yield out

    def _download(self, url: str) -> Iterator[bytes]:
        # Stream files sit behind unguessable URLs: no credentials are sent there.
        client = self._transport.client
        try:
            with client.stream(
                "GET",
                url,
                headers={"user-agent": USER_AGENT},
                timeout=self._transport.timeout,
                follow_redirects=True,
            ) as response:
                if not response.is_success:
                    raise _download_failure(response, response.read())
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise StreamFetchError(
                f"downloading a part of the stream failed ({type(exc).__name__})"
            ) from exc


class AsyncStreamReader(_ReaderBase[ChunkT]):
    """Reads one stream (asyncio): ``async for chunk in reader``; ends at the stream's end."""

    def __init__(
        self,
        settings: Settings,
        transport: AsyncTransport,
        machine: ReaderMachine,
        log: LiveLog,
        as_bytes: bool,
    ) -> None:
        self._machine = machine
        self._transport = transport
        self._session = AsyncSession(
            settings, transport, machine, log, name="instantdb-stream-reader"
        )
        self._decoder: _Decoder[ChunkT] = _Decoder(as_bytes)
        self._chunks: AsyncIterator[ChunkT] | None = None
        self._closed = False

    async def __aenter__(self) -> AsyncStreamReader[ChunkT]:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[ChunkT]:
        return self

    async def __anext__(self) -> ChunkT:
        self._start()
        assert self._chunks is not None
        try:
            return await anext(self._chunks)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop reading (unsubscribes if the stream has not ended). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._chunks is not None:
            await self._session.act(self._machine.close)
            await self._session.stop()

    def _start(self) -> None:
        if self._closed:
            raise InstantError("this stream reader is closed; open a new one to read again")
        if self._chunks is None:
            self._session.start()
            self._chunks = self._produce()

    async def _produce(self) -> AsyncIterator[ChunkT]:
        machine = self._machine
        while True:
            await self._session.wait_for(lambda: bool(machine.segments) or machine.finished, None)
            self._session.check_crash()
            segment = machine.segments.popleft() if machine.segments else None
            if segment is None:
                if machine.error is not None:
                    raise machine.error
                if machine.done or self._closed:
                    return  # closed meanwhile (from another thread or task): end here
                continue
            try:
                async for out in self._segment(segment):
                    yield out
            except (StreamFetchError, StreamCorruptedError) as error:
                await self._session.act(functools.partial(machine.resubscribe, error))
                continue
            if segment.done:
                tail = self._decoder.chunk(b"", final=True)
                machine.complete(segment)
                if tail:
                    yield tail
                return

    async def _segment(self, segment: Segment) -> AsyncIterator[ChunkT]:
        if segment.offset is None:
            return
        position = segment.offset
        for url in segment.files:
            async for data in self._download(url):
                fresh = self._machine.accept(position, data)
                position += len(data)
                if fresh:
                    out = self._decoder.chunk(fresh)
                    if out:
                        yield out
        if segment.content:
            fresh = self._machine.accept(position, segment.content)
            if fresh:
                out = self._decoder.chunk(fresh)
                if out:
                    yield out

    async def _download(self, url: str) -> AsyncIterator[bytes]:
        client = self._transport.client
        try:
            async with client.stream(
                "GET",
                url,
                headers={"user-agent": USER_AGENT},
                timeout=self._transport.timeout,
                follow_redirects=True,
            ) as response:
                if not response.is_success:
                    raise _download_failure(response, await response.aread())
                async for data in response.aiter_bytes():
                    yield data
        except httpx.HTTPError as exc:
            raise StreamFetchError(
                f"downloading a part of the stream failed ({type(exc).__name__})"
            ) from exc


class Streams:
    """``db.streams`` (blocking): write and read durable text streams."""

    def __init__(self, settings: Settings, transport: SyncTransport, log: LiveLog) -> None:
        self._settings = settings
        self._transport = transport
        self._log = log

    def write(
        self,
        *,
        client_id: str,
        rule_params: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_STREAM_TIMEOUT,
    ) -> StreamWriter:
        """A writer for a new stream named ``client_id`` (unique per app).

        ``with db.streams.write(client_id="c1") as w: w.write("...")``. Leaving the block
        ends the stream (aborted with the exception's text if the block raised).
        ``timeout`` bounds the waits for the start and the final flush.
        """
        return StreamWriter(
            self._settings, self._transport, client_id, rule_params, self._log, timeout
        )

    def read(
        self,
        *,
        stream_id: str | None = None,
        client_id: str | None = None,
        byte_offset: int = 0,
        rule_params: Mapping[str, Any] | None = None,
        as_bytes: bool = False,
    ) -> StreamReader[Any]:
        """A reader of a stream, by ``stream_id`` or ``client_id``, from ``byte_offset``.

        Yields text chunks (``as_bytes=True``: the raw bytes) until the stream ends.
        """
        machine = _reader_machine(self._settings, stream_id, client_id, byte_offset, rule_params)
        return StreamReader(self._settings, self._transport, machine, self._log, as_bytes)


class AsyncStreams:
    """``db.streams`` (asyncio): write and read durable text streams."""

    def __init__(self, settings: Settings, transport: AsyncTransport, log: LiveLog) -> None:
        self._settings = settings
        self._transport = transport
        self._log = log

    def write(
        self,
        *,
        client_id: str,
        rule_params: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_STREAM_TIMEOUT,
    ) -> AsyncStreamWriter:
        """A writer for a new stream named ``client_id``; see `Streams.write`."""
        return AsyncStreamWriter(
            self._settings, self._transport, client_id, rule_params, self._log, timeout
        )

    def read(
        self,
        *,
        stream_id: str | None = None,
        client_id: str | None = None,
        byte_offset: int = 0,
        rule_params: Mapping[str, Any] | None = None,
        as_bytes: bool = False,
    ) -> AsyncStreamReader[Any]:
        """A reader of a stream; see `Streams.read`."""
        machine = _reader_machine(self._settings, stream_id, client_id, byte_offset, rule_params)
        return AsyncStreamReader(self._settings, self._transport, machine, self._log, as_bytes)
