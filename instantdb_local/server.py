"""`LocalServer`: a local Instant-compatible server in a background thread.

::

    with LocalServer() as server:          # a temporary data dir, a free port
        db = server.client()               # an instantdb.Instant for the default app
        app = server.create_app(title="t", schema=..., rules=...)

uvicorn serves a socket bound before the thread starts, so the port is known (and
reserved) up front with no race; `start` returns once the server accepts requests and
`stop` is bounded.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from instantdb_local import schema_files
from instantdb_local.app import DEFAULT_MAX_BODY_BYTES, create_app
from instantdb_local.instance import (
    DEFAULT_EPHEMERAL_TTL,
    AppCredentials,
    EngineFactory,
    Instance,
    api_uri,
    exposure_warning,
    is_loopback,
)
from instantdb_local.live import close_connections

if TYPE_CHECKING:
    import uvicorn

    from instantdb import AsyncInstant, Instant

__all__ = ["AppCredentials", "LocalServer", "bind_socket", "uvicorn_server"]

logger = logging.getLogger("instantdb_local")

_START_TIMEOUT_SECONDS = 15.0
_STOP_TIMEOUT_SECONDS = 5.0
# Open requests and streams get this long to finish when the server stops.
_GRACEFUL_SHUTDOWN_SECONDS = 2


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0`` picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this. Without it a response's headers and body,
        # written separately, wait on the client's delayed ACK: ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        # Listening now means clients that connect before uvicorn's loop runs wait in
        # the backlog instead of being refused.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"Cannot listen on {host}:{port} ({exc.strerror}). "
            "Pick another port with --port, or --port 0 for any free one.",
        ) from exc
    return sock


def uvicorn_server(app: Any, *, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging configuration to the caller."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


class LocalServer:
    """A local Instant-compatible server, running in a background thread.

    ``data_dir=None`` uses a temporary directory removed on `stop`; a directory you
    name keeps its apps and credentials across runs. ``project_dir`` is a directory
    whose ``instant.schema.ts`` / ``instant.perms.ts`` apply to the default app.
    ``engine_factory`` replaces the storage engine (for tests of the HTTP layer).
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        project_dir: Path | str | None = None,
        *,
        ephemeral_ttl: timedelta = DEFAULT_EPHEMERAL_TTL,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._requested_port = port
        self._host = host
        self._project_dir = project_dir
        self._ephemeral_ttl = ephemeral_ttl
        self._max_body_bytes = max_body_bytes
        self._engine_factory = engine_factory
        self._lock = threading.Lock()
        self._instance: Instance | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._temp_dir: Path | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalServer:
        """Start serving; returns once requests are answered. Starting twice is a no-op."""
        with self._lock:
            if self._thread is not None:
                return self
            try:
                self._start()
            except BaseException:
                self._shutdown()
                raise
        return self

    def _start(self) -> None:
        if self._data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="instantdb-local-"))
        data_dir = self._data_dir or self._temp_dir
        assert data_dir is not None
        self._instance = Instance.open(
            data_dir,
            project_dir=self._project_dir,
            ephemeral_ttl=self._ephemeral_ttl,
            engine_factory=self._engine_factory,
        )
        self._socket = bind_socket(self._host, self._requested_port)
        self._port = int(self._socket.getsockname()[1])
        if not is_loopback(self._host):
            logger.warning("%s", exposure_warning(self._host))
        self._instance.record_address(self._host, self._port)
        app = create_app(self._instance, max_body_bytes=self._max_body_bytes)
        server = uvicorn_server(app)
        self._server = server
        self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [self._socket]},
            name=f"instantdb-local:{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(
                    "The local Instant server stopped while starting; see the log above."
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"The local Instant server did not start within {_START_TIMEOUT_SECONDS}s."
                )
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving and release the port and engines. Safe to call twice."""
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            # Open event streams would otherwise hold uvicorn's graceful shutdown for
            # its whole timeout; ending them first lets clients see the drop at once.
            app = server.config.app
            if isinstance(app, Starlette):
                close_connections(app, final=True)
            server.should_exit = True
            thread.join(_STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                # Graceful shutdown is bounded by uvicorn too; this is the backstop.
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.error("The local Instant server thread did not stop in time.")
        if self._socket is not None:
            self._socket.close()
        if self._instance is not None:
            self._instance.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._server = self._thread = self._socket = None
        self._instance = None
        self._temp_dir = None
        self._port = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"api_uri={self.api_uri!r}" if self.running else "stopped"
        return f"LocalServer({state})"

    # -- what clients need ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def instance(self) -> Instance:
        if self._instance is None:
            raise RuntimeError(
                "The LocalServer is not running: use `with LocalServer() as server:` "
                "or call server.start() first."
            )
        return self._instance

    @property
    def port(self) -> int:
        self.instance  # noqa: B018  (raises the not-running error)
        assert self._port is not None
        return self._port

    @property
    def api_uri(self) -> str:
        return api_uri(self._host, self.port)

    @property
    def credentials(self) -> AppCredentials:
        app = self.instance.default_app
        return AppCredentials(app.id, app.admin_token, self.api_uri)

    @property
    def app_id(self) -> str:
        return self.credentials.app_id

    @property
    def admin_token(self) -> str:
        return self.credentials.admin_token

    @property
    def env(self) -> dict[str, str]:
        """``INSTANT_APP_ID``, ``INSTANT_APP_ADMIN_TOKEN`` and ``INSTANT_API_URI``."""
        return self.credentials.env

    def create_app(
        self,
        title: str = "test",
        *,
        schema: Mapping[str, Any] | None = None,
        rules: Mapping[str, Any] | None = None,
    ) -> AppCredentials:
        """A fresh, isolated app (an ephemeral app) with its own credentials.

        ``schema`` is in the server vectors' shape or the JSON of the JS ``i.schema()``;
        ``rules`` is a permission rules document.
        """
        if not title.strip():
            raise ValueError("title must not be blank")
        normalized = schema_files.normalize_schema(schema) if schema is not None else None
        record = self.instance.create_ephemeral_app(title, schema=normalized, rules=rules)
        return AppCredentials(record.id, record.admin_token, self.api_uri)

    def client(self, **kwargs: Any) -> Instant:
        """An `instantdb.Instant` for the default app; ``kwargs`` override its arguments."""
        from instantdb import Instant

        return Instant(**{**self._client_arguments(), **kwargs})

    def async_client(self, **kwargs: Any) -> AsyncInstant:
        """An `instantdb.AsyncInstant` for the default app."""
        from instantdb import AsyncInstant

        return AsyncInstant(**{**self._client_arguments(), **kwargs})

    def _client_arguments(self) -> dict[str, Any]:
        creds = self.credentials
        return {"app_id": creds.app_id, "admin_token": creds.admin_token, "api_uri": creds.api_uri}
