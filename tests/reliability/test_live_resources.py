"""What a live feature holds after it ends: no connection left checked out of the pool,
and a reader closed from elsewhere stops instead of spinning.

Both were found by the secrets harness (which bounds each live operation by closing it
from a timer) and fixed: an async session cancelled while closing its event stream kept
the connection checked out for good, and a reader closed from another thread or task
woke its wait at once, forever.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from instantdb import AsyncInstant, Instant, InstantValidationError
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials

# Each reader holds its event stream and one connection for its pushes: two in all.
# Were one leaked, the next reader could not get its second connection from the pool.
TWO_CONNECTIONS = httpx.Limits(max_connections=2, max_keepalive_connections=2)
POOL_WAIT = httpx.Timeout(10.0, pool=2.0)
HANG_LIMIT = 15.0  # far beyond what a working close needs: only a hang reaches it


async def _read_all(reader: Any) -> None:
    async with reader:
        async for _chunk in reader:
            pass


def test_failed_async_readers_give_their_connections_back(app: AppCredentials) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(limits=TWO_CONNECTIONS, timeout=POOL_WAIT) as http:
            db = AsyncInstant(
                app_id=app.app_id,
                admin_token=app.admin_token,
                api_uri=app.api_uri,
                http_client=http,
                retry=False,
            )
            for _ in range(4):
                with pytest.raises(InstantValidationError, match="missing"):
                    await _read_all(db.streams.read(client_id="no-such-stream"))
            assert await db.query({"goals": {}}) == {"goals": []}
            await db.aclose()

    asyncio.run(scenario())


def test_async_subscriptions_closed_early_give_their_connections_back(
    app: AppCredentials,
) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(limits=TWO_CONNECTIONS, timeout=POOL_WAIT) as http:
            db = AsyncInstant(
                app_id=app.app_id,
                admin_token=app.admin_token,
                api_uri=app.api_uri,
                http_client=http,
                retry=False,
            )
            for _ in range(4):
                async with db.subscribe_query({"goals": {}}) as subscription:
                    async for payload in subscription:
                        assert payload["type"] == "ok"
                        break
            assert await db.query({"goals": {}}) == {"goals": []}
            await db.aclose()

    asyncio.run(scenario())


def _open_stream(server: LocalServer, app: AppCredentials, client_id: str) -> Any:
    """A writer that started a stream and wrote to it, and has not ended it."""
    writer_db = Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=server.api_uri)
    writer = writer_db.streams.write(client_id=client_id, timeout=10)
    writer.write("not finished \u2713")
    return writer_db, writer


def test_a_reader_closed_from_another_thread_stops(
    server: LocalServer, app: AppCredentials
) -> None:
    writer_db, writer = _open_stream(server, app, "open-for-sync")
    db = Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri)
    reader = db.streams.read(client_id="open-for-sync")
    chunks: list[str] = []
    first = threading.Event()

    def read() -> None:
        for chunk in reader:
            chunks.append(chunk)
            first.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert first.wait(HANG_LIMIT)
    reader.close()
    thread.join(HANG_LIMIT)
    assert not thread.is_alive(), "the closed reader kept waiting"
    assert "".join(chunks) == "not finished \u2713"
    writer.close()
    writer_db.close()
    db.close()


def test_an_async_reader_closed_from_another_task_stops(
    server: LocalServer, app: AppCredentials
) -> None:
    writer_db, writer = _open_stream(server, app, "open-for-async")

    async def scenario() -> list[str]:
        db = AsyncInstant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri)
        reader = db.streams.read(client_id="open-for-async")
        chunks: list[str] = []
        first = asyncio.Event()

        async def read() -> None:
            async for chunk in reader:
                chunks.append(chunk)
                first.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(first.wait(), HANG_LIMIT)
        await reader.aclose()
        await asyncio.wait_for(task, HANG_LIMIT)
        await db.aclose()
        return chunks

    assert "".join(asyncio.run(scenario())) == "not finished \u2713"
    writer.close()
    writer_db.close()
