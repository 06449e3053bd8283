"""Live features driven from a background thread with one blocking API for both clients:
`Subscriber` collects a subscription's payloads, `write_stream` / `read_stream` write and
read a whole stream. Reliability tests use them to check what a subscription or a
stream delivers across faults, with `Instant` and `AsyncInstant` alike."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from instantdb import AsyncInstant, Instant, RetryPolicy
from instantdb_local.instance import AppCredentials

__all__ = ["Subscriber", "digest", "read_stream", "repeated_payloads", "write_stream"]

WAIT = 30.0  # a bound on every wait here; a healthy run needs a fraction of it
_FAST = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05, deadline=10)


def _client(kind: str, creds: AppCredentials, api_uri: str | None) -> Any:
    cls = AsyncInstant if kind == "async" else Instant
    return cls(
        app_id=creds.app_id,
        admin_token=creds.admin_token,
        api_uri=api_uri or creds.api_uri,
        retry=_FAST,
    )


def digest(data: str | bytes) -> str:
    """SHA-256 of the whole text (UTF-8) or bytes."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class Subscriber:
    """``subscribe_query`` consumed in a thread; ``payloads`` in the order delivered."""

    def __init__(
        self,
        kind: str,
        creds: AppCredentials,
        query: dict[str, Any],
        api_uri: str | None = None,
        *,
        as_user: dict[str, Any] | None = None,
    ) -> None:
        """``as_user``: the arguments of ``db.as_user(...)`` to subscribe as that user."""
        self.kind = kind
        self._as_user = as_user
        self.payloads: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._db = None if kind == "async" else _client(kind, creds, api_uri)
        self._creds, self._api_uri, self._query = creds, api_uri, query
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscription: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="subscriber", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Subscriber:
        self._thread.start()
        assert self._ready.wait(WAIT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _add(self, payload: dict[str, Any]) -> None:
        with self._changed:
            self.payloads.append(payload)
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            if self.kind == "async":
                asyncio.run(self._run_async())
            else:
                assert self._db is not None
                self._subscription = self._scoped(self._db).subscribe_query(self._query)
                self._ready.set()
                for payload in self._subscription:
                    self._add(payload)
        except BaseException as exc:  # reported by close()
            self.error = exc
        finally:
            self._ready.set()
            with self._changed:
                self._changed.notify_all()

    async def _run_async(self) -> None:
        self._loop = asyncio.get_running_loop()
        db = _client("async", self._creds, self._api_uri)
        self._subscription = self._scoped(db).subscribe_query(self._query)
        self._ready.set()
        try:
            async for payload in self._subscription:
                self._add(payload)
        finally:
            await db.aclose()

    def _scoped(self, db: Any) -> Any:
        return db.as_user(**self._as_user) if self._as_user else db

    def ok_data(self) -> list[Any]:
        with self._changed:
            return [p["data"] for p in self.payloads if p["type"] == "ok"]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: predicate(self.payloads) or not self._thread.is_alive(), WAIT
            ) and predicate(self.payloads)

    def wait_for_data(self, expected: Any) -> bool:
        """Until the newest ``ok`` payload's data is ``expected``."""

        def newest_is(payloads: list[dict[str, Any]]) -> bool:
            oks = [p for p in payloads if p["type"] == "ok"]
            return bool(oks) and oks[-1]["data"] == expected

        return self.wait_for(newest_is)

    def close(self) -> None:
        subscription = self._subscription
        if subscription is not None:
            if self.kind == "async":
                assert self._loop is not None
                if not self._loop.is_closed():
                    future = asyncio.run_coroutine_threadsafe(subscription.aclose(), self._loop)
                    future.result(WAIT)
            else:
                subscription.close()
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the subscription did not end after close()"
        if self._db is not None:
            self._db.close()
        if self.error is not None:
            raise self.error


def repeated_payloads(payloads: Sequence[dict[str, Any]]) -> list[int]:
    """Indexes of ``ok`` payloads equal (data and page info) to the payload before them."""
    return [
        i
        for i in range(1, len(payloads))
        if payloads[i]["type"] == "ok"
        and payloads[i - 1]["type"] == "ok"
        and (payloads[i]["data"], payloads[i]["page_info"])
        == (payloads[i - 1]["data"], payloads[i - 1]["page_info"])
    ]


def _in_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a thread (bounded), re-raising what it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT * 2)
    assert not thread.is_alive(), "the live operation did not end"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def write_stream(
    kind: str,
    creds: AppCredentials,
    client_id: str,
    parts: Sequence[str | bytes],
    *,
    api_uri: str | None = None,
    between: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write ``parts`` as one stream and end it; ``between(i)`` runs after part ``i``.
    Returns the writer's ``bytes_written`` and ``bytes_flushed`` at the end."""

    def sync() -> dict[str, int]:
        with (
            _client(kind, creds, api_uri) as db,
            db.streams.write(client_id=client_id, timeout=WAIT) as writer,
        ):
            for i, part in enumerate(parts):
                writer.write(part)
                if between is not None:
                    between(i)
        return {"written": writer.bytes_written, "flushed": writer.bytes_flushed}

    async def run_async() -> dict[str, int]:
        async with _client(kind, creds, api_uri) as db:
            async with db.streams.write(client_id=client_id, timeout=WAIT) as writer:
                for i, part in enumerate(parts):
                    await writer.write(part)
                    if between is not None:
                        await asyncio.to_thread(between, i)
            return {"written": writer.bytes_written, "flushed": writer.bytes_flushed}

    return _in_thread(sync if kind == "sync" else lambda: asyncio.run(run_async()))


def read_stream(
    kind: str, creds: AppCredentials, client_id: str, *, api_uri: str | None = None
) -> str:
    """The whole stream as text, read to its end."""

    def sync() -> str:
        with _client(kind, creds, api_uri) as db, db.streams.read(client_id=client_id) as reader:
            return "".join(reader)

    async def run_async() -> str:
        db = _client(kind, creds, api_uri)
        async with db, db.streams.read(client_id=client_id) as reader:
            return "".join([chunk async for chunk in reader])

    return str(_in_thread(sync if kind == "sync" else lambda: asyncio.run(run_async())))
