"""`Instant`, the blocking client. Each method builds a `Call` and runs it."""

from __future__ import annotations

from types import TracebackType

import httpx

from ._auth import Auth
from ._base import ClientBase, SharedState
from ._logging import Logger
from ._protocol import admin
from ._retry import RetryPolicy
from ._rooms import Rooms
from ._settings import DEFAULT_TIMEOUT, resolve_settings
from ._storage import Storage
from ._streams import Streams
from ._subscription import Subscription
from ._transport import SyncTransport
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
from ._webhooks import Webhooks

__all__ = ["Instant"]


class Instant(ClientBase[SyncTransport]):
    """The InstantDB admin client (blocking).

    ``app_id`` and ``admin_token`` fall back to ``INSTANT_APP_ID`` and
    ``INSTANT_APP_ADMIN_TOKEN``, ``api_uri`` to ``INSTANT_API_URI`` then
    ``https://api.instantdb.com``. ``timeout`` applies to every request (seconds, or an
    ``httpx.Timeout``); ``retry`` is a `RetryPolicy`, True (the default policy) or False.
    ``http_client`` lends the SDK your own ``httpx.Client``, which it will not close.

    Use it as a context manager, or call `close`, to release the connection pool.
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
        http_client: httpx.Client | None = None,
        _transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = resolve_settings(
            app_id=app_id, admin_token=admin_token, api_uri=api_uri, timeout=timeout, retry=retry
        )
        transport = SyncTransport(settings, http_client=http_client, transport=_transport)
        self._bind(
            settings,
            transport,
            owns_transport=True,
            shared=SharedState(verbose=verbose, logger=logger),
        )

    def _attach_features(self) -> None:
        self._auth = Auth(self._settings, self._transport)
        self._storage = Storage(self._settings, self._transport)
        self._rooms = Rooms(self._settings, self._transport)
        self._streams = Streams(self._settings, self._transport, self._live_log())
        self._webhooks = Webhooks(self._settings, self._transport)

    @property
    def auth(self) -> Auth:
        """Users, magic codes and refresh tokens; always as admin (see docs/api.md)."""
        return self._auth

    @property
    def storage(self) -> Storage:
        """File uploads and downloads, as this client's identity."""
        return self._storage

    @property
    def webhooks(self) -> Webhooks:
        """Webhooks: ``manager`` (as admin), and ``validate`` / ``fetch_payloads`` /
        ``process_payload`` for receiving deliveries."""
        return self._webhooks

    @property
    def rooms(self) -> Rooms:
        """Presence in rooms; always as admin."""
        return self._rooms

    @property
    def streams(self) -> Streams:
        """Durable text streams: ``db.streams.write(client_id=...)``, ``db.streams.read(...)``."""
        return self._streams

    def subscribe_query(self, q: Query, *, rule_params: RuleParams | None = None) -> Subscription:
        """A live query: ``with db.subscribe_query(q) as sub: for payload in sub: ...``.

        Yields ``{"type": "ok", "data", "page_info", "session_info"}`` with the full
        result, first and after every change, or ``{"type": "error", "error", ...}``.
        Reconnects by itself after transient failures; see docs/api.md.
        """
        return Subscription(self._settings, self._transport, q, rule_params, self._live_log())

    def query(self, q: Query, *, rule_params: RuleParams | None = None) -> QueryResult:
        """Run an InstaQL query: ``db.query({"goals": {"todos": {}}})``."""
        return self._transport.run(admin.query_call(self._settings, q, rule_params))

    def transact(self, chunks: Chunks, *, rule_params: RuleParams | None = None) -> TransactResult:
        """Apply ``db.tx`` chunks atomically; returns ``{"tx-id": n}``.

        ``rule_params`` attaches the same rule params to every entity the steps touch.
        """
        return self._transport.run(admin.transact_call(self._settings, chunks, rule_params))

    def debug_query(
        self, q: Query, *, rules: Rules | None = None, rule_params: RuleParams | None = None
    ) -> DebugResult:
        """Run a query with permission checks explained (needs an ``as_user`` client).

        Returns ``{"result": ..., "check_results": [...], "rule_wheres": ...}``.
        """
        return self._transport.run(admin.debug_query_call(self._settings, q, rules, rule_params))

    def debug_transact(
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
        return self._transport.run(
            admin.debug_transact_call(self._settings, chunks, rules, rule_params)
        )

    def schema(self) -> Schema:
        """The app's schema (``{"blobs": ..., "refs": ...}``); also feeds ``db.tx`` completion."""
        return self._remember_schema(self._transport.run(admin.schema_call(self._settings)))

    def close(self) -> None:
        """Close the connection pool (an ``as_user`` clone leaves its parent's pool open)."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Instant:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
