"""What `Instant` and `AsyncInstant` share, none of it I/O: settings, ``tx``, ``as_user``,
repr, and the rules for which client closes the connection pool.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ._errors import InstantTypeError
from ._logging import LiveLog, Logger
from ._protocol.admin import namespaces_of
from ._settings import Impersonation, Settings
from ._transport import AsyncTransport, SyncTransport
from ._tx import TxBuilder

__all__ = ["ClientBase", "SharedState"]

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)
ClientT = TypeVar("ClientT", bound="ClientBase[Any]")


class SharedState:
    """Mutable state a root client shares with its ``as_user`` clones."""

    __slots__ = ("live_log", "namespaces")

    def __init__(self, *, verbose: bool = False, logger: Logger | None = None) -> None:
        self.namespaces: tuple[str, ...] = ()
        if not isinstance(verbose, bool):
            raise InstantTypeError(f"verbose must be True or False, got {verbose!r}")
        if logger is not None and not all(
            callable(getattr(logger, name, None)) for name in ("debug", "info", "error")
        ):
            raise InstantTypeError(
                "logger must have debug(), info() and error() methods (a logging.Logger "
                f"works), got {type(logger).__name__}"
            )
        # Realtime logging (subscriptions, streams); as_user clones log the same way.
        self.live_log = LiveLog(verbose=verbose, logger=logger)


class ClientBase(Generic[TransportT]):
    """The non-I/O half of a client. Subclasses only add the methods that send requests."""

    _settings: Settings
    _transport: TransportT
    _owns_transport: bool
    _shared: SharedState
    _tx: TxBuilder

    def _bind(
        self,
        settings: Settings,
        transport: TransportT,
        *,
        owns_transport: bool,
        shared: SharedState,
    ) -> None:
        """Set up an instance; used by the constructor and by `as_user` for clones."""
        self._settings = settings
        self._transport = transport
        self._owns_transport = owns_transport
        self._shared = shared
        self._tx = TxBuilder(self._known_namespaces)
        self._attach_features()

    def _attach_features(self) -> None:
        """Create this instance's feature namespaces (``auth``, ``storage``, ...)."""
        raise NotImplementedError

    @property
    def app_id(self) -> str:
        return self._settings.app_id

    @property
    def api_uri(self) -> str:
        return self._settings.api_uri

    @property
    def tx(self) -> TxBuilder:
        """The transaction builder: ``db.tx.goals[goal_id].update({...})``."""
        return self._tx

    def as_user(
        self: ClientT,
        *,
        email: str | None = None,
        token: str | None = None,
        guest: bool = False,
    ) -> ClientT:
        """A new client that acts as a user (exactly one of ``email``, ``token``, ``guest``).

        Queries and transactions then run with that user's permissions. The original
        client is unchanged; the clone shares its connection pool and never closes it.
        Calling ``as_user`` on a clone replaces the identity (it does not stack).
        """
        impersonation = Impersonation.from_arguments(email=email, token=token, guest=guest)
        clone = type(self).__new__(type(self))
        clone._bind(
            self._settings.impersonating(impersonation),
            self._transport,
            owns_transport=False,
            shared=self._shared,
        )
        return clone

    def _live_log(self) -> LiveLog:
        """The realtime log, masking this client's own tokens too."""
        return self._shared.live_log.with_secrets(self._settings.secrets)

    def _known_namespaces(self) -> tuple[str, ...]:
        return self._shared.namespaces

    def _remember_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        # Feeds db.tx tab completion, which must never do I/O itself.
        self._shared.namespaces = namespaces_of(schema)
        return schema

    def __repr__(self) -> str:
        settings = self._settings
        user = f", as_user({settings.impersonation.describe()})" if settings.impersonation else ""
        token = "" if settings.admin_token else ", no admin token"
        name = type(self).__name__
        return f"{name}(app_id={settings.app_id!r}, api_uri={settings.api_uri!r}{token}{user})"
