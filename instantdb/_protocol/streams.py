"""Streams (wire protocol §7): the session requests and the writer and reader state
machines. No I/O.

A stream session is an SSE connection (``POST /admin/sse``) for what the server says and
``POST /admin/sse/push`` for what the client says. The shells open sessions, push the
messages these machines return and feed them every message received; the machines hold
all the protocol decisions:

Writer (`WriterMachine`)

* Every byte written is kept until the server reports it durable (``stream-flushed``),
  so a restart can resend exactly what the server lacks. It is kept once: in blocks
  (`BLOCK_SIZE`) that the appends refer to instead of copying, and a push's body
  (`PushBody`) lets its pieces go as they are sent. A writer so holds its buffer plus
  one push, however long the stream.
* Writes only add to that buffer. The shell asks for the appends to push
  (`WriterMachine.take`) when it is ready to send: everything written since the last
  push goes out together, as the JS SDK batches, in appends of at most `APPEND_LIMIT`
  bytes. How much may wait unconfirmed is bounded (`WriterMachine.has_room`): a
  producer faster than the server waits instead of growing the buffer without limit.
* ``start-stream`` is sent on every new session with the same reconnect token; its
  ``offset`` (the durable bytes) says where to resume, and the next appends resend the
  rest.
* An ``error`` for one of the current appends, or ``append-failed``, restarts the stream
  (a new ``start-stream`` on the same session) instead of leaving a sticky error. Restarts
  that make no progress are bounded by `MAX_RESTARTS`.
* Finishing sends the ``done`` append as soon as the stream is confirmed, even when the
  user's block ended before that, and is over when ``stream-flushed`` says ``done``.

Reader (`ReaderMachine`)

* ``subscribe-stream`` is sent on every new session at the offset already delivered to
  the user; whatever the server resends below it is discarded by offset, so nothing is
  duplicated or lost across reconnects.
* Received data is queued as `Segment` s (files to fetch, inline content, completion);
  the consumer turns them into bytes with `ReaderMachine.accept`.
* The iteration ends only on ``done``; a gap, a failed file fetch or a retryable error
  re-subscribes (bounded by `MAX_RESUBSCRIBES` without progress), a permanent error fails.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from instantdb._errors import InstantAPIError, InstantError, InstantValueError
from instantdb._json import dumps, mapping_to_json
from instantdb._settings import Settings
from instantdb._upload import CHUNK_SIZE, UploadSource

from ._call import Request, standard_headers
from .live import error_from_message, sse_headers, versions
from .reconnect import is_terminal

__all__ = [
    "APPEND_LIMIT",
    "BLOCK_SIZE",
    "BUFFER_LIMIT",
    "MAX_RESTARTS",
    "MAX_RESUBSCRIBES",
    "PushBody",
    "ReaderMachine",
    "Segment",
    "SessionIds",
    "StreamCorruptedError",
    "Text",
    "WriterMachine",
    "push_request",
    "session_ids",
    "session_request",
]

MAX_RESTARTS = 5
MAX_RESUBSCRIBES = 10
APPEND_LIMIT = 1024 * 1024
"""UTF-8 bytes one ``append-stream`` carries at most: a bigger write (or a bigger
backlog resent after a resume) goes as several appends, so no push body outgrows what
a server takes in one request (32 MiB on the local server)."""
BUFFER_LIMIT = 8 * 1024 * 1024
"""UTF-8 bytes a writer holds unconfirmed before `write` waits for the server: enough
for one push in flight and the next being filled, so a fast producer never waits on a
round trip, and a bound on what a writer holds (plus the write that crossed it)."""
BLOCK_SIZE = 64 * 1024
"""Small writes are gathered into blocks of at most this many bytes; a bigger write is a
block of its own. Appends refer to whole blocks instead of copying them, and a block
stays as long as any of its bytes are unconfirmed."""

Message = dict[str, Any]


def _character_start(data: bytes | bytearray, end: int, *, floor: int) -> int:
    """``end``, moved back to the start of the character it falls inside of; if that
    is ``floor`` (a character longer than the room left), past that character."""
    cut = end
    while cut > floor and data[cut] & 0xC0 == 0x80:
        cut -= 1
    if cut > floor:
        return cut
    cut = end
    while cut < len(data) and data[cut] & 0xC0 == 0x80:
        cut += 1
    return cut


class StreamCorruptedError(InstantError):
    """The server's offsets contradict the bytes this client wrote or received."""


