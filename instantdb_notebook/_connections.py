"""Who the notebook talks to: client specs, named connections, and where tokens come from.

A `ClientSpec` is everything needed to build a client (app id, API URI, admin token,
impersonation), so the portal can build its own ``AsyncInstant`` on its own loop from a
user's ``Instant`` without sharing its connection pool. A `Connection` is what
``%instant --connect`` / ``--local`` / ``--attach`` made: a spec, where its token came
from, and possibly a `LocalServer` the extension owns and stops.

Tokens are secrets: no repr, message or description here ever contains one, and a token
is never read from a cell. It comes from an environment variable, ``getpass`` or
``keyring``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from instantdb import InstantError

from ._redact import looks_like_token, redact, remember, shown, token_refused

if TYPE_CHECKING:
    import httpx

    from instantdb import AsyncInstant, Instant, RetryPolicy
    from instantdb_local import LocalServer

__all__ = [
    "ClientSpec",
    "Connection",
    "ConnectionSetupError",
    "Connections",
    "token_from_env",
]

ImpersonationKind = Literal["email", "token", "guest"]

ENV_APP_ID = "INSTANT_APP_ID"
ENV_ADMIN_TOKEN = "INSTANT_APP_ADMIN_TOKEN"
ENV_API_URI = "INSTANT_API_URI"

# What --connections says of a connection made with --no-token.
NO_TOKEN_ORIGIN = "no admin token"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ConnectionSetupError(InstantError):
    """A connection could not be made or found; the message says what to do."""


@dataclass(frozen=True)
class ClientSpec:
    """How to build a client. The admin token and a refresh token never show in a repr."""

    app_id: str
    api_uri: str
    admin_token: str | None = field(repr=False)
    impersonation: tuple[ImpersonationKind, str] | None = field(default=None, repr=False)
    timeout: httpx.Timeout | float | None = field(default=None, repr=False, compare=False)
    retry: RetryPolicy | bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Whatever a spec was built with is a secret every later message must hide.
        remember(self.admin_token)
        if self.impersonation is not None and self.impersonation[0] == "token":
            remember(self.impersonation[1])

    @classmethod
    def of(cls, db: Instant | AsyncInstant) -> ClientSpec:
        """The spec of an existing client (a root or an ``as_user`` clone)."""
        # The one place the notebook layer reads the SDK's private settings: a client
        # shows no token publicly, and the portal needs one to build its own client.
        settings = getattr(db, "_settings", None)
        if settings is None:
            raise TypeError(
                f"expected an instantdb.Instant or AsyncInstant, got {type(db).__name__}"
            )
        impersonation = settings.impersonation
        return cls(
            app_id=settings.app_id,
            api_uri=settings.api_uri,
            admin_token=settings.admin_token,
            impersonation=(impersonation.kind, impersonation.value) if impersonation else None,
            timeout=settings.timeout,
            retry=settings.retry,
        )

    def as_user(
        self, *, email: str | None = None, token: str | None = None, guest: bool = False
    ) -> ClientSpec:
        """The same app, acting as a user (exactly one of the three, as ``db.as_user``)."""
        given: list[tuple[ImpersonationKind, str]] = []
        if email is not None:
            given.append(("email", email))
        if token is not None:
            given.append(("token", token))
        if guest:
            given.append(("guest", "true"))
        if len(given) != 1:
            raise ValueError("act as exactly one of: an email, a refresh token, or a guest")
        return replace(self, impersonation=given[0])

    def describe(self) -> str:
        """App and host, never a token: ``app 5f3c… at http://127.0.0.1:8888``."""
        who = ""
        if self.impersonation is not None:
            kind, value = self.impersonation
            who = {
                "email": f" as {value}",
                "token": " as the user of a refresh token",
                "guest": " as a guest",
            }[kind]
        return f"app {self.app_id} at {self.api_uri}{who}"

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "app_id": self.app_id,
            "api_uri": self.api_uri,
            # "" (not None) means "no token": the SDK then does not read the environment.
            "admin_token": self.admin_token or "",
            "retry": self.retry,
        }
        if self.timeout is not None:
            arguments["timeout"] = self.timeout
        return arguments

    def impersonate(self, root: Any) -> Any:
        """``root.as_user(...)`` with this spec's identity, or ``root`` itself."""
        if self.impersonation is None:
            return root
        kind, value = self.impersonation
        if kind == "guest":
            return root.as_user(guest=True)
        return root.as_user(**{kind: value})

    def sync_client(self) -> tuple[Instant, Instant]:
        """``(root, client)``: close the root; use the client (an ``as_user`` clone or it)."""
        from instantdb import Instant

        root = Instant(**self._arguments())
        return root, self.impersonate(root)

    def async_client(self) -> tuple[AsyncInstant, AsyncInstant]:
        """As `sync_client`, for ``AsyncInstant``. Use both only on one event loop."""
        from instantdb import AsyncInstant

        root = AsyncInstant(**self._arguments())
        return root, self.impersonate(root)


