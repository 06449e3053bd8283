"""Driving `Instant` and `AsyncInstant` with one blocking API, so each reliability test
body checks both clients.

``clients.run(db.query(q))`` returns the result for either kind: a sync client has
already done the work, an async one hands back a coroutine that runs on the runner's own
event loop (one loop for the runner's lifetime, so pooled connections stay usable).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from instantdb import AsyncInstant, Instant, RetryPolicy
from instantdb_local.instance import AppCredentials

__all__ = ["FAST_RETRIES", "ClientRunner", "admin_client", "entity_ids"]

# The default policy's shape with waits short enough for tests: what is retried is the
# same, only the backoff is scaled down.
FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, deadline=10)

KINDS = ("sync", "async")


class ClientRunner:
    """Makes clients of one kind and runs their calls to completion."""

    def __init__(self, kind: str) -> None:
        assert kind in KINDS
        self.kind = kind
        self._loop = asyncio.new_event_loop() if kind == "async" else None
        self._clients: list[Any] = []

    def make(self, creds: AppCredentials, *, api_uri: str | None = None, **kwargs: Any) -> Any:
        """A client for ``creds``' app, sent to ``api_uri`` (a proxy) when given."""
        kwargs.setdefault("retry", FAST_RETRIES)
        cls = AsyncInstant if self.kind == "async" else Instant
        db = cls(
            app_id=creds.app_id,
            admin_token=creds.admin_token,
            api_uri=api_uri or creds.api_uri,
            **kwargs,
        )
        self._clients.append(db)
        return db

    def run(self, result: Any) -> Any:
        if inspect.isawaitable(result):
            assert self._loop is not None, "a sync client returned an awaitable"
            return self._loop.run_until_complete(result)
        return result

    def close(self) -> None:
        for db in self._clients:
            if isinstance(db, AsyncInstant):
                assert self._loop is not None
                self._loop.run_until_complete(db.aclose())
            else:
                db.close()
        if self._loop is not None:
            self._loop.close()


def admin_client(creds: AppCredentials) -> Instant:
    """A plain admin client straight to the server (no proxy, no retries): the test's
    own view of what the server holds."""
    return Instant(
        app_id=creds.app_id,
        admin_token=creds.admin_token,
        api_uri=creds.api_uri,
        retry=False,
    )


def entity_ids(creds: AppCredentials, namespace: str) -> list[str]:
    """The ids of every entity of ``namespace`` on the server, as admin."""
    with admin_client(creds) as db:
        return [row["id"] for row in db.query({namespace: {}})[namespace]]
