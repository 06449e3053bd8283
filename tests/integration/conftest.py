"""Shared fixtures for the SDK <-> server integration tests.

Every test here talks to a real server over HTTP on loopback: the `instant_server`
fixture of ``instantdb_local.pytest_plugin`` (a `LocalServer`, or the server named by
``INSTANT_TEST_API_URI``), with a fresh app per test from `instant_app` (whose
``@pytest.mark.instant_app(schema=..., rules=...)`` marker sets schema and rules).

One test body checks both clients: the `clients` fixture is parametrised over
``Instant`` and ``AsyncInstant`` and hands out `Driven` clients, which expose the same
blocking calls either way (an ``AsyncInstant``'s coroutines run on the test's own event
loop). ``db`` is such a client for ``instant_app``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socketserver
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx
import pytest

import instantdb
from instantdb_local.instance import AppCredentials

# Feature namespaces whose methods are awaited on an AsyncInstant (db.auth.get_user(...)).
_FEATURES = frozenset({"auth", "storage", "rooms"})


class _Blocking:
    """Calls an object's methods, running any coroutine they return to completion."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self._target = target
        self._loop = loop

    def run(self, result: Any) -> Any:
        """``result``, awaited first if it is awaitable."""
        if inspect.isawaitable(result):
            assert self._loop is not None, "an Instant returned an awaitable"
            result = self._loop.run_until_complete(result)
        if isinstance(result, (instantdb.Instant, instantdb.AsyncInstant)):
            return Driven(result, self._loop)
        return result

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in _FEATURES:
            return _Blocking(value, self._loop)
        if callable(value) and not isinstance(value, type):
            return lambda *args, **kwargs: self.run(value(*args, **kwargs))
        return value


class Driven(_Blocking):
    """An `Instant` or `AsyncInstant`, driven with blocking calls.

    ``db.query(q)`` returns the result for either kind; ``db.as_user(...)`` returns a
    `Driven` clone; ``with db:`` enters and leaves the client's (async) context manager;
    ``db.client`` is the client itself.
    """

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        super().__init__(client, loop)
        self.client = client

    @property
    def is_async(self) -> bool:
        return isinstance(self.client, instantdb.AsyncInstant)

    def close(self) -> None:
        self.run(self.client.aclose() if self.is_async else self.client.close())

    def __enter__(self) -> Any:
        entered = self.run(self.client.__aenter__() if self.is_async else self.client.__enter__())
        assert isinstance(entered, Driven)
        assert entered.client is self.client
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.is_async:
            self.run(self.client.__aexit__(exc_type, exc, traceback))
        else:
            self.client.__exit__(exc_type, exc, traceback)

    def __repr__(self) -> str:
        return f"Driven({self.client!r})"


class Clients:
    """Makes `Driven` clients of one kind and closes them (and the event loop) at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self._made: list[Driven] = []

    @property
    def client_class(self) -> type[Any]:
        return instantdb.AsyncInstant if self.kind == "async" else instantdb.Instant

    def make(self, app: AppCredentials | None = None, **kwargs: Any) -> Driven:
        """A client for ``app``; ``kwargs`` add to or override its arguments."""
        if app is not None:
            kwargs = {
                "app_id": app.app_id,
                "admin_token": app.admin_token,
                "api_uri": app.api_uri,
                **kwargs,
            }
        driven = Driven(self.client_class(**kwargs), self.loop)
        self._made.append(driven)
        return driven

    def run(self, awaitable_or_value: Any) -> Any:
        """Await a coroutine on this test's loop (sync values pass through)."""
        return _Blocking(None, self.loop).run(awaitable_or_value)

    def close(self) -> None:
        try:
            for driven in self._made:
                driven.close()
        finally:
            if self.loop is not None:
                self.loop.close()


@pytest.fixture(params=["sync", "async"])
def clients(request: pytest.FixtureRequest) -> Iterator[Clients]:
    """Both clients: a test using this runs once with Instant, once with AsyncInstant."""
    made = Clients(request.param)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def db(clients: Clients, instant_app: AppCredentials) -> Driven:
    """An admin client of the test's kind for a fresh app (see `instant_app`)."""
    return clients.make(instant_app)


