"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for putting a real client in front of a
real server and breaking the wire between them on purpose.

::

    with FaultProxy(server.api_uri) as proxy:
        proxy.plan(ResetAfterForward(), path="/admin/transact")
        db = Instant(..., api_uri=proxy.url)
        ...
        assert proxy.forwarded("/admin/transact") == 1

Every request the proxy reads is matched against the plans in the order they were made;
the first plan with a fault left for that method and path consumes one fault and applies
it. A request no plan claims passes through untouched. Each request is recorded as an
`Exchange` (what the client asked, which fault it met, whether the whole request reached
the upstream, what the client was answered), so a test can tell "the server never saw
it" from "the server ran it but the answer was lost".

Both sides are parsed with h11, so client connections stay keep-alive the way a pooled
httpx client expects, responses are relayed as they arrive (a streaming or SSE response
is passed on chunk by chunk, and `CutResponse` can end it after any number of body
bytes), and faults are placed exactly: before the request is forwarded, halfway through
its body, after the upstream has answered, or partway through the answer.

One upstream connection is opened per request (with ``connection: close``), so a fault
on one request never leaves a half-used upstream connection behind. Every socket has a
timeout and `stop` closes them all, so a test that goes wrong ends instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

__all__ = [
    "CutRequest",
    "CutResponse",
    "Delay",
    "Exchange",
    "Fault",
    "FaultProxy",
    "Pass",
    "ResetAfterForward",
    "ResetBeforeForward",
    "Respond",
    "TruncateBody",
    "rate_limited",
]

_READ_SIZE = 65536
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade"})


# -- faults -----------------------------------------------------------------------------


class Fault:
    """What to do with one request. Subclasses are small frozen dataclasses."""

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Pass(Fault):
    """Forward the request and relay the answer unchanged."""


@dataclass(frozen=True)
class ResetBeforeForward(Fault):
    """Read the whole request, never forward it, and reset the client's connection.

    The client has sent its request and sees the connection drop: it cannot know that
    the server never saw it.
    """


@dataclass(frozen=True)
class ResetAfterForward(Fault):
    """Forward the request, let the upstream answer in full, then reset the client's
    connection instead of relaying the answer: the server ran it, the client never
    learns."""


@dataclass(frozen=True)
class CutRequest(Fault):
    """Forward the request head and only the first ``body_bytes`` of its body, then reset
    both connections: the upstream sees a client that vanished mid-request."""

    body_bytes: int = 0


@dataclass(frozen=True)
class CutResponse(Fault):
    """Relay the answer's head and its first ``body_bytes`` body bytes, then end the
    connection (a reset, or a clean close with ``reset=False``). Works on streaming
    responses: the cut happens as the bytes flow."""

    body_bytes: int = 0
    reset: bool = True


@dataclass(frozen=True)
class Delay(Fault):
    """Wait ``seconds`` before forwarding (``before_forward=True``: the server sees the
    request late) or before relaying the answer (the server ran it on time, the answer
    is late)."""

    seconds: float
    before_forward: bool = False


@dataclass(frozen=True)
class Respond(Fault):
    """Answer with this response without forwarding (a gateway or rate limiter speaking)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Respond:
        pairs = (("content-type", "application/json"), *(headers or {}).items())
        return cls(status, json.dumps(body).encode(), tuple(pairs))


@dataclass(frozen=True)
class TruncateBody(Fault):
    """Forward, read the whole answer, and relay only its first ``keep`` body bytes with a
    content-length that matches: a well-framed answer whose body is cut short (truncated
    JSON, as a broken intermediary might send)."""

    keep: int


def rate_limited(
    *, retry_after_header: str | None = None, hint_retry_after: float | None = None
) -> Respond:
    """A 429 ``rate-limited`` answer in the real server's shape.

    ``retry_after_header`` sets an HTTP ``Retry-After``; ``hint_retry_after`` the
    ``hint.retry-after`` seconds the real server's ``$rateLimits`` errors carry.
    """
    hint = None if hint_retry_after is None else {"retry-after": hint_retry_after}
    message = "Your request exceeded the rate limit."
    body = {"type": "rate-limited", "message": message, "hint": hint}
    headers = {} if retry_after_header is None else {"retry-after": retry_after_header}
    return Respond.json(429, body, headers)


# -- what happened ----------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the proxy read, and what became of it."""

    method: str
    target: str  # path and query string, as sent
    path: str
    headers: dict[str, str]
    body: bytes
    fault: str
    connection: int  # which client connection it came on (1, 2, ...)
    forwarded: bool = False  # the upstream received the whole request
    status: int | None = None  # the status the client was sent (None: no answer reached it)


@dataclass
class _Plan:
    method: str | None
    path: str | None
    faults: deque[Fault] = field(default_factory=deque)

    def claims(self, method: str, path: str) -> bool:
        if not self.faults:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path == path


class _ClientGone(Exception):
    """The client's connection ended; the exchange is over."""


# -- the proxy --------------------------------------------------------------------------


