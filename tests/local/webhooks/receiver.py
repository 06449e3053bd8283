"""A webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread that records
every POST and answers with scripted statuses (200 once the script runs out)."""

from __future__ import annotations

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
