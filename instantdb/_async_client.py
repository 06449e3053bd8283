"""`AsyncInstant`, the asyncio client. Each method builds a `Call` and awaits it."""

from __future__ import annotations

from types import TracebackType

import httpx

from ._auth import AsyncAuth
from ._base import ClientBase, SharedState
from ._logging import Logger
from ._protocol import admin
from ._retry import RetryPolicy
from ._rooms import AsyncRooms
from ._settings import DEFAULT_TIMEOUT, resolve_settings
from ._storage import AsyncStorage
from ._streams import AsyncStreams
from ._subscription import AsyncSubscription
from ._transport import AsyncTransport
from ._types import (
    Chunks,
    DebugResult,
    Query,
    QueryResult,
    RuleParams,
    Rules,
    Schema,
    TransactResult,
)
from ._webhooks import AsyncWebhooks

__all__ = ["AsyncInstant"]


class AsyncInstant(ClientBase[AsyncTransport]):
    """The InstantDB admin client for asyncio: the same methods as `Instant`, awaited.

    ``app_id`` and ``admin_token`` fall back to ``INSTANT_APP_ID`` and
    ``INSTANT_APP_ADMIN_TOKEN``, ``api_uri`` to ``INSTANT_API_URI`` then
    ``https://api.instantdb.com``. ``timeout`` applies to every request (seconds, or an
    ``httpx.Timeout``); ``retry`` is a `RetryPolicy`, True (the default policy) or False.
    ``http_client`` lends the SDK your own ``httpx.AsyncClient``, which it will not close.

    Use it as an async context manager, or await `aclose`, to release the pool.
    """

    def __init__(
        self,
        *,
        app_id: str | None = None,
        admin_token: str | None = None,
        api_uri: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | bool = True,
        verbose: bool = False,
        logger: Logger | None = None,
        http_client: httpx.AsyncClient | None = None,
        _transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = resolve_settings(
            app_id=app_id, admin_token=admin_token, api_uri=api_uri, timeout=timeout, retry=retry
        )
        transport = AsyncTransport(settings, http_client=http_client, transport=_transport)
        self._bind(
            settings,
            transport,
            owns_transport=True,
            shared=SharedState(verbose=verbose, logger=logger),
        )

    def _attach_features(self) -> None:
        self._auth = AsyncAuth(self._settings, self._transport)
        self._storage = AsyncStorage(self._settings, self._transport)
        self._rooms = AsyncRooms(self._settings, self._transport)
        self._streams = AsyncStreams(self._settings, self._transport, self._live_log())
        self._webhooks = AsyncWebhooks(self._settings, self._transport)

    @property
    def auth(self) -> AsyncAuth:
        """Users, magic codes and refresh tokens; always as admin (see docs/api.md)."""
        return self._auth

    @property
    def storage(self) -> AsyncStorage:
        """File uploads and downloads, as this client's identity."""
        return self._storage

    @property
    def webhooks(self) -> AsyncWebhooks:
        """Webhooks: ``manager`` (as admin), and ``validate`` / ``fetch_payloads`` /
        ``process_payload`` for receiving deliveries."""
        return self._webhooks

    @property
    def rooms(self) -> AsyncRooms:
        """Presence in rooms; always as admin."""
        return self._rooms

    @property
    def streams(self) -> AsyncStreams:
        """Durable text streams: ``db.streams.write(client_id=...)``, ``db.streams.read(...)``."""
        return self._streams

    def subscribe_query(
        self, q: Query, *, rule_params: RuleParams | None = None
    ) -> AsyncSubscription:
        """A live query: ``async with db.subscribe_query(q) as sub: async for payload in sub``.

        Yields ``{"type": "ok", "data", "page_info", "session_info"}`` with the full
        result, first and after every change, or ``{"type": "error", "error", ...}``.
        Reconnects by itself after transient failures; see docs/api.md.
        """
        return AsyncSubscription(self._settings, self._transport, q, rule_params, self._live_log())

    async def query(self, q: Query, *, rule_params: RuleParams | None = None) -> QueryResult:
        """Run an InstaQL query: ``await db.query({"goals": {"todos": {}}})``."""
        return await self._transport.run(admin.query_call(self._settings, q, rule_params))

    async def transact(
        self, chunks: Chunks, *, rule_params: RuleParams | None = None
    ) -> TransactResult:
        """Apply ``db.tx`` chunks atomically; returns ``{"tx-id": n}``.

        ``rule_params`` attaches the same rule params to every entity the steps touch.
        """
        return await self._transport.run(admin.transact_call(self._settings, chunks, rule_params))

    async def debug_query(
        self, q: Query, *, rules: Rules | None = None, rule_params: RuleParams | None = None
    ) -> DebugResult:
        """Run a query with permission checks explained (needs an ``as_user`` client).

        Returns ``{"result": ..., "check_results": [...], "rule_wheres": ...}``.
        """
        call = admin.debug_query_call(self._settings, q, rules, rule_params)
        return await self._transport.run(call)

    async def debug_transact(
        self,
        chunks: Chunks,
        *,
        rules: Rules | None = None,
        rule_params: RuleParams | None = None,
    ) -> DebugResult:
        """Check a transaction's permissions without committing it (needs ``as_user``).

        Returns ``{"tx_id", "all_checks_ok", "committed", "check_results"}``.
        ``rule_params`` attaches the same rule params to every entity the steps touch, as
        in `transact`.
        """
        return await self._transport.run(
            admin.debug_transact_call(self._settings, chunks, rules, rule_params)
        )

    async def schema(self) -> Schema:
        """The app's schema (``{"blobs": ..., "refs": ...}``); also feeds ``db.tx`` completion."""
        return self._remember_schema(await self._transport.run(admin.schema_call(self._settings)))

    async def aclose(self) -> None:
        """Close the connection pool (an ``as_user`` clone leaves its parent's pool open)."""
        if self._owns_transport:
            await self._transport.aclose()

    async def __aenter__(self) -> AsyncInstant:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
