"""A real server on loopback for the live tests, and an SSE reader for raw httpx.

The server is uvicorn in a thread, like `LocalServer`, but with the live side
configured for tests (a 0.2 s keepalive) and a handle on the Starlette app, so tests
can reach the hub. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from instantdb_local import live
from instantdb_local.app import create_app
from instantdb_local.instance import AppRecord, Instance
from instantdb_local.server import bind_socket, uvicorn_server

KEEPALIVE_SECONDS = 0.2
WAIT = 10.0  # seconds any single expected event may take


@dataclass
class TestServer:
    __test__ = False  # not a test class, despite the name

    instance: Instance
    app: Starlette
    base_url: str
    thread: threading.Thread  # the server's event loop runs here
    _stop: Callable[[], None] = field(repr=False)

    def new_app(self, **kwargs: Any) -> AppRecord:
        return self.instance.create_ephemeral_app("live-test", **kwargs)

    @property
    def hub(self) -> live.LiveHub:
        hub = getattr(self.app.state, "live_hub", None)
        assert hub is not None, "no live route has been used yet"
        return hub

    def stop(self) -> None:
        self._stop()


def start_server(data_dir: Path, settings: live.LiveSettings | None = None) -> TestServer:
    instance = Instance.open(data_dir)
    app = create_app(instance)
    live.configure(app, settings or live.LiveSettings(keepalive_seconds=KEEPALIVE_SECONDS))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)

    def stop() -> None:
        live.close_connections(app)
        server.should_exit = True
        thread.join(WAIT)
        sock.close()
        instance.close()

    return TestServer(instance, app, f"http://127.0.0.1:{port}", thread, stop)


def admin_headers(app: AppRecord) -> dict[str, str]:
    return {"app-id": app.id, "authorization": f"Bearer {app.admin_token}"}


class EventStream:
    """One SSE response read in the background: events queue up as parsed JSON.

    ``frames`` keeps every raw byte chunk, for the byte-level tests.
    """

    def __init__(
        self, client: httpx.AsyncClient, url: str, *, headers: Mapping[str, str], body: Any
    ) -> None:
        self._request = client.build_request("POST", url, headers=dict(headers), json=body)
        self._client = client
        self.response: httpx.Response | None = None
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.raw = bytearray()
        self.keepalives = 0
        self.ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        self.response = await self._client.send(self._request, stream=True)
        if self.response.status_code == 200:
            self._task = asyncio.ensure_future(self._read())
        else:
            await self.response.aread()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.response is not None:
            await self.response.aclose()

    async def _read(self) -> None:
        assert self.response is not None
        pending = b""
        data: list[bytes] = []
        try:
            async for chunk in self.response.aiter_raw():
                self.raw += chunk
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.startswith(b"data:"):
                        data.append(line[5:])
                    elif line == b"" and data:
                        self.events.put_nowait(json.loads(b"\n".join(data)))
                        data = []
                    elif line.startswith(b":"):
                        self.keepalives += 1
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()
            self.events.put_nowait(None)

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next event; fails if the stream ends or nothing comes in time."""
        event = await asyncio.wait_for(self.events.get(), timeout)
        assert event is not None, "the stream ended"
        return event

    async def next_op(self, op: str, timeout: float = WAIT) -> dict[str, Any]:
        event = await self.next(timeout)
        assert event["op"] == op, f"expected {op}, got {event}"
        return event

    async def expect_quiet(self, seconds: float) -> None:
        """Nothing arrives for ``seconds``."""
        try:
            event = await asyncio.wait_for(self.events.get(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected no event, got {event}")


class Session:
    """An ``/admin/sse`` session: its event stream plus a push helper."""

    def __init__(
        self,
        base_url: str,
        client: httpx.AsyncClient,
        app: AppRecord,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.client = client
        self.app = app
        self.stream = EventStream(
            client,
            f"{base_url}/admin/sse?app_id={app.id}",
            headers=headers if headers is not None else admin_headers(app),
            body={"inference?": False, "versions": {"@instantdb/admin": "test"}},
        )
        self.init: dict[str, Any] = {}
        self._counter = 0

    async def __aenter__(self) -> Session:
        await self.stream.__aenter__()
        assert self.stream.response is not None
        assert self.stream.response.status_code == 200, self.stream.response.text
        self.init = await self.stream.next_op("sse-init")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stream.close()

    @property
    def id(self) -> str:
        return str(self.init["session-id"])

    def event_id(self) -> str:
        self._counter += 1
        return f"e{self._counter}"

    async def push(self, *messages: dict[str, Any]) -> httpx.Response:
        body = {
            "machine_id": self.init["machine-id"],
            "session_id": self.init["session-id"],
            "sse_token": self.init["sse-token"],
            "messages": list(messages),
        }
        # Only the content type, like the JS client: the token is the credential.
        # ASCII-escaped JSON, so tests can send strings UTF-8 cannot encode.
        return await self.client.post(
            f"{self.base_url}/admin/sse/push?app_id={self.app.id}",
            content=json.dumps(body).encode("ascii"),
            headers={"content-type": "application/json"},
        )

    async def send(self, op: str, **fields: Any) -> str:
        """Push one message with a fresh client-event-id; returns that id."""
        event_id = self.event_id()
        response = await self.push({"client-event-id": event_id, "op": op, **fields})
        assert response.status_code == 200, response.text
        assert response.json() == {}
        return event_id

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        return await self.stream.next(timeout)

    async def next_op(self, op: str, timeout: float = WAIT) -> dict[str, Any]:
        return await self.stream.next_op(op, timeout)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        limits=httpx.Limits(max_connections=400, max_keepalive_connections=50),
    )


async def eventually(check: Callable[[], bool], *, timeout: float = WAIT) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def transact(http: httpx.AsyncClient, base_url: str, app: AppRecord, steps: list[Any]) -> int:
    response = await http.post(
        base_url + "/admin/transact", headers=admin_headers(app), json={"steps": steps}
    )
    assert response.status_code == 200, response.text
    return int(response.json()["tx-id"])


async def query(
    http: httpx.AsyncClient, base_url: str, app: AppRecord, q: Any, **headers: str
) -> Any:
    response = await http.post(
        base_url + "/admin/query",
        headers={**admin_headers(app), **headers},
        json={"query": q, "inference?": False},
    )
    assert response.status_code == 200, response.text
    return response.json()