@dataclass(frozen=True)
class SessionIds:
    """What ``sse-init`` gives: the ids every push must carry (the token is a secret)."""

    machine_id: str
    session_id: str
    sse_token: str = field(repr=False)


def session_ids(message: Mapping[str, Any]) -> SessionIds:
    """The ids of an ``sse-init`` message; an error if one is missing."""
    values = [message.get(key) for key in ("machine-id", "session-id", "sse-token")]
    if not all(isinstance(value, str) and value for value in values):
        raise InstantAPIError(
            "the stream session's sse-init lacks machine-id, session-id or sse-token. Is "
            "api_uri pointing at an Instant server?",
            status=200,
            body={key: message.get(key) for key in ("op", "machine-id", "session-id")},
        )
    machine_id, session_id, token = (str(value) for value in values)
    return SessionIds(machine_id, session_id, token)


def session_request(settings: Settings) -> Request:
    """``POST /admin/sse?app_id=...``: opens a session, answered by an event stream."""
    return Request(
        method="POST",
        path="/admin/sse",
        params=(("app_id", settings.app_id),),
        headers=sse_headers(settings),
        content=dumps({"inference?": False, "versions": versions()}),
        secrets=settings.secrets,
    )


def push_request(settings: Settings, session: SessionIds, messages: list[Message]) -> Request:
    """``POST /admin/sse/push?app_id=...``: messages for a session, answered ``{}``.

    The body is what ``dumps`` would write, byte for byte, except that `Text` goes in
    as the UTF-8 it already is: the text is nearly all of a push, and decoding it only
    for json to encode it again took most of a writer's time. It is a `PushBody`: the
    text's pieces are sent as they are, never joined into one copy of the push.
    """
    out: list[bytes] = []
    for key, value in (
        ("machine_id", session.machine_id),
        ("session_id", session.session_id),
        ("sse_token", session.sse_token),
    ):
        out += (b"{" if not out else b",", dumps(key), b":", dumps(value))
    out.append(b',"messages":[')
    for index, message in enumerate(messages):
        if index:
            out.append(b",")
        _encode_message(message, out)
    out.append(b"]}")
    return Request(
        method="POST",
        path="/admin/sse/push",
        params=(("app_id", settings.app_id),),
        headers=standard_headers(settings),
        content=PushBody(out),
        secrets=(*settings.secrets, session.sse_token),
    )


class Text:
    """A chunk of stream text, kept as the UTF-8 it was written in (see `push_request`).

    It is made of ``parts`` (together whole characters): usually the writer's own
    buffered blocks, so an append refers to the bytes it sends instead of copying them.
    """

    __slots__ = ("__weakref__", "parts")

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts

    @property
    def utf8(self) -> bytes:
        return b"".join(self.parts)

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __str__(self) -> str:
        return self.utf8.decode("utf-8")

    def __repr__(self) -> str:
        return repr(str(self))  # logged as the text it is

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Text) and other.utf8 == self.utf8

    __hash__ = None  # type: ignore[assignment]


class PushBody(UploadSource):
    """A push's JSON body as the pieces it was encoded in, sent one after another.

    Joining them would copy the whole push once more, and that copy would live as long
    as httpx keeps the request: its response and the response's stream refer to each
    other, so only the cycle collector frees them, long after the push. Each piece is
    handed out once and then forgotten, so what the body holds shrinks as it is sent and
    nothing of it outlives the push. A body is sent once: pushes are never retried.
    """

    replayable = False
    description = "a stream push"

    def __init__(self, pieces: list[bytes]) -> None:
        self.size = sum(len(piece) for piece in pieces)
        self._pieces: deque[bytes] | None = deque(piece for piece in pieces if piece)

    def open(self) -> _PushReader:
        if self._pieces is None:
            raise InstantError("a stream push body can be sent only once")
        pieces, self._pieces = self._pieces, None
        return _PushReader(pieces, self.size)

    async def open_async(self) -> _AsyncPushReader:
        return _AsyncPushReader(self.open())  # all in memory: no thread needed


