"""Live connections over a real loopback socket: what MockTransport cannot show (a read
blocked in the kernel woken by close() from another thread; the sse-init timeout).

A tiny SSE server on 127.0.0.1 stands in for Instant here; the end-to-end tests against
the local server's live routes live in the other test_live_* modules.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import instantdb
from instantdb import _subscription
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID

HOLD_SECONDS = 10.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.server.connections += 1
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        if self.server.send_init:
            for message in (
                {"op": "sse-init", "machine-id": "m", "session-id": "s", "sse-token": "t"},
                {"op": "add-query-ok", "result": {"goals": []}, "result-meta": {}},
            ):
                self.wfile.write(b"data:" + json.dumps(message).encode() + b"\n\n")
            self.wfile.flush()
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            time.sleep(0.02)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, send_init: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.send_init = send_init
        self.connections = 0
        self.stopping = threading.Event()


def _serve(send_init: bool) -> Iterator[_Server]:
    server = _Server(send_init)
    thread = threading.Thread(target=server.serve_forever, name="test-sse-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def sse_server() -> Iterator[_Server]:
    yield from _serve(send_init=True)


@pytest.fixture
def silent_server() -> Iterator[_Server]:
    yield from _serve(send_init=False)


def _client(server: _Server) -> instantdb.Instant:
    host, port = server.server_address[:2]
    return instantdb.Instant(
        app_id=APP_ID, admin_token=ADMIN_TOKEN, api_uri=f"http://{host!s}:{port}"
    )


def test_close_from_another_thread_wakes_a_blocked_read(sse_server: _Server) -> None:
    with _client(sse_server) as db:
        sub = db.subscribe_query({"goals": {}})
        assert next(sub)["type"] == "ok"
        rest: list[Any] = []
        reader = threading.Thread(target=lambda: rest.extend(sub), name="test-iterate")
        reader.start()
        time.sleep(0.2)  # let it block in the socket read
        assert reader.is_alive()
        sub.close()
        reader.join(HOLD_SECONDS / 2)
        assert not reader.is_alive(), "close() did not wake the blocked read"
        assert rest == []
        assert sub.is_closed


def test_a_server_that_never_sends_sse_init_is_reopened(
    silent_server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_subscription, "SSE_INIT_TIMEOUT", 0.2)
    with _client(silent_server) as db:
        sub = db.subscribe_query({"goals": {}})
        closer = threading.Timer(2.0, sub.close)
        closer.start()
        try:
            payloads = list(sub)
        finally:
            closer.cancel()
        assert silent_server.connections >= 2
        assert all(p["type"] == "error" for p in payloads)
