"""A TCP proxy on 127.0.0.1 whose connections a test can cut, at once or mid-byte.

The HTTP-level `FaultProxy` of ``conftest.py`` answers whole requests, which an event
stream never finishes; this one relays raw bytes both ways, so a live session works
through it exactly as it does directly, until the test cuts it:

* `TCPProxy.cut` closes every open connection now (both sides see the connection drop,
  as when a network path dies or a server restarts);
* `TCPProxy.cut_after` arms a cut that fires once ``n`` more bytes have gone from the
  server to the client: the bytes up to that point are delivered and the rest never
  are, so the client loses the connection in the middle of an event, a chunk or a
  UTF-8 character.

Every relay thread is bounded by socket timeouts and ends when the proxy stops.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["TCPProxy"]

_BUFFER = 64 * 1024
_POLL_SECONDS = 0.05
WAIT = 10.0


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TCPProxy:
    """Relays ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``.

    ``accepted`` counts the connections taken, `open_links` those still open, and
    ``downstream_bytes`` the bytes relayed from the server to clients.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(_POLL_SECONDS)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._cut_budget: int | None = None
        self.accepted = 0
        self.cuts = 0
        self.downstream_bytes = 0
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True)
        self._acceptor.start()

    @classmethod
    def to(cls, api_uri: str) -> TCPProxy:
        """A proxy in front of the server at ``api_uri`` (``http://host:port``)."""
        host, _, port = api_uri.removeprefix("http://").rstrip("/").rpartition(":")
        return cls(host, int(port))

    @property
    def api_uri(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def open_links(self) -> int:
        with self._lock:
            return sum(not link.closed for link in self._links)

    def cut(self) -> int:
        """Close every open connection now; returns how many there were."""
        with self._lock:
            links = [link for link in self._links if not link.closed]
            self._cut_budget = None
            self.cuts += 1
            for link in links:
                link.close()
            self._changed.notify_all()
        return len(links)

    def cut_after(self, n: int) -> None:
        """Cut every connection once ``n`` more bytes have reached clients."""
        with self._lock:
            self._cut_budget = n

    @property
    def armed(self) -> bool:
        """A `cut_after` has not fired yet."""
        with self._lock:
            return self._cut_budget is not None

    def wait_until(self, predicate: Callable[[TCPProxy], bool], timeout: float = WAIT) -> None:
        """Wait (bounded) until ``predicate(self)`` holds; it is checked as links change."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the proxy did not reach the expected state in time"
            with self._changed:
                self._changed.wait(min(remaining, _POLL_SECONDS))

    def stop(self) -> None:
        self._stopping.set()
        self.cut()
        self._acceptor.join(WAIT)
        for thread in list(self._threads):
            thread.join(WAIT)
        self._listener.close()

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- relaying -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=WAIT)
            except OSError:
                client.close()  # the server is down: the client sees a dropped connection
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(None)
            link = _Link(client, upstream)
            thread = threading.Thread(target=self._relay, args=(link,), daemon=True)
            with self._lock:
                if self._stopping.is_set():
                    link.close()
                    return
                self.accepted += 1
                self._links.append(link)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                self._changed.notify_all()
            thread.name = f"tcp-proxy-link-{self.accepted}"
            thread.start()

    def _relay(self, link: _Link) -> None:
        # A selector (epoll/poll), not select.select: a long test session holds more than
        # 1024 descriptors, which select() cannot watch (ValueError, a silent drop).
        watcher = selectors.DefaultSelector()
        try:
            watcher.register(link.client, selectors.EVENT_READ)
            watcher.register(link.upstream, selectors.EVENT_READ)
            while not link.closed:
                for key, _ in watcher.select(_POLL_SECONDS):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(_BUFFER)
                    if not data:
                        return  # one side hung up: end both, as a dead path would
                    if source is link.upstream:
                        data = self._downstream(data)
                        link.client.sendall(data)
                        if self._budget_spent():
                            self.cut()
                            return
                    else:
                        link.upstream.sendall(data)
        except (OSError, ValueError):
            pass  # cut meanwhile: the sockets are closed under us
        finally:
            watcher.close()
            with self._lock:
                link.close()
                self._changed.notify_all()

    def _downstream(self, data: bytes) -> bytes:
        with self._lock:
            if self._cut_budget is not None:
                data = data[: self._cut_budget]
                self._cut_budget -= len(data)
            self.downstream_bytes += len(data)
            return data

    def _budget_spent(self) -> bool:
        with self._lock:
            return self._cut_budget == 0
