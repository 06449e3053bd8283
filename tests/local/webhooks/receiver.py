"""Webhook receivers for tests, on 127.0.0.1 in threads: `Receiver` records every POST
and answers with scripted statuses (200 once the script runs out); `TricklingReceiver`
answers one byte at a time."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """``with Receiver() as receiver:``; ``receiver.url`` takes deliveries."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.statuses: deque[int] = deque()
        self.hold = threading.Event()
        self.hold.set()  # clear() makes every delivery wait until set() again
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                receiver.hold.wait(10)
                status = receiver.statuses.popleft() if receiver.statuses else 200
                payload = f"status {status}".encode()
                self.send_response(status)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                with receiver._arrived:
                    receiver.deliveries.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver._arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Delivery]:
        """The first ``count`` deliveries, waiting for them (bounded)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} deliveries, got {len(self.deliveries)}")
                self._arrived.wait(left)
            return list(self.deliveries[:count])

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll ``predicate()`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


class TricklingReceiver:
    """A receiver on 127.0.0.1 that answers 200 one byte at a time, every ``interval``
    seconds: the status line and headers (``part="head"``) or the body (``part="body"``).

    A full answer takes ``len(answer) * interval`` seconds; ``sent`` counts the bytes
    each connection got out before the sender hung up, and ``hung_up`` is set when one
    did.
    """

    def __init__(self, part: str, *, interval: float = 0.05, padding: int = 200) -> None:
        body = b"ok" * (padding // 2 if part == "body" else 1)
        head = (
            b"HTTP/1.1 200 OK\r\n"
            + (b"x-slow: " + b"a" * padding + b"\r\n" if part == "head" else b"")
            + b"content-length: %d\r\n\r\n" % len(body)
        )
        self.answer = head + body
        self._slow_from = 0 if part == "head" else len(head)
        self.interval = interval
        self.connections = 0
        self.sent: list[int] = []
        self.hung_up = threading.Event()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        sent = 0
        hung_up = False
        with connection:
            try:
                _read_request(connection)
                connection.sendall(self.answer[: self._slow_from])
                sent = self._slow_from
                for byte in self.answer[self._slow_from :]:
                    if self._stopping.wait(self.interval):
                        break
                    connection.sendall(bytes([byte]))
                    sent += 1
            except OSError:
                hung_up = True
        self.sent.append(sent)
        if hung_up:
            self.hung_up.set()

    def __enter__(self) -> TricklingReceiver:
        thread = threading.Thread(target=self._accept, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("the sender closed before its request was complete")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("the sender closed before its body was complete")
        body += chunk
    return head + b"\r\n\r\n" + body