class _PushReader:
    def __init__(self, pieces: deque[bytes], size: int) -> None:
        self._pieces = pieces
        self.size = size

    def read(self) -> bytes:
        """The next piece: a piece of text as it is (however big: copying it to cut it
        would cost more than the one bigger socket write), or small pieces gathered up to
        `CHUNK_SIZE` bytes, so the JSON between texts costs no write of its own."""
        pieces = self._pieces
        if not pieces:
            return b""
        gathered = [pieces.popleft()]
        size = len(gathered[0])
        while pieces and size + len(pieces[0]) <= CHUNK_SIZE:
            size += len(pieces[0])
            gathered.append(pieces.popleft())
        return gathered[0] if len(gathered) == 1 else b"".join(gathered)

    def close(self) -> None:
        self._pieces.clear()  # an aborted push keeps nothing either


class _AsyncPushReader:
    def __init__(self, reader: _PushReader) -> None:
        self._reader = reader
        self.size = reader.size

    async def read(self) -> bytes:
        return self._reader.read()

    async def close(self) -> None:
        self._reader.close()


def _encode_message(message: Message, out: list[bytes]) -> None:
    for index, (key, value) in enumerate(message.items()):
        out += (b"{" if not index else b",", dumps(key), b":")
        if isinstance(value, list) and value and all(isinstance(item, Text) for item in value):
            out.append(b"[")
            for position, item in enumerate(value):
                out.append(b'"' if not position else b'","')
                out.extend(_json_escaped(part) for part in item.parts)
            out.append(b'"]')
        else:
            out.append(dumps(value))
    out.append(b"}" if message else b"{}")


# What `json.dumps` escapes in a string (ensure_ascii=False): quote, backslash and the
# control characters, the common ones by name.
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')
_NAMED = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r"}
_CONTROL_ESCAPES = {code: _NAMED.get(code, b"\\u%04x" % code) for code in range(0x20)}
_OTHER_CONTROLS = bytes(code for code in range(0x20) if code not in (0x09, 0x0A, 0x0D))
_OTHER_CONTROL = re.compile(b"[" + re.escape(_OTHER_CONTROLS) + b"]")


def _json_escaped(data: bytes) -> bytes:
    """The inside of the JSON string of UTF-8 ``data``, as ``dumps`` writes it.

    ``bytes.replace`` and ``translate`` run at memory speed; a regular expression
    scanning every byte would cost more than all of them.
    """
    if _NEEDS_ESCAPE.search(data) is None:
        return data
    escaped = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    for code in (0x0A, 0x09, 0x0D):
        escaped = escaped.replace(bytes((code,)), _CONTROL_ESCAPES[code])
    if len(escaped.translate(None, _OTHER_CONTROLS)) != len(escaped):
        escaped = _OTHER_CONTROL.sub(lambda match: _CONTROL_ESCAPES[match[0][0]], escaped)
    return escaped


def _rule_params(rule_params: Mapping[str, Any] | None, method: str) -> dict[str, Any] | None:
    if rule_params is None:
        return None
    return mapping_to_json(rule_params, method=method, name="rule_params")


def _original_op(message: Mapping[str, Any]) -> object:
    original = message.get("original-event")
    return original.get("op") if isinstance(original, Mapping) else None