# -- a fault-injecting proxy -------------------------------------------------------------


class Fault:
    """What the proxy does with one request (see `FaultProxy.plan`)."""

    def __init__(
        self,
        *,
        forward: bool,
        status: int | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        drop: bool = False,
        stall: bool = False,
    ) -> None:
        self.forward = forward
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.drop = drop
        self.stall = stall

    @classmethod
    def answer(
        cls, status: int, body: Any, *, forward: bool = False, headers: dict[str, str] | None = None
    ) -> Fault:
        """Answer ``status`` with ``body`` (JSON unless bytes), after forwarding if asked."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        content_type = "application/octet-stream" if isinstance(body, bytes) else "application/json"
        return cls(
            forward=forward,
            status=status,
            body=raw,
            headers={"content-type": content_type, **(headers or {})},
        )

    @classmethod
    def drop_connection(cls, *, forward: bool) -> Fault:
        """Close the connection without answering (after forwarding if asked)."""
        return cls(forward=forward, drop=True)

    @classmethod
    def stall_then_drop(cls, *, forward: bool) -> Fault:
        """Hold the connection without answering until the proxy stops, then close it."""
        return cls(forward=forward, drop=True, stall=True)


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of an Instant server that injects faults.

    Requests are forwarded to ``upstream`` unless the next entry of ``plan`` says
    otherwise. ``requests`` lists what reached the proxy (``"POST /admin/query"``) and
    ``connections`` how many TCP connections it accepted. With ``listening=False`` the
    port is bound but refuses connections until `listen` is called.
    """

    def __init__(self, upstream: str, *, listening: bool = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan: deque[Fault] = deque()
        self.requests: list[str] = []
        self.connections = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._forwarded_changed = threading.Condition(self._lock)
        self._released = threading.Event()
        self._forwarder = httpx.Client(timeout=30.0)
        self._server = _ProxyServer(self)
        self._thread: threading.Thread | None = None
        if listening:
            self.listen()

    @property
    def api_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def listen(self) -> None:
        """Start accepting connections (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._server.server_activate()
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()

    def next_fault(self, request_line: str) -> Fault | None:
        with self._lock:
            self.requests.append(request_line)
            return self.plan.popleft() if self.plan else None

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        answer = self._forwarder.request(
            method, self.upstream + path, headers=headers, content=body
        )
        with self._forwarded_changed:
            self.forwarded += 1
            self._forwarded_changed.notify_all()
        return answer

    def wait_until_forwarded(self, count: int) -> None:
        """Wait until ``count`` requests have been answered upstream (a client that gave
        up early may not have waited for its request to get there)."""
        with self._forwarded_changed:
            done = self._forwarded_changed.wait_for(lambda: self.forwarded >= count, timeout=30)
        assert done, f"only {self.forwarded} of {count} requests were forwarded"

    def wait_for_release(self) -> None:
        self._released.wait(timeout=30)

    def stop(self) -> None:
        self._released.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()
        self._forwarder.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: FaultProxy) -> None:
        # Bound now (the port is known and reserved); listening only from listen().
        super().__init__(("127.0.0.1", 0), _ProxyHandler, bind_and_activate=False)
        self.proxy = proxy
        self.server_bind()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which can stall offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.proxy.count_connection()
        super().process_request(request, client_address)


_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's pool expects
    server: _ProxyServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        fault = proxy.next_fault(f"{self.command} {self.path.split('?')[0]}")
        if fault is None or fault.forward:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = proxy.forward(self.command, self.path, headers, body)
        if fault is not None and fault.stall:
            proxy.wait_for_release()
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        if fault is not None and fault.status is not None:
            status, content, headers = fault.status, fault.body, fault.headers
        else:
            status, content = upstream.status_code, upstream.content
            headers = {"content-type": upstream.headers.get("content-type", "application/json")}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def fault_proxy(instant_app: AppCredentials) -> Iterator[FaultProxy]:
    """A `FaultProxy` in front of the test's server (nothing injected until planned)."""
    proxy = FaultProxy(instant_app.api_uri)
    try:
        yield proxy
    finally:
        proxy.stop()