def token_from_env(variable: str, *, purpose: str) -> str:
    """The value of environment variable ``variable``; an error that names it if unset.

    The name is checked first, so a token pasted where a variable name belongs is
    refused without being echoed.
    """
    if not _ENV_NAME.match(variable):
        raise ConnectionSetupError(
            f"{purpose}: expected the name of an environment variable (letters, digits and "
            "_), got something else. Tokens are never typed into a cell: put the token in "
            "an environment variable and give its name."
        )
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConnectionSetupError(
            f"{purpose}: the environment variable {variable} is not set (or is empty). Set "
            "it before starting Jupyter, or in a cell with os.environ[...] = getpass()."
        )
    return value


def token_from_getpass(prompt: str) -> str:
    import getpass

    value = getpass.getpass(prompt).strip()
    if not value:
        raise ConnectionSetupError("No token was entered.")
    return value


def token_from_keyring(service: str, username: str) -> str:
    try:
        import keyring  # type: ignore[import-not-found]
    except ImportError:
        raise ConnectionSetupError(
            "--keyring needs the keyring package: pip install keyring"
        ) from None
    value = keyring.get_password(service, username)
    if not value:
        raise ConnectionSetupError(
            f"keyring has no password for service {shown(service)} and user {username!r}. "
            f"Store it once with: keyring set {redact(service)} {username}"
        )
    return str(value).strip()


@dataclass
class Connection:
    """A named connection made by the magics. Holds at most one client and one server."""

    alias: str
    spec: ClientSpec
    origin: str
    """Where the app and token came from, for ``--connections`` (never the token)."""
    server: LocalServer | None = field(default=None, repr=False)
    """A local server this connection started and stops when closed."""
    _client: tuple[Instant, Instant] | None = field(default=None, repr=False)
    _schema: Mapping[str, Any] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self) -> Instant:
        """The blocking client for this connection, built on first use."""
        with self._lock:
            if self._client is None:
                self._client = self.spec.sync_client()
            return self._client[1]

    def schema(self, *, refresh: bool = False) -> Mapping[str, Any]:
        """``db.schema()``, fetched once and cached (completion must stay cheap)."""
        if self._schema is None or refresh:
            self._schema = self.client().schema()
        return self._schema

    @property
    def cached_schema(self) -> Mapping[str, Any] | None:
        return self._schema

    def describe(self) -> str:
        return f"{self.alias}: {self.spec.describe()} ({self.origin})"

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client[0].close()
        if self.server is not None:
            self.server.stop()
            self.server = None


class Connections:
    """The magics' connections by alias, and which one is current."""

    def __init__(self) -> None:
        self._by_alias: dict[str, Connection] = {}
        self._current: str | None = None

    def add(self, connection: Connection) -> Connection:
        """Register ``connection`` (replacing and closing one of the same alias); make it
        current."""
        old = self._by_alias.pop(connection.alias, None)
        if old is not None and old is not connection:
            old.close()
        self._by_alias[connection.alias] = connection
        self._current = connection.alias
        return connection

    def get(
        self, alias: str | None, *, fallback: Callable[[], Connection] | None = None
    ) -> Connection:
        """The connection named ``alias``, else the current one, else ``fallback()``."""
        if alias is not None:
            try:
                return self._by_alias[alias]
            except KeyError:
                pass
            if looks_like_token(alias):
                raise ConnectionSetupError(token_refused("That connection name"))
            known = ", ".join(sorted(self._by_alias)) or "none yet"
            raise ConnectionSetupError(
                f"No connection named {shown(alias)} (connections: {known}). Make one with "
                f"%instant --connect ... --alias {redact(alias)}"
            )
        if self._current is not None:
            return self._by_alias[self._current]
        if fallback is not None:
            return self.add(fallback())
        raise ConnectionSetupError(
            "Not connected. Use %instant --local for a local server, or %instant --connect "
            f"with {ENV_APP_ID} and {ENV_ADMIN_TOKEN} set in the environment."
        )

    @property
    def current(self) -> Connection | None:
        return self._by_alias.get(self._current) if self._current else None

    def all(self) -> list[Connection]:
        return list(self._by_alias.values())

    def close(self, alias: str) -> Connection:
        connection = self.get(alias)
        del self._by_alias[alias]
        if self._current == alias:
            self._current = next(iter(self._by_alias), None)
        connection.close()
        return connection

    def close_all(self) -> None:
        for alias in list(self._by_alias):
            self.close(alias)


def env_spec() -> ClientSpec:
    """The connection the environment describes (``INSTANT_APP_ID`` etc.)."""
    app_id = os.environ.get(ENV_APP_ID, "").strip()
    if not app_id:
        raise ConnectionSetupError(
            f"{ENV_APP_ID} is not set. Set {ENV_APP_ID} and {ENV_ADMIN_TOKEN} (and "
            f"{ENV_API_URI} for a self-hosted or local server) before starting Jupyter, or "
            "use %instant --local for a local server that needs no credentials."
        )
    return ClientSpec(
        app_id=app_id,
        api_uri=_api_uri(None),
        admin_token=os.environ.get(ENV_ADMIN_TOKEN, "").strip() or None,
    )