class FaultProxy:
    """A fault-injecting proxy on 127.0.0.1 in front of ``upstream`` (an ``http://`` URL).

    ``upstream`` may be changed while running (a server restarted on another port).
    When the upstream refuses the connection the client gets a 502, as from a gateway.
    """

    def __init__(self, upstream: str, *, io_timeout: float = 15.0) -> None:
        self.upstream = upstream
        self.io_timeout = io_timeout
        self.exchanges: list[Exchange] = []
        self._plans: list[_Plan] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port = 0
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._connections = 0

    # -- lifecycle

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            _shut(sock)
        for thread in threads:
            thread.join(5)
        leftover = [t.name for t in threads if t.is_alive()]
        assert not leftover, f"fault proxy threads did not stop: {leftover}"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._port, "the proxy is not started"
        return f"http://127.0.0.1:{self._port}"

    def pause(self) -> None:
        """Stop listening and drop every client connection: new connections are refused,
        as by a server that is down."""
        self._close_listener()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def resume(self) -> None:
        """Listen again, on the same port."""
        self._listen()

    # -- plans and records

    def plan(self, *faults: Fault, method: str | None = None, path: str | None = None) -> None:
        """Apply ``faults``, one each, to the next requests matching ``method``/``path``."""
        with self._lock:
            self._plans.append(_Plan(method, path, deque(faults)))

    def clear(self) -> None:
        """Drop every fault planned and not yet met."""
        with self._lock:
            self._plans.clear()

    def pending(self) -> int:
        """Faults planned but not yet met by a request."""
        with self._lock:
            return sum(len(plan.faults) for plan in self._plans)

    def to(self, path: str) -> list[Exchange]:
        """The exchanges for one path, in order."""
        with self._lock:
            return [e for e in self.exchanges if e.path == path]

    def forwarded(self, path: str) -> int:
        """How many requests to ``path`` reached the upstream in full."""
        return sum(1 for e in self.to(path) if e.forwarded)

    # -- internals: connections

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(64)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        thread = threading.Thread(
            target=self._accept, args=(listener,), name="fault-proxy-accept", daemon=True
        )
        self._accept_thread = thread
        thread.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone may not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            client.settimeout(self.io_timeout)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve_client, args=(client,), name="fault-proxy-conn", daemon=True
            )
            with self._lock:
                self._sockets.add(client)
                self._threads.add(thread)
            thread.start()

    def _serve_client(self, client: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            number = self._connections
        conn = h11.Connection(h11.SERVER)
        try:
            while not self._stopping.is_set():
                request = _read_request(client, conn)
                if request is None:
                    return
                exchange = self._record(*request, connection=number)
                fault = self._claim(exchange)
                exchange.fault = fault.name
                _Handling(self, client, conn, exchange, fault).run()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (_ClientGone, OSError, h11.ProtocolError):
            return
        finally:
            _close(client)
            with self._lock:
                self._sockets.discard(client)
                self._threads.discard(threading.current_thread())

    def _record(self, head: h11.Request, body: bytes, *, connection: int) -> Exchange:
        target = head.target.decode("latin-1")
        exchange = Exchange(
            method=head.method.decode("ascii"),
            target=target,
            path=urlsplit(target).path,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers},
            body=body,
            fault="",
            connection=connection,
        )
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    def _claim(self, exchange: Exchange) -> Fault:
        with self._lock:
            for plan in self._plans:
                if plan.claims(exchange.method, exchange.path):
                    return plan.faults.popleft()
        return Pass()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


