"""A scripted fake of the Instant API on httpx.MockTransport, and a harness that drives
`Instant` and `AsyncInstant` with the same blocking calls, so that one test body checks
both clients.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

import instantdb

APP_ID = "a0000000-0000-4000-8000-000000000001"
ADMIN_TOKEN = "ad000000-0000-4000-8000-00000000feed"
REFRESH_TOKEN = "7e000000-0000-4000-8000-00000000beef"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class MockAPI:
    """Records every request; answers with queued responses, then with ``default``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._answers: deque[Answer] = deque()
        self.default: Answer = httpx.Response(200, json={})

    def queue(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order (an exception is raised)."""
        self._answers.extend(answers)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self._answers.popleft() if self._answers else self.default
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    @property
    def last(self) -> httpx.Request:
        assert self.requests, "no request was sent"
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


class ClientHarness:
    """Makes clients of one kind (sync or async) against a MockAPI and runs their methods.

    ``call(db, "query", q)`` returns the result for either kind, so test bodies need not
    know which client they drive.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.api = MockAPI()
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.clients: list[Any] = []

    @property
    def client_class(self) -> type[Any]:
        return instantdb.AsyncInstant if self.kind == "async" else instantdb.Instant

    def make(self, **kwargs: Any) -> Any:
        kwargs.setdefault("app_id", APP_ID)
        kwargs.setdefault("admin_token", ADMIN_TOKEN)
        kwargs.setdefault("api_uri", "https://api.example.test")
        if "http_client" not in kwargs:
            kwargs.setdefault("_transport", self.api.transport())
        db = self.client_class(**kwargs)
        self.clients.append(db)
        return db

    def call(self, db: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(db, method)(*args, **kwargs)
        if self.loop is not None:
            return self.loop.run_until_complete(result)
        return result

    def enter_and_exit(self, db: Any) -> Any:
        """Run ``with db`` / ``async with db`` around nothing; return what it entered as."""
        if self.loop is None:
            with db as entered:
                return entered

        async def use() -> Any:
            async with db as entered:
                return entered

        return self.loop.run_until_complete(use())

    def close(self, db: Any) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(db.aclose())
        else:
            db.close()

    def shutdown(self) -> None:
        for db in self.clients:
            self.close(db)
        if self.loop is not None:
            self.loop.close()