def _api_uri(given: str | None) -> str:
    from instantdb._settings import DEFAULT_API_URI

    uri = (given or os.environ.get(ENV_API_URI, "")).strip().rstrip("/")
    return uri or DEFAULT_API_URI


def connect_spec(
    app_id: str,
    *,
    api_uri: str | None,
    token_env: str | None,
    prompt: bool,
    keyring_service: str | None,
    no_token: bool = False,
) -> tuple[ClientSpec, str]:
    """A spec for ``app_id`` with its token from exactly one source; and that source."""
    sources = [s for s in (token_env, keyring_service) if s is not None] + (["p"] if prompt else [])
    if len(sources) + no_token > 1:
        raise ConnectionSetupError(
            "Give at most one token source: --admin-token-env VAR, --prompt-token, "
            "--keyring SERVICE or --no-token."
        )
    token: str | None
    if no_token:
        token, origin = None, NO_TOKEN_ORIGIN
    elif prompt:
        token, origin = token_from_getpass(f"Admin token for app {app_id}: "), "token from getpass"
    elif keyring_service is not None:
        token = token_from_keyring(keyring_service, app_id)
        origin = f"token from keyring service {keyring_service!r}"
    else:
        variable = token_env or ENV_ADMIN_TOKEN
        token = token_from_env(variable, purpose="The admin token")
        origin = f"token from ${variable}"
    return ClientSpec(app_id=app_id, api_uri=_api_uri(api_uri), admin_token=token), origin


def start_local_server(data_dir: str | None) -> tuple[ClientSpec, LocalServer, str]:
    """Start a `LocalServer` the extension owns (a temporary data dir unless named)."""
    try:
        from instantdb_local import LocalServer
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConnectionSetupError(
            f"--local needs the local server: pip install 'instantdb[local]' ({exc})"
        ) from None
    server = LocalServer(data_dir=Path(data_dir).expanduser() if data_dir else None).start()
    creds = server.credentials
    spec = ClientSpec(app_id=creds.app_id, api_uri=creds.api_uri, admin_token=creds.admin_token)
    origin = (
        f"local server, data in {Path(data_dir).expanduser()}"
        if data_dir
        else "local server, temporary data"
    )
    return spec, server, origin


def attach_local_server(target: object) -> tuple[ClientSpec, str]:
    """The default app of a local server that is already running.

    ``target`` is a running `LocalServer` object, or the data directory of one started
    elsewhere (``instantdb-local serve --data DIR``), whose registry holds its address and
    the default app's credentials.
    """
    credentials = getattr(target, "credentials", None)
    if credentials is not None and hasattr(target, "running"):
        if not target.running:
            raise ConnectionSetupError("That LocalServer is not running: call .start() first.")
        spec = ClientSpec(
            app_id=credentials.app_id,
            api_uri=credentials.api_uri,
            admin_token=credentials.admin_token,
        )
        return spec, "attached local server"
    if not isinstance(target, (str, os.PathLike)):
        raise ConnectionSetupError(
            "--attach takes a running LocalServer (a variable name) or the data directory "
            f"of a running local server, got {type(target).__name__}"
        )
    if isinstance(target, str) and looks_like_token(target):
        raise ConnectionSetupError(token_refused("The value of --attach"))
    data = Path(target).expanduser()
    start_it = (
        f"Start one in a terminal with: instantdb-local serve --data {data} (or use "
        f"%instant --local --data-dir {data} to start one from the notebook)."
    )
    if not (data / "instance.sqlite3").is_file():
        raise ConnectionSetupError(f"No local Instant data in {data}. {start_it}")
    from instantdb_local.instance import Instance

    # Read next to the running server, so without taking the data dir's lock.
    with Instance.open(data, exclusive=False) as instance:
        app = instance.default_app
        uri = instance.last_api_uri()
    if uri is None:
        raise ConnectionSetupError(
            f"The local server for {data} has never been started. {start_it}"
        )
    if not _local_server_answers(uri):
        raise ConnectionSetupError(
            f"No local server answers at {uri}, where the server for {data} last ran: it "
            f"is not running. {start_it}"
        )
    spec = ClientSpec(app_id=app.id, api_uri=uri, admin_token=app.admin_token)
    return spec, f"attached local server, data in {data}"


# Long enough for a busy loopback server, short enough that a cell does not seem to hang.
_ATTACH_PROBE_SECONDS = 2.0


def _local_server_answers(api_uri: str) -> bool:
    """Whether an Instant local server answers ``GET /health`` at ``api_uri``."""
    import httpx

    try:
        # No proxy from the environment: the server is on this machine.
        response = httpx.get(f"{api_uri}/health", timeout=_ATTACH_PROBE_SECONDS, trust_env=False)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool(
        response.status_code == 200
        and isinstance(body, dict)
        and body.get("server") == "instantdb-local"
    )