class _Handling:
    """Applies one fault to one request."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: socket.socket,
        conn: h11.Connection,
        exchange: Exchange,
        fault: Fault,
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.conn = conn
        self.exchange = exchange
        self.fault = fault

    def run(self) -> None:
        fault = self.fault
        if isinstance(fault, ResetBeforeForward):
            raise self._reset_client()
        if isinstance(fault, Respond):
            self._answer(fault.status, list(fault.headers), fault.body)
            return
        if isinstance(fault, Delay) and fault.before_forward:
            self._wait(fault.seconds)
        body_limit = fault.body_bytes if isinstance(fault, CutRequest) else None
        with self._upstream(body_limit) as upstream:
            if upstream is None:
                self._answer(502, [("content-type", "text/plain")], b"upstream unreachable")
                return
            if isinstance(fault, CutRequest):
                _reset(upstream)
                raise self._reset_client()
            self._relay(upstream, fault)

    # -- the upstream side

    @contextlib.contextmanager
    def _upstream(self, body_limit: int | None) -> Iterator[socket.socket | None]:
        parts = urlsplit(self.proxy.upstream)
        try:
            upstream = socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or 80), timeout=self.proxy.io_timeout
            )
        except OSError:
            yield None
            return
        self.proxy._track(upstream)
        try:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._send_request(upstream, body_limit)
            yield upstream
        finally:
            _close(upstream)
            self.proxy._untrack(upstream)

    def _send_request(self, upstream: socket.socket, body_limit: int | None) -> None:
        exchange = self.exchange
        head = [
            (name, value)
            for name, value in exchange.headers.items()
            if name.lower().encode() not in _HOP_BY_HOP and name.lower() != "host"
        ]
        parts = urlsplit(self.proxy.upstream)
        head.insert(0, ("host", parts.netloc))
        head.append(("connection", "close"))
        body = exchange.body
        if body_limit is not None:
            # The announced length stays the full one: the upstream waits for the rest.
            raw = h11.Connection(h11.CLIENT).send(
                h11.Request(method=exchange.method, target=exchange.target, headers=head)
            )
            upstream.sendall((raw or b"") + body[:body_limit])
            return
        client = h11.Connection(h11.CLIENT)
        if "content-length" not in {k.lower() for k, _ in head} and body:
            head.append(("content-length", str(len(body))))
        data = client.send(
            h11.Request(method=exchange.method, target=exchange.target, headers=head)
        )
        if body:
            data = (data or b"") + (client.send(h11.Data(data=body)) or b"")
        data = (data or b"") + (client.send(h11.EndOfMessage()) or b"")
        upstream.sendall(data)
        exchange.forwarded = True

    def _relay(self, upstream: socket.socket, fault: Fault) -> None:
        reader = h11.Connection(h11.CLIENT)
        # The request was sent by hand above; tell this parser a request went out.
        reader.send(h11.Request(method=self.exchange.method, target="/", headers=[("host", "x")]))
        reader.send(h11.EndOfMessage())
        response = _next_event(upstream, reader)
        if not isinstance(response, h11.Response):
            raise self._reset_client()
        headers = [(k.decode(), v.decode()) for k, v in response.headers if k not in _HOP_BY_HOP]
        if isinstance(fault, (ResetAfterForward, TruncateBody)) or (
            isinstance(fault, Delay) and not fault.before_forward
        ):
            body = _read_body(upstream, reader)
            if isinstance(fault, ResetAfterForward):
                raise self._reset_client()
            if isinstance(fault, Delay):
                self._wait(fault.seconds)
            if isinstance(fault, TruncateBody):
                body = body[: fault.keep]
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            self._answer(response.status_code, headers, body)
            return
        self._stream(upstream, reader, response.status_code, headers, fault)

    def _stream(
        self,
        upstream: socket.socket,
        reader: h11.Connection,
        status: int,
        headers: list[tuple[str, str]],
        fault: Fault,
    ) -> None:
        """Relay the answer as it arrives; a `CutResponse` ends it after its byte count."""
        budget = fault.body_bytes if isinstance(fault, CutResponse) else None
        if budget is not None:
            # Without a length the client reads until the connection ends, so the cut
            # must show as a broken frame: announce the body as chunked.
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        self._send(h11.Response(status_code=status, headers=headers))
        self.exchange.status = status
        while True:
            event = _next_event(upstream, reader)
            if isinstance(event, h11.Data):
                data = bytes(event.data)
                if budget is not None and len(data) >= budget:
                    if budget:
                        self._send(h11.Data(data=data[:budget]))
                    assert isinstance(fault, CutResponse)
                    raise self._reset_client() if fault.reset else self._close_client()
                if budget is not None:
                    budget -= len(data)
                self._send(h11.Data(data=data))
            elif isinstance(event, h11.EndOfMessage):
                if isinstance(fault, CutResponse):
                    raise self._reset_client() if fault.reset else self._close_client()
                self._send(h11.EndOfMessage())
                return
            else:
                raise self._reset_client()

    # -- the client side

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("content-length", str(len(body))))
        self._send(h11.Response(status_code=status, headers=headers))
        if body:
            self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())
        self.exchange.status = status

    def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            try:
                self.client.sendall(data)
            except OSError as exc:
                raise _ClientGone from exc

    def _wait(self, seconds: float) -> None:
        # Interruptible, so stop() does not wait out a long delay.
        if self.proxy._stopping.wait(seconds):
            raise _ClientGone

    def _reset_client(self) -> _ClientGone:
        _reset(self.client)
        return _ClientGone()

    def _close_client(self) -> _ClientGone:
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)
        return _ClientGone()


# -- socket helpers -------------------------------------------------------------------------


def _read_request(client: socket.socket, conn: h11.Connection) -> tuple[h11.Request, bytes] | None:
    """The next whole request on a client connection, or None when the client left."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = client.recv(_READ_SIZE)
            except (TimeoutError, OSError):
                return None
            conn.receive_data(data)
            if not data and head is None:
                return None
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        else:  # ConnectionClosed, PAUSED
            return None


def _next_event(sock: socket.socket, conn: h11.Connection) -> h11.Event | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # type: ignore[no-any-return]
        try:
            data = sock.recv(_READ_SIZE)
        except OSError:
            data = b""
        conn.receive_data(data)


def _read_body(sock: socket.socket, conn: h11.Connection) -> bytes:
    body = bytearray()
    while True:
        event = _next_event(sock, conn)
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            raise _ClientGone


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _shut(sock: socket.socket) -> None:
    """End a connection another thread may be blocked reading: close() alone would not
    wake that thread, shutdown() does."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