class WriterMachine:
    """One stream being written. Methods return the control messages to push, in
    order; the appends come from `take`, when the shell is ready to push."""

    def __init__(
        self,
        *,
        client_id: str,
        rule_params: Mapping[str, Any] | None,
        reconnect_token: str,
        new_id: Callable[[], str],
        secrets: tuple[str, ...] = (),
        buffer_limit: int | None = None,
    ) -> None:
        self.client_id = client_id
        self._rule_params = _rule_params(rule_params, "streams.write")
        self.buffer_limit = BUFFER_LIMIT if buffer_limit is None else buffer_limit
        self._reconnect_token = reconnect_token
        self._new_id = new_id
        self._secrets = secrets
        self.stream_id: str | None = None
        self.error: InstantError | None = None
        """Set when the stream can no longer be written (terminal)."""
        self.flushed_offset = 0
        """Bytes the server has reported durable."""
        self.total_bytes = 0
        # The unconfirmed bytes: whole-character blocks from offset `_blocks_start`
        # (at or before `flushed_offset`: the first block may be partly confirmed), then
        # the small writes being gathered into the next block.
        self._blocks: deque[bytes] = deque()
        self._blocks_start = 0
        self._tail = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._session_open = False
        self._start_event: str | None = None
        self._started = False
        self._sent_offset = 0  # where the next append starts (while started)
        self._append_events: set[str] = set()
        self._restarts = 0
        self._last_error: InstantError | None = None
        self.done_requested = False
        self.abort_reason: str | None = None
        self._done_sent = False
        self.done_flushed = False

    @property
    def finished(self) -> bool:
        """Nothing more will happen: the final flush arrived, or the stream failed."""
        return self.done_flushed or self.error is not None

    @property
    def reconnect_token(self) -> str:
        return self._reconnect_token

    @property
    def buffered(self) -> int:
        """Bytes written and not yet confirmed durable (held for a resend)."""
        return self.total_bytes - self.flushed_offset

    @property
    def held_bytes(self) -> int:
        """Bytes the buffer keeps in memory: the unconfirmed ones, and the confirmed
        start of a block that is still partly unconfirmed."""
        return sum(len(block) for block in self._blocks) + len(self._tail)

    @property
    def has_room(self) -> bool:
        """Whether a write may add to the buffer now (below `buffer_limit`)."""
        return self.buffered < self.buffer_limit

    @property
    def has_unsent(self) -> bool:
        """Whether `take` has something to push now."""
        if not self._started or not self._session_open or self.finished:
            return False
        return self._sent_offset < self.total_bytes or (self.done_requested and not self._done_sent)

    # -- session events ------------------------------------------------------------------

    def on_session_open(self) -> list[Message]:
        """A (new) session is up: (re)start the stream on it."""
        self._session_open = True
        self._started = False
        if self.finished:
            return []
        return [self._start_message()]

    def on_session_lost(self) -> None:
        self._session_open = False
        self._started = False
        self._start_event = None
        self._append_events.clear()

    def fail(self, error: InstantError) -> None:
        """A terminal failure from outside (the session could not be opened)."""
        if not self.finished:
            self.error = error

    # -- user actions --------------------------------------------------------------------

    def write(self, data: str | bytes) -> None:
        """Append ``data`` (text, or UTF-8 bytes that may split a character) to the
        buffer; `take` sends it. The caller keeps to `has_room`."""
        self._check_writable()
        if isinstance(data, str):
            if self._decoder.getstate()[0]:
                raise InstantValueError(
                    "write(str) after bytes that ended in the middle of a UTF-8 character; "
                    "write the rest of that character's bytes first"
                )
            text = data
        elif isinstance(data, (bytes, bytearray, memoryview)):
            try:
                text = self._decoder.decode(bytes(data))
            except UnicodeDecodeError as exc:
                self._decoder.reset()
                raise InstantValueError(
                    f"streams carry UTF-8 text, and these bytes are not UTF-8 ({exc.reason} at "
                    f"byte {exc.start}). Encode text as UTF-8, or base64-encode binary data."
                ) from None
        else:
            raise InstantValueError(
                f"write() takes str or bytes, got {type(data).__name__}"
            ) from None
        if not text:
            return
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InstantValueError(
                f"write() got text that is not valid Unicode: a lone surrogate "
                f"({text[exc.start]!r}) at character {exc.start}, which UTF-8 cannot carry. "
                "Fix how the text was decoded, e.g. bytes.decode('utf-8', errors='replace')."
            ) from None
        if len(encoded) >= BLOCK_SIZE:
            self._seal()
            self._blocks.append(encoded)  # kept as it is: no copy of a big write
        else:
            if len(self._tail) + len(encoded) > BLOCK_SIZE:
                self._seal()
            self._tail += encoded
        self.total_bytes += len(encoded)

    def finish(self, abort_reason: str | None = None) -> None:
        """Close the stream (``abort_reason``: mark it aborted); `take` sends the end
        after the last bytes. Idempotent."""
        if self.done_requested or self.error is not None:
            return
        if self._decoder.getstate()[0]:
            self._decoder.reset()
            raise InstantValueError(
                "the bytes written end in the middle of a UTF-8 character; write the rest of "
                "it before closing the stream"
            )
        self.done_requested = True
        self.abort_reason = abort_reason

    def take(self, budget: int) -> list[Message]:
        """The appends to push now: the bytes not yet sent on this start, up to
        ``budget`` bytes (at least one append when anything waits), each at most
        `APPEND_LIMIT`; the end goes with the last bytes once closing.

        The appends' `Text` refer to the buffered blocks; only a block cut by the
        budget, the append limit or a resume offset is copied, and only the part sent.
        """
        if not self.has_unsent:
            return []
        self._seal()
        end = self._push_end(self._sent_offset + max(budget, 1))
        messages: list[Message] = []
        parts: list[bytes] = []
        size = 0
        for part in self._parts(self._sent_offset, end):
            if parts and size + len(part) > APPEND_LIMIT:
                messages.append(self._append([Text(*parts)], self._sent_offset, done=False))
                self._sent_offset += size
                parts, size = [], 0
            parts.append(part)
            size += len(part)
        done = self.done_requested and end == self.total_bytes
        if parts or done:
            messages.append(
                self._append([Text(*parts)] if parts else [], self._sent_offset, done=done)
            )
            self._sent_offset += size
        self._done_sent = done
        return messages

    # -- server messages -----------------------------------------------------------------

    def on_message(self, message: Mapping[str, Any]) -> list[Message]:
        op = message.get("op")
        if self.finished:
            return []
        if op == "start-stream-ok":
            if message.get("client-event-id") != self._start_event:
                return []  # the answer to a start this writer has since replaced
            return self._on_started(message)
        if op != "error" and (self.stream_id is None or message.get("stream-id") != self.stream_id):
            return []  # about another stream, or before this one started
        if op == "stream-flushed":
            return self._on_flushed(message)
        if op == "append-failed":
            return self._restart(
                InstantAPIError(
                    "the server could not store the stream's data (append-failed)",
                    status=500,
                    body=dict(message),
                )
            )
        if op == "error":
            return self._on_error(message)
        return []

    def _on_started(self, message: Mapping[str, Any]) -> list[Message]:
        self._start_event = None
        stream_id, offset = message.get("stream-id"), message.get("offset")
        if (
            not isinstance(stream_id, str)
            or isinstance(offset, bool)
            or not isinstance(offset, int)
        ):
            self.error = StreamCorruptedError(
                f"start-stream-ok without a stream id and offset: {dict(message)!r}"
            )
            return []
        if self.stream_id is None and offset != 0:
            self.error = StreamCorruptedError(
                f"Write stream is corrupted: the server reports {offset} bytes already in the "
                f"new stream {self.client_id!r}"
            )
            return []
        if self.stream_id is not None and stream_id != self.stream_id:
            self.error = StreamCorruptedError(
                f"Write stream is corrupted: the server resumed stream {stream_id}, not "
                f"{self.stream_id}"
            )
            return []
        if not self.flushed_offset <= offset <= self.total_bytes:
            self.error = StreamCorruptedError(
                f"Write stream is corrupted: the server has {offset} durable bytes, but this "
                f"writer wrote {self.total_bytes} and {self.flushed_offset} were confirmed"
            )
            return []
        self._seal()
        if offset < self.total_bytes and self._splits_character(offset):
            self.error = StreamCorruptedError(
                f"Write stream is corrupted: the server's offset {offset} splits a character"
            )
            return []
        self.stream_id = stream_id
        self._drop_through(offset)
        self._started = True
        self._sent_offset = offset  # what follows goes out with the next `take`
        self._done_sent = False
        return []

    def _on_flushed(self, message: Mapping[str, Any]) -> list[Message]:
        offset = message.get("offset")
        if isinstance(offset, bool) or not isinstance(offset, int):
            return []
        if offset > self.total_bytes:
            self.error = StreamCorruptedError(
                f"Write stream is corrupted: the server flushed {offset} bytes, but this writer "
                f"wrote only {self.total_bytes}"
            )
            return []
        if offset > self.flushed_offset:
            self._drop_through(offset)
            self._sent_offset = max(self._sent_offset, offset)
            self._restarts = 0  # progress: the restart budget starts again
        if message.get("done") is True:
            if self.done_requested and offset == self.total_bytes:
                self.done_flushed = True
            else:
                self.error = StreamCorruptedError(
                    f"the server closed the stream at {offset} bytes, but this writer wrote "
                    f"{self.total_bytes}" + ("" if self.done_requested else " and did not close it")
                )
        return []

    def _on_error(self, message: Mapping[str, Any]) -> list[Message]:
        event = message.get("client-event-id")
        error = error_from_message(message, self._secrets, default_message="stream error")
        op = _original_op(message)
        if op == "start-stream" and (event == self._start_event or event is None):
            if is_terminal(error):
                self.error = error  # wrong token, stream closed, permission denied
                return []
            return self._restart(error)
        if op == "append-stream" and event in self._append_events:
            return self._restart(error)
        return []

    def _restart(self, error: InstantError) -> list[Message]:
        self._last_error = error
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            self.error = InstantError(
                f"the stream {self.client_id!r} could not be written: {MAX_RESTARTS} restarts "
                f"in a row made no progress; last error: {error}"
            )
            self.error.__cause__ = error
            return []
        self._started = False
        self._append_events.clear()
        if not self._session_open:
            return []  # the next session starts it anyway
        return [self._start_message()]

    # -- helpers -------------------------------------------------------------------------

    def _drop_through(self, offset: int) -> None:
        self._seal()
        blocks = self._blocks
        while blocks and self._blocks_start + len(blocks[0]) <= offset:
            self._blocks_start += len(blocks.popleft())
        self.flushed_offset = offset

    def _seal(self) -> None:
        """Make the gathered small writes a block (joined to the last block while that
        stays small, so tiny pushes leave no swarm of tiny blocks)."""
        if not self._tail:
            return
        blocks = self._blocks
        if blocks and len(blocks[-1]) + len(self._tail) <= BLOCK_SIZE:
            blocks[-1] += self._tail
        else:
            blocks.append(bytes(self._tail))
        self._tail = bytearray()

    def _block_at(self, offset: int) -> tuple[bytes, int]:
        """The block holding byte ``offset`` (buffered, sealed), and where it starts."""
        start = self._blocks_start
        for block in self._blocks:
            if offset < start + len(block):
                return block, start
            start += len(block)
        raise AssertionError(f"byte {offset} is not buffered")  # pragma: no cover

    def _splits_character(self, offset: int) -> bool:
        block, start = self._block_at(offset)
        return block[offset - start] & 0xC0 == 0x80

    def _push_end(self, wanted: int) -> int:
        """Where a push that may go to ``wanted`` ends: there, moved back to a character
        start (past the character instead when that leaves nothing to send)."""
        if wanted >= self.total_bytes:
            return self.total_bytes
        block, start = self._block_at(wanted)  # blocks start with a character
        cut = wanted - start
        while cut > 0 and block[cut] & 0xC0 == 0x80:
            cut -= 1
        if start + cut > self._sent_offset:
            return start + cut
        cut = wanted - start
        while cut < len(block) and block[cut] & 0xC0 == 0x80:
            cut += 1
        return start + cut

    def _parts(self, begin: int, end: int) -> Iterator[bytes]:
        """The buffered bytes from ``begin`` to ``end`` (character starts) as pieces of
        at most `APPEND_LIMIT` bytes: whole blocks as they are, cut ones copied."""
        start = self._blocks_start
        for block in self._blocks:
            stop = start + len(block)
            if stop <= begin:
                start = stop
                continue
            if start >= end:
                return
            low, high = max(begin, start) - start, min(end, stop) - start
            if low == 0 and high == len(block) <= APPEND_LIMIT:
                yield block
            else:
                view = memoryview(block)
                while low < high:
                    cut = high
                    if high - low > APPEND_LIMIT:
                        cut = _character_start(block, low + APPEND_LIMIT, floor=low)
                    yield bytes(view[low:cut])
                    low = cut
            start = stop

    def _check_writable(self) -> None:
        if self.error is not None:
            raise self.error
        if self.done_requested:
            raise InstantError(
                f"the stream {self.client_id!r} is closed; open a new writer to write more"
            )

    def _start_message(self) -> Message:
        self._start_event = self._new_id()
        message: Message = {
            "client-event-id": self._start_event,
            "op": "start-stream",
            "client-id": self.client_id,
            "reconnect-token": self._reconnect_token,
        }
        if self._rule_params is not None:
            message["rule-params"] = self._rule_params
        return message

    def _append(self, chunks: list[Text], offset: int, *, done: bool) -> Message:
        event = self._new_id()
        self._append_events.add(event)
        message: Message = {
            "client-event-id": event,
            "op": "append-stream",
            "stream-id": self.stream_id,
            "chunks": chunks,
            "offset": offset,
            "done": done,
        }
        if done and self.abort_reason:
            message["abort-reason"] = self.abort_reason
        return message


