"""Streams over a session (live-protocol section 2): durable append-only UTF-8 text.

A writer opens a stream with ``start-stream`` (created, or resumed with the same
client id and reconnect token), then sends ``append-stream`` messages whose
``offset`` must equal the bytes accepted so far: that check is the only idempotency
there is, so a replayed append is refused, never applied twice. Every accepted append
is on disk before ``stream-flushed`` acknowledges it (see `_stream_store`), so the
offset a resuming writer is told is always durable. The appends queued for a stream
right behind one another (a push's, or those pushed while the previous were stored) are
checked one by one, in order, as if alone, and then stored together: one durable write,
one ``stream-flushed``. ``$streams`` rows are written through the engine, so queries and
live queries see them like any other data.

A reader's ``subscribe-stream`` gets the stream from a byte offset: a finished stream
in one message (its files), a live one as a snapshot (closed files plus the chunks of
the open part) followed by each append and the completion. Readers stay attached while
the writer is away and carry on when it resumes. Offsets are never split: a reply may
start before the requested byte, and the reader discards the difference.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from instantdb_local import errors
from instantdb_local.engine import Actor
from instantdb_local.errors import ServerError
from instantdb_local.instance import Instance

from ._session import Session
from ._stream_store import PART_LIMIT, Part, Piece, StreamStore
from ._wire import error_event, op_error

logger = logging.getLogger("instantdb_local")

STORE_DIR = "streams"
FILES_ROUTE = "/local/stream-files"
GROUP_LIMIT = 16 * 1024 * 1024
"""Characters of text one group of appends stores at most (the first append always
goes, whatever its size): bounds how long the stream's readers wait for a write."""
_FILE_ID_NAMESPACE = uuid.UUID("0d9f4a52-3b8e-4f61-a0c2-7e5b9d1c6a83")


def hash_reconnect_token(token: str) -> str:
    """Lowercase hex SHA-256 of the token UUID's 16 bytes, as ``$streams`` stores it."""
    return hashlib.sha256(uuid.UUID(token).bytes).hexdigest()


@dataclass(eq=False)
class LiveStream:
    """One stream's state while a writer, a reader or an operation holds it."""

    app_id: str
    id: str
    client_id: str
    hashed_token: str = field(repr=False)
    machine_id: str | None
    parts: list[Part]  # closed parts, in order
    size: int = 0
    done: bool = False
    abort_reason: str | None = None
    # The part appends currently go to, and its chunks as (start offset, bytes).
    open_part: int | None = None
    open_chunks: list[tuple[int, bytes]] = field(default_factory=list, repr=False)
    writer: Session | None = None
    # (session id, subscribe event id) -> the reading session
    readers: dict[tuple[str, str], Session] = field(default_factory=dict, repr=False)
    # Serialises the appends, the writer takeover and the reader snapshots.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    pins: int = 0  # operations in progress that hold this object

    @property
    def open_size(self) -> int:
        return sum(len(chunk) for _, chunk in self.open_chunks)

    def close_open_part(self) -> None:
        if self.open_part is not None and self.open_chunks:
            start = self.open_chunks[0][0]
            self.parts.append(Part(self.open_part, start, self.open_size))
        self.open_part = None
        self.open_chunks = []

    def plan(self, chunks: list[bytes]) -> list[tuple[int, bytes]]:
        """The part each chunk goes to: the open one until it holds `PART_LIMIT` bytes,
        then the next. Chunks are never split (as the real server's buffer), so readers
        can start at any of them."""
        index = self.open_part
        size = self.open_size
        placed = []
        for chunk in chunks:
            if index is None or size >= PART_LIMIT:
                if index is None:
                    index = self.parts[-1].index + 1 if self.parts else 0
                else:
                    index += 1
                size = 0
            placed.append((index, chunk))
            size += len(chunk)
        return placed

    def pieces(self, placed: list[tuple[int, bytes]]) -> list[Piece]:
        """What to write for `plan`'s chunks: one piece per part, from where it ends."""
        runs: list[tuple[int, list[bytes]]] = []
        for index, chunk in placed:
            if runs and runs[-1][0] == index:
                runs[-1][1].append(chunk)
            else:
                runs.append((index, [chunk]))
        return [
            Piece(index, self.open_size if index == self.open_part else 0, b"".join(chunks))
            for index, chunks in runs
        ]

    def add(self, placed: list[tuple[int, bytes]]) -> None:
        """Take `plan`'s chunks, now stored, into the stream."""
        for index, chunk in placed:
            if index != self.open_part:
                self.close_open_part()
                self.open_part = index
            self.open_chunks.append((self.size, chunk))
            self.size += len(chunk)

    @property
    def idle(self) -> bool:
        return self.writer is None and not self.readers and self.pins == 0


