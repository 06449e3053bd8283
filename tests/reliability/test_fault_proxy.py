"""The fault proxy itself: keep-alive passes through, streaming answers are relayed as
they arrive, and a stream can be cut after an exact number of body bytes (what the phase
2 tests of SSE subscriptions and streams need)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import h11
import httpx
import pytest

from tests.reliability._faults import CutResponse, FaultProxy

EVENTS = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]


class StreamingUpstream:
    """A one-route HTTP server on 127.0.0.1 answering with ``EVENTS``, chunked, one at a
    time: each next event is sent only once the test says it has read the previous one,
    so the test can prove the proxy does not buffer."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.may_send = threading.Semaphore(1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StreamingUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        for _ in EVENTS:
            self.may_send.release()
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        with sock:
            sock.settimeout(10)
            conn = h11.Connection(h11.SERVER)
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
            headers = [("content-type", "text/event-stream")]
            # Writes fail once the proxy has cut the stream: that is the point.
            with contextlib.suppress(OSError):
                sock.sendall(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
                for event in EVENTS:
                    # A proxy that buffered would never let the client read the
                    # previous event: give up, and the test sees a short stream.
                    if not self.may_send.acquire(timeout=5) or self.stopped.is_set():
                        return
                    sock.sendall(conn.send(h11.Data(data=event)) or b"")
                sock.sendall(conn.send(h11.EndOfMessage()) or b"")


@pytest.fixture
def upstream() -> Iterator[StreamingUpstream]:
    with StreamingUpstream() as running:
        yield running


def _pieces(response: httpx.Response, upstream: StreamingUpstream) -> Iterator[bytes]:
    for piece in response.iter_raw():
        yield piece
        upstream.may_send.release()


def test_a_stream_is_relayed_event_by_event(upstream: StreamingUpstream) -> None:
    with (
        FaultProxy(upstream.url) as proxy,
        httpx.Client(timeout=10) as client,
        client.stream("POST", proxy.url + "/admin/sse") as response,
    ):
        # Each event arrives before the upstream sends the next one.
        assert list(_pieces(response, upstream)) == EVENTS
    assert [(e.path, e.fault, e.forwarded) for e in proxy.exchanges] == [
        ("/admin/sse", "Pass", True)
    ]


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "close"])
def test_a_stream_cut_mid_event(upstream: StreamingUpstream, reset: bool) -> None:
    cut_at = len(EVENTS[0]) + 4  # the first event, and four bytes into the second
    received = bytearray()
    with FaultProxy(upstream.url) as proxy, httpx.Client(timeout=10) as client:
        proxy.plan(CutResponse(body_bytes=cut_at, reset=reset))
        with (  # noqa: PT012 - the error comes mid-read
            pytest.raises(httpx.TransportError),
            client.stream("POST", proxy.url + "/admin/sse") as response,
        ):
            for piece in _pieces(response, upstream):
                received += piece
    assert bytes(received) == (EVENTS[0] + EVENTS[1])[:cut_at]


def test_keep_alive_connections_are_kept(proxy: FaultProxy) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            assert client.get(proxy.url + "/health").status_code == 200
    assert len(proxy.exchanges) == 5
    assert len({e.connection for e in proxy.exchanges}) == 1


def test_an_unreachable_upstream_is_a_502() -> None:
    with FaultProxy("http://127.0.0.1:9") as proxy:  # port 9 (discard): nothing listens
        response = httpx.get(proxy.url + "/admin/schema", timeout=10)
    assert response.status_code == 502
    assert [(e.path, e.forwarded, e.status) for e in proxy.exchanges] == [
        ("/admin/schema", False, 502)
    ]


def test_pause_refuses_connections_until_resume(proxy: FaultProxy) -> None:
    with httpx.Client(timeout=10) as client:
        assert client.get(proxy.url + "/health").status_code == 200
        proxy.pause()  # the pooled connection is dropped too
        with pytest.raises(httpx.ConnectError):
            client.get(proxy.url + "/health")
        proxy.resume()
        assert client.get(proxy.url + "/health").status_code == 200
    assert [e.status for e in proxy.exchanges] == [200, 200]