@dataclass(frozen=True)
class Segment:
    """Data a reader received: bytes starting at ``offset``, from ``files`` (urls to
    fetch, in order) and then ``content``; ``done`` ends the stream."""

    offset: int | None
    files: tuple[str, ...] = ()
    content: bytes = b""
    done: bool = False
    abort_reason: str | None = None


class ReaderMachine:
    """One stream being read. The consumer takes `Segment` s and `accept` s their bytes."""

    def __init__(
        self,
        *,
        stream_id: str | None,
        client_id: str | None,
        byte_offset: int,
        rule_params: Mapping[str, Any] | None,
        new_id: Callable[[], str],
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._requested_stream_id = stream_id
        self.client_id = client_id
        self.stream_id = stream_id
        self._rule_params = _rule_params(rule_params, "streams.read")
        self._new_id = new_id
        self._secrets = secrets
        self.seen_offset = byte_offset
        """Bytes the consumer has (the start offset, plus everything delivered since)."""
        self.segments: deque[Segment] = deque()
        self.error: InstantError | None = None
        self.done = False
        """The server said the stream is complete (delivered once segments are drained)."""
        self.abort_reason: str | None = None
        self._subscribe_event: str | None = None
        self._session_open = False
        self._resubscribes = 0
        self._progress_mark = byte_offset

    @property
    def subscribe_event(self) -> str | None:
        return self._subscribe_event

    has_unsent = False
    """A reader's messages are all control messages (returned by its methods)."""

    def take(self, budget: int) -> list[Message]:
        return []

    @property
    def finished(self) -> bool:
        """The server will send nothing more this reader needs."""
        return self.done or self.error is not None

    def on_session_open(self) -> list[Message]:
        self._session_open = True
        if self.finished:
            return []
        return [self._subscribe_message()]

    def on_session_lost(self) -> None:
        self._session_open = False
        self._subscribe_event = None

    def fail(self, error: InstantError) -> None:
        if not self.finished:
            self.error = error

    def close(self) -> list[Message]:
        """The consumer stops early: unsubscribe (nothing to say after completion)."""
        event, self._subscribe_event = self._subscribe_event, None
        if event is None or self.done or not self._session_open:
            return []
        return [
            {
                "client-event-id": self._new_id(),
                "op": "unsubscribe-stream",
                "subscribe-event-id": event,
            }
        ]

    def on_message(self, message: Mapping[str, Any]) -> list[Message]:
        if self.finished:
            return []
        op, event = message.get("op"), message.get("client-event-id")
        if op == "stream-append" and event == self._subscribe_event:
            return self._on_append(message)
        if op == "error" and event == self._subscribe_event and event is not None:
            error = error_from_message(
                message, self._secrets, default_message="subscribe-stream failed"
            )
            if is_terminal(error):
                self.error = error  # stream missing, permission denied, bad arguments
                return []
            return self.resubscribe(error)
        return []

    def _on_append(self, message: Mapping[str, Any]) -> list[Message]:
        if isinstance(message.get("stream-id"), str):
            self.stream_id = message["stream-id"]
        if message.get("error"):
            kind = message.get("error-type")
            error = InstantAPIError(
                f"the server could not deliver the stream ({kind or 'unknown error'})",
                status=400 if not message.get("retry") else 503,
                body=dict(message),
            )
            if message.get("retry"):
                return self.resubscribe(error)
            self.error = error
            return []
        offset = message.get("offset")
        if isinstance(offset, bool) or not isinstance(offset, int):
            offset = None
        files = message.get("files")
        urls = tuple(
            str(item["url"])
            for item in (files if isinstance(files, list) else [])
            if isinstance(item, Mapping) and isinstance(item.get("url"), str)
        )
        content = message.get("content")
        data = content.encode("utf-8") if isinstance(content, str) else b""
        done = message.get("done") is True
        reason = message.get("abort-reason")
        if (urls or data) and offset is None:
            self.error = StreamCorruptedError(f"stream data without an offset: {dict(message)!r}")
            return []
        if urls or data or done:
            self.segments.append(
                Segment(offset, urls, data, done, reason if isinstance(reason, str) else None)
            )
        return []

    def resubscribe(self, error: InstantError) -> list[Message]:
        """Ask again from `seen_offset` (after a gap, a failed fetch, a retryable error).

        Queued segments are dropped: the new subscription resends their bytes.
        """
        if self.finished:
            return []
        if self.seen_offset > self._progress_mark:
            self._progress_mark = self.seen_offset
            self._resubscribes = 0
        self._resubscribes += 1
        if self._resubscribes > MAX_RESUBSCRIBES:
            self.error = InstantError(
                f"the stream could not be read past byte {self.seen_offset}: "
                f"{MAX_RESUBSCRIBES} attempts in a row failed; last error: {error}"
            )
            self.error.__cause__ = error
            return []
        self.segments.clear()
        old = self._subscribe_event
        if not self._session_open:
            return []
        messages: list[Message] = []
        if old is not None:
            messages.append(
                {
                    "client-event-id": self._new_id(),
                    "op": "unsubscribe-stream",
                    "subscribe-event-id": old,
                }
            )
        messages.append(self._subscribe_message())
        return messages

    # -- the consumer's side -------------------------------------------------------------

    def accept(self, position: int, data: bytes) -> bytes:
        """The part of ``data`` (which starts at byte ``position``) that is new.

        Bytes below `seen_offset` were delivered already and are discarded; a start past
        it would be a gap (`StreamCorruptedError`; the caller re-subscribes).
        """
        if position > self.seen_offset:
            raise StreamCorruptedError(
                f"Stream is corrupted (offset gap): data starts at byte {position}, but only "
                f"{self.seen_offset} bytes were received"
            )
        fresh = data[self.seen_offset - position :]
        self.seen_offset += len(fresh)
        return fresh

    def complete(self, segment: Segment) -> None:
        """The consumer reached a ``done`` segment."""
        self.done = True
        self.abort_reason = segment.abort_reason

    def _subscribe_message(self) -> Message:
        self._subscribe_event = self._new_id()
        message: Message = {"client-event-id": self._subscribe_event, "op": "subscribe-stream"}
        if self._requested_stream_id is not None:
            message["stream-id"] = self._requested_stream_id
        if self.client_id is not None:
            message["client-id"] = self.client_id
        if self.seen_offset > 0:
            message["offset"] = self.seen_offset
        if self._rule_params is not None:
            message["rule-params"] = self._rule_params
        return message