class LiveStreams:
    """Every stream a session of this server writes or reads. Event loop only, except
    the methods documented as blocking."""

    def __init__(self, instance: Instance, *, machine_id: str) -> None:
        self._instance = instance
        self._machine_id = machine_id
        self._stores: dict[str, StreamStore] = {}
        self._stores_lock = threading.Lock()
        self._streams: dict[tuple[str, str], LiveStream] = {}
        self._by_client: dict[tuple[str, str], LiveStream] = {}
        self._app_locks: dict[str, asyncio.Lock] = {}
        self._writing: dict[str, dict[str, LiveStream]] = {}
        self._reading: dict[str, dict[str, LiveStream]] = {}

    # -- writers --------------------------------------------------------------------------

    async def start(self, session: Session, message: Mapping[str, Any]) -> None:
        client_id = message.get("client-id")
        token = message.get("reconnect-token")
        rule_params = message.get("rule-params")
        if not isinstance(client_id, str) or not client_id.strip():
            raise op_error("start-stream", message, "client-id must be a non-blank string.")
        if not _is_uuid(token):
            raise op_error("start-stream", message, "reconnect-token must be a UUID string.")
        assert isinstance(token, str)
        if rule_params is not None and not isinstance(rule_params, dict):
            raise op_error("start-stream", message, "rule-params must be an object.")
        actor = session.actor
        if not actor.is_admin:
            # Only the client id is visible to the create rule; with no rule, deny.
            allowed = await anyio.to_thread.run_sync(
                self._check_rule,
                session.app_id,
                "create",
                {"clientId": client_id},
                actor,
                rule_params,
            )
            if not allowed:
                raise errors.permission_denied(["$streams", "create"])
        hashed = hash_reconnect_token(token)
        app_id = session.app_id
        stream: LiveStream | None = None
        attached = False
        try:
            async with self._app_lock(app_id):
                stream = await self._load(app_id, client_id=client_id)
                if stream is None:
                    stream_id = str(uuid.uuid4())
                    await anyio.to_thread.run_sync(
                        self._create_record, app_id, stream_id, client_id, hashed
                    )
                    stream = LiveStream(app_id, stream_id, client_id, hashed, self._machine_id, [])
                    self._register(stream)
                else:
                    if not hmac.compare_digest(stream.hashed_token, hashed):
                        raise op_error(
                            "start-stream",
                            message,
                            "A stream with that clientId already exists. "
                            "Reconnect token is invalid.",
                        )
                    if stream.done:
                        raise op_error("start-stream", message, "Stream is closed.")
                    if stream.machine_id != self._machine_id:
                        await anyio.to_thread.run_sync(self._set_machine_id, app_id, stream.id)
                        stream.machine_id = self._machine_id
                # Waits for an append of a previous writer to finish before taking over.
                async with stream.lock:
                    # The connection may have gone away meanwhile: then nobody writes.
                    attached = not session.closed
                    if attached:
                        previous = stream.writer
                        if previous is not None and previous is not session:
                            self._writing.get(previous.id, {}).pop(stream.id, None)
                        stream.writer = session
                        self._writing.setdefault(session.id, {})[stream.id] = stream
        finally:
            # A refused or abandoned start leaves nothing held in memory.
            if stream is not None:
                self._release(stream)
        if not attached:
            return
        session.emit(
            {
                "op": "start-stream-ok",
                "client-event-id": message.get("client-event-id"),
                "client-id": client_id,
                "stream-id": stream.id,
                "offset": stream.size,
            }
        )

    async def append(self, session: Session, message: Mapping[str, Any]) -> None:
        """``append-stream``, with the appends for the same stream queued right behind it."""
        stream_id = message.get("stream-id")
        group = [message, *session.inbox.take_while(_next_in_group(message))]
        stream = self._writing.get(session.id, {}).get(str(stream_id))
        if stream is None:
            for each in group:
                with _reported(session, each):
                    _parse_append(each)
                    raise op_error("append-stream", each, "Stream is missing.")
            return
        try:
            async with stream.lock:
                await self._append_locked(stream, session, group)
        finally:
            self._release(stream)

    async def _append_locked(
        self, stream: LiveStream, session: Session, group: list[Mapping[str, Any]]
    ) -> None:
        # Each append is checked as if the ones accepted before it were stored already;
        # a refused one gets its error and the rest carry on, as one at a time would.
        accepted: list[_Append] = []
        size, done = stream.size, stream.done
        for message in group:
            with _reported(session, message):
                append = _parse_append(message)
                if stream.writer is not session:
                    raise op_error("append-stream", message, "Stream is missing.")
                if done:
                    raise op_error("append-stream", message, "Stream is completed.")
                if append.offset != size:
                    raise op_error(
                        "append-stream",
                        message,
                        "Invalid offset for stream.",
                        **{"expected-offset": size, "offset": append.offset},
                    )
                accepted.append(append)
                size += len(append.data)
                done = append.done
        if not accepted:
            return
        written = [append for append in accepted if append.data]
        if written and not await self._store(stream, written, session):
            return
        last = accepted[-1]
        if last.done:
            await self._finish(stream, session, last.abort_reason)
        elif written:
            flushed = {"op": "stream-flushed", "stream-id": stream.id, "offset": stream.size}
            session.emit({**flushed, "done": False})

    async def _store(self, stream: LiveStream, appends: list[_Append], writer: Session) -> bool:
        """Store the appends' bytes durably (one write), then pass them to the readers."""
        start = stream.size
        placed = stream.plan([append.data for append in appends])
        store = self._stores[stream.app_id]
        try:
            await anyio.to_thread.run_sync(store.append, stream.id, stream.pieces(placed))
        except OSError:
            logger.exception("Could not store an append to stream %s", stream.id)
            writer.emit({"op": "append-failed", "stream-id": stream.id})
            return False
        stream.add(placed)
        if stream.readers:
            content = "".join(append.text for append in appends)
            self._to_readers(stream, {"offset": start, "content": content})
        return True

    async def _finish(self, stream: LiveStream, writer: Session, abort_reason: str | None) -> None:
        attrs: dict[str, Any] = {"done": True, "size": stream.size}
        if abort_reason is not None:
            attrs["abortReason"] = abort_reason
        try:
            await anyio.to_thread.run_sync(self._update_record, stream.app_id, stream.id, attrs)
        except (ServerError, sqlite3.Error, OSError):
            logger.exception("Could not mark stream %s done", stream.id)
            writer.emit({"op": "append-failed", "stream-id": stream.id})
            return
        stream.close_open_part()
        stream.done = True
        stream.abort_reason = abort_reason
        completion: dict[str, Any] = {"done": True}
        if abort_reason is not None:
            completion["abort-reason"] = abort_reason
        self._to_readers(stream, completion)
        writer.emit(
            {"op": "stream-flushed", "stream-id": stream.id, "offset": stream.size, "done": True}
        )
        # A finished stream has nothing more to tell its readers. Its writer stays
        # registered until its session ends, so a late append is told the stream is
        # completed rather than missing.
        for reader_id, subscribe_id in stream.readers:
            self._reading.get(reader_id, {}).pop(subscribe_id, None)
        stream.readers.clear()

    # -- readers --------------------------------------------------------------------------

    async def subscribe(self, session: Session, message: Mapping[str, Any]) -> None:
        stream_id = message.get("stream-id")
        client_id = message.get("client-id")
        offset = message.get("offset", 0)
        rule_params = message.get("rule-params")
        subscribe_id = message.get("client-event-id")
        if stream_id is None and client_id is None:
            raise op_error(
                "subscribe-stream", message, "Must provide either a stream-id or a client-id"
            )
        if stream_id is not None and not isinstance(stream_id, str):
            raise op_error("subscribe-stream", message, "stream-id must be a string.")
        if client_id is not None and not isinstance(client_id, str):
            raise op_error("subscribe-stream", message, "client-id must be a string.")
        if offset is None:
            offset = 0
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise op_error("subscribe-stream", message, "offset must be a non-negative integer.")
        if rule_params is not None and not isinstance(rule_params, dict):
            raise op_error("subscribe-stream", message, "rule-params must be an object.")
        if not isinstance(subscribe_id, str) or not subscribe_id:
            raise op_error(
                "subscribe-stream", message, "client-event-id is required: it names the reader."
            )
        app_id = session.app_id
        async with self._app_lock(app_id):
            # The stream id wins when both are given.
            if stream_id is not None:
                stream = await self._load(app_id, stream_id=stream_id)
            else:
                stream = await self._load(app_id, client_id=client_id)
            if stream is None:
                raise op_error("subscribe-stream", message, "Stream is missing.")
            stream.pins += 1
        try:
            if not session.actor.is_admin:
                allowed = await anyio.to_thread.run_sync(
                    self._may_view, stream, session.actor, rule_params
                )
                if not allowed:
                    raise errors.permission_denied(["$streams", "view"])
            async with stream.lock:
                if not session.closed:
                    self._answer_reader(stream, session, subscribe_id, offset)
        finally:
            stream.pins -= 1
            self._release(stream)

    def _answer_reader(
        self, stream: LiveStream, session: Session, subscribe_id: str, wanted: int
    ) -> None:
        # Whole parts and whole chunks that end at or before the wanted byte are
        # skipped; the first one kept may start before it.
        parts = [part for part in stream.parts if part.end > wanted]
        files = [self._file(stream, part, session) for part in parts]
        header = {
            "op": "stream-append",
            "client-event-id": subscribe_id,
            "stream-id": stream.id,
            "client-id": stream.client_id,
        }
        if stream.done:
            start = parts[0].start if parts else stream.size
            done = {"done": True, "abort-reason": stream.abort_reason}
            session.emit({**header, "offset": start, "files": files, **done})
            return
        if parts:
            start, chunks = parts[0].start, stream.open_chunks
        else:
            chunks = [(at, chunk) for at, chunk in stream.open_chunks if at + len(chunk) > wanted]
            start = chunks[0][0] if chunks else stream.size
        content = b"".join(chunk for _, chunk in chunks).decode("utf-8")
        session.emit({**header, "offset": start, "files": files, "content": content})
        key = (session.id, subscribe_id)
        stream.readers[key] = session
        previous = self._reading.setdefault(session.id, {}).get(subscribe_id)
        if previous is not None and previous is not stream:
            previous.readers.pop(key, None)
            self._release(previous)
        self._reading[session.id][subscribe_id] = stream

    async def unsubscribe(self, session: Session, message: Mapping[str, Any]) -> None:
        subscribe_id = message.get("subscribe-event-id")
        stream = self._reading.get(session.id, {}).pop(str(subscribe_id), None)
        if stream is None:
            # Also the normal answer after reading a finished stream, which registers
            # no reader; clients ignore it.
            raise op_error("unsubscribe-stream", message, "Stream subscription is missing.")
        stream.readers.pop((session.id, str(subscribe_id)), None)
        self._release(stream)

    def _to_readers(self, stream: LiveStream, fields: Mapping[str, Any]) -> None:
        for (_, subscribe_id), reader in stream.readers.items():
            reader.emit(
                {
                    "op": "stream-append",
                    "client-event-id": subscribe_id,
                    "stream-id": stream.id,
                    "client-id": stream.client_id,
                    **fields,
                }
            )

    def _file(self, stream: LiveStream, part: Part, session: Session) -> dict[str, Any]:
        key = self._stores[stream.app_id].file_key(stream.id, part.index)
        url = f"{session.base_url}{FILES_ROUTE}/{stream.app_id}/{key}/{stream.id}/{part.index}"
        file_id = uuid.uuid5(_FILE_ID_NAMESPACE, f"{stream.id}/{part.index}")
        return {"id": str(file_id), "size": part.size, "url": url}

    # -- sessions ending ------------------------------------------------------------------

    def drop_session(self, session: Session) -> None:
        """Forget a closed session: its writes stop (the stream stays open and can be
        resumed), its readers are cancelled."""
        for stream in self._writing.pop(session.id, {}).values():
            if stream.writer is session:
                stream.writer = None
            self._release(stream)
        for subscribe_id, stream in self._reading.pop(session.id, {}).items():
            stream.readers.pop((session.id, subscribe_id), None)
            self._release(stream)

    def _release(self, stream: LiveStream) -> None:
        # Idle streams are forgotten and reloaded from disk when next used, so a
        # `$streams` row edited or deleted meanwhile is seen as it is.
        if stream.idle and not stream.lock.locked():
            if self._streams.get((stream.app_id, stream.id)) is stream:
                del self._streams[(stream.app_id, stream.id)]
            if self._by_client.get((stream.app_id, stream.client_id)) is stream:
                del self._by_client[(stream.app_id, stream.client_id)]

    # -- loading --------------------------------------------------------------------------

    def _app_lock(self, app_id: str) -> asyncio.Lock:
        lock = self._app_locks.get(app_id)
        if lock is None:
            lock = self._app_locks[app_id] = asyncio.Lock()
        return lock

    def _register(self, stream: LiveStream) -> None:
        self._streams[(stream.app_id, stream.id)] = stream
        self._by_client[(stream.app_id, stream.client_id)] = stream

    async def _load(
        self, app_id: str, *, stream_id: str | None = None, client_id: str | None = None
    ) -> LiveStream | None:
        """The stream, from memory or disk (hold the app's lock)."""
        if stream_id is not None:
            cached = self._streams.get((app_id, stream_id.lower()))
        else:
            cached = self._by_client.get((app_id, str(client_id)))
        if cached is not None:
            return cached
        loaded = await anyio.to_thread.run_sync(self._read_stream, app_id, stream_id, client_id)
        if loaded is not None:
            self._register(loaded)
        return loaded

    # -- blocking helpers (worker threads) --------------------------------------------------

    def store(self, app_id: str) -> StreamStore:
        """The app's stream store, opened on first use (blocking)."""
        with self._stores_lock:
            store = self._stores.get(app_id)
            if store is None:
                engine = self._instance.engine(app_id)
                store = self._stores[app_id] = StreamStore(engine.path.parent / STORE_DIR)
            return store

    def _read_stream(
        self, app_id: str, stream_id: str | None, client_id: str | None
    ) -> LiveStream | None:
        record = self._fetch_record(app_id, stream_id=stream_id, client_id=client_id)
        if record is None:
            return None
        store = self.store(app_id)
        parts = store.parts(record["id"])
        stream = LiveStream(
            app_id=app_id,
            id=record["id"],
            client_id=str(record.get("clientId")),
            hashed_token=str(record.get("hashedReconnectToken") or ""),
            machine_id=record.get("machineId"),
            parts=parts,
            size=sum(part.size for part in parts),
            done=record.get("done") is True,
            abort_reason=record.get("abortReason"),
        )
        return stream

    def _fetch_record(
        self, app_id: str, *, stream_id: str | None = None, client_id: str | None = None
    ) -> dict[str, Any] | None:
        if stream_id is not None:
            if not _is_uuid(stream_id):
                return None
            where: dict[str, Any] = {"id": stream_id.lower()}
        else:
            where = {"clientId": client_id}
        engine = self._instance.engine(app_id)
        rows = engine.query({"$streams": {"$": {"where": where}}}, Actor.admin())["$streams"]
        return dict(rows[0]) if rows else None

    def _create_record(self, app_id: str, stream_id: str, client_id: str, hashed: str) -> None:
        self.store(app_id)  # so the first append finds it open
        attrs = {
            "clientId": client_id,
            "machineId": self._machine_id,
            "hashedReconnectToken": hashed,
        }
        self._update_record(app_id, stream_id, attrs)

    def _set_machine_id(self, app_id: str, stream_id: str) -> None:
        self.store(app_id)
        self._update_record(app_id, stream_id, {"machineId": self._machine_id})

    def _update_record(self, app_id: str, stream_id: str, attrs: Mapping[str, Any]) -> None:
        engine = self._instance.engine(app_id)
        steps = [["update", "$streams", stream_id, dict(attrs)]]
        # `$streams` columns are the system's to write; clients may not.
        engine.transact(steps, Actor.admin(), system_writes=True)

    def _check_rule(
        self,
        app_id: str,
        action: str,
        data: Mapping[str, Any],
        actor: Actor,
        rule_params: Mapping[str, Any] | None,
    ) -> bool:
        engine = self._instance.engine(app_id)
        return engine.check_rule("$streams", action, data, actor, rule_params=rule_params)

    def _may_view(
        self, stream: LiveStream, actor: Actor, rule_params: Mapping[str, Any] | None
    ) -> bool:
        # The view rule sees the whole `$streams` entity.
        record = self._fetch_record(stream.app_id, stream_id=stream.id)
        if record is None:
            return False
        return self._check_rule(stream.app_id, "view", record, actor, rule_params)

    def read_file(self, app_id: str, key: str, stream_id: str, index: int) -> bytes | None:
        """The bytes a stream file URL serves, or None (blocking)."""
        if self._instance.find_app(app_id) is None or not _is_uuid(stream_id):
            return None
        store = self.store(app_id)
        if not store.check_file_key(stream_id, index, key):
            return None
        return store.read_part(stream_id, index)


