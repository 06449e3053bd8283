"""One test body for both clients.

A test module declares a fixture parametrised over `CLIENT_KINDS` that yields from
`open_client`: the sync kind is a plain `Instant`; the async kind is an `AsyncInstant`
behind `Blocking`, which runs each coroutine it returns to completion on a private event
loop. The test then calls ``db.auth.create_token(...)`` the same way for both, and every
request really goes through the async client's code path.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

from instantdb import AsyncInstant, Instant
from instantdb_local.instance import AppCredentials

CLIENT_KINDS = ["sync", "async"]

# The parts of a client that hold coroutine methods of their own.
_FEATURES = frozenset({"auth", "storage", "rooms"})


class Blocking:
    """An async client (or one of its features) with every coroutine awaited in place."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def run(self, awaitable: Any) -> Any:
        """Await anything on the client's loop (e.g. a test's own coroutine)."""
        return self._loop.run_until_complete(awaitable)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in _FEATURES:
            return Blocking(value, self._loop)
        if not inspect.ismethod(value):
            return value  # e.g. the tx builder: the same object for both clients

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._loop.run_until_complete(result)
            if isinstance(result, AsyncInstant):  # as_user() clones
                return Blocking(result, self._loop)
            return result

        return call


def is_async(db: Any) -> bool:
    return isinstance(db, Blocking)


def open_client(kind: str, app: AppCredentials) -> Iterator[Any]:
    """Yield a client of ``kind`` for ``app`` and close it afterwards."""
    arguments = {"app_id": app.app_id, "admin_token": app.admin_token, "api_uri": app.api_uri}
    if kind == "sync":
        db = Instant(**arguments)
        try:
            yield db
        finally:
            db.close()
        return
    loop = asyncio.new_event_loop()
    async_db = AsyncInstant(**arguments)
    try:
        yield Blocking(async_db, loop)
    finally:
        loop.run_until_complete(async_db.aclose())
        loop.close()