@dataclass(frozen=True)
class _Append:
    """An ``append-stream`` message whose fields have the right types."""

    text: str
    data: bytes  # the text as UTF-8
    offset: int
    done: bool
    abort_reason: str | None


def _parse_append(message: Mapping[str, Any]) -> _Append:
    chunks = message.get("chunks")
    offset = message.get("offset")
    done = message.get("done")
    abort_reason = message.get("abort-reason")
    if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
        raise op_error("append-stream", message, "chunks must be a list of strings.")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise op_error("append-stream", message, "offset must be a non-negative integer.")
    if done is not None and not isinstance(done, bool):
        raise op_error("append-stream", message, "done must be true or false.")
    if abort_reason is not None and not isinstance(abort_reason, str):
        raise op_error("append-stream", message, "abort-reason must be a string.")
    text = "".join(chunks)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise op_error(
            "append-stream", message, "chunks must be valid Unicode text (no lone surrogates)."
        ) from None
    return _Append(text, data, offset, done is True, abort_reason)


def _next_in_group(first: Mapping[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Whether a queued message joins the group of appends that ``first`` starts: an
    append to the same stream, while the group has not ended (``done``) nor grown past
    `GROUP_LIMIT`."""
    stream_id = first.get("stream-id")
    state = {"size": _text_size(first), "ended": first.get("done") is True}

    def wanted(message: dict[str, Any]) -> bool:
        if state["ended"] or message.get("op") != "append-stream":
            return False
        if message.get("stream-id") != stream_id:
            return False
        size = state["size"] + _text_size(message)
        if size > GROUP_LIMIT:
            return False
        state["size"], state["ended"] = size, message.get("done") is True
        return True

    return wanted


def _text_size(message: Mapping[str, Any]) -> int:
    chunks = message.get("chunks")
    if not isinstance(chunks, list):
        return 0
    return sum(len(chunk) for chunk in chunks if isinstance(chunk, str))


class _reported:
    """Turns a `ServerError` raised for ``message`` into its ``error`` event."""

    def __init__(self, session: Session, message: Mapping[str, Any]) -> None:
        self._session = session
        self._message = message

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> bool:
        if isinstance(exc, ServerError):
            self._session.emit(error_event(self._message, exc))
            return True
        return False


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
