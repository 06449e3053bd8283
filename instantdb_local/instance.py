"""The data directory: the apps it holds, their credentials, engines and project files.

Layout (``.instant-local`` by default)::

    instance.sqlite3              apps and their admin tokens, the last address served (0600)
    instance.lock                 locked by the server that has the directory open (its pid)
    apps/<app-id>/app.sqlite3     the default app's data
    ephemeral/<app-id>/...        apps made by POST /dash/apps/ephemeral; removed on expiry

Admin tokens are stored in plain text so ``instantdb-local env`` can print them again:
they only guard a server on loopback, and the file's 0600 mode is their protection.

An `Instance` is shared by every request thread, so its registry sits behind a lock; the
engines are thread-safe by their own contract.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import blobs, errors, schema_files
from ._disk import ExclusiveLock, LockHeldError, private_dir
from .engine import AppEngine

logger = logging.getLogger("instantdb_local")
# A project file's contents: a schema or a rules document.
_Doc = TypeVar("_Doc")

DEFAULT_DATA_DIR = Path(".instant-local")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888
# The real server deletes ephemeral apps two weeks after they were made.
DEFAULT_EPHEMERAL_TTL = timedelta(days=14)

_REGISTRY_FILE = "instance.sqlite3"
# Held (flock) by the server that has the directory open, with its pid inside.
_LOCK_FILE = "instance.lock"
_ENGINE_FILE = "app.sqlite3"
# Project files are polled on requests, and at most this often, so editing
# instant.perms.ts takes effect on the next request without a file watcher thread.
_PROJECT_POLL_SECONDS = 1.0
# Expired ephemeral apps are swept at start and then at most this often.
_SWEEP_SECONDS = 60.0
# What the default app runs with while its permissions file has never loaded: every
# read and write that is not the admin's is refused (no rules would allow them all).
LOCKED_RULES: dict[str, Any] = {"$default": {"allow": {"$default": "false"}}}
_PROJECT_FILE_NAMES = (
    "instant.schema.ts",
    "instant.schema.json",
    "instant.perms.ts",
    "instant.perms.json",
)


class EngineFactory(Protocol):
    """Makes one app's engine; `AppEngine` itself is the default."""

    def __call__(self, path: Path, *, app_id: str) -> AppEngine: ...


@dataclass(frozen=True)
class AppRecord:
    """One app of this instance. ``repr`` leaves the admin token out."""

    id: str
    title: str
    admin_token: str = field(repr=False)
    created_at_ms: int
    expires_at_ms: int | None = None

    @property
    def is_ephemeral(self) -> bool:
        return self.expires_at_ms is not None

    def created_at_iso(self) -> str:
        # The real server renders the dates it makes as whole-second UTC strings.
        moment = datetime.fromtimestamp(self.created_at_ms / 1000, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AppCredentials:
    """How to reach one app. ``repr`` leaves the admin token out."""

    app_id: str
    admin_token: str = field(repr=False)
    api_uri: str

    @property
    def env(self) -> dict[str, str]:
        """The three environment variables the SDK and the examples read."""
        return {
            "INSTANT_APP_ID": self.app_id,
            "INSTANT_APP_ADMIN_TOKEN": self.admin_token,
            "INSTANT_API_URI": self.api_uri,
        }


@dataclass(frozen=True)
class _ProjectState:
    signature: tuple[tuple[str, int, int], ...]
    checked_at: float


class Instance:
    """The apps of one data directory. Open with `Instance.open`, close when done."""

    def __init__(
        self,
        data_dir: Path,
        registry: sqlite3.Connection,
        *,
        project_dir: Path | None,
        ephemeral_ttl: timedelta,
        engine_factory: EngineFactory,
        clock: Callable[[], float],
        lock: ExclusiveLock | None = None,
    ) -> None:
        # Use Instance.open(); this constructor only wires parts together.
        self._data_lock = lock
        self.data_dir = data_dir
        self.project_dir = project_dir
        self.ephemeral_ttl = ephemeral_ttl
        self._registry = registry
        self._engine_factory = engine_factory
        self._clock = clock
        self._lock = threading.RLock()
        self._project_lock = threading.Lock()
        self._engines: dict[str, AppEngine] = {}
        self._apps: dict[str, AppRecord] = {}
        self._project: _ProjectState | None = None
        # Where the default app's rules come from: no permissions file ("none"), a file
        # that loaded ("file"), or a file that never did, locking the app ("locked").
        self._rules_source = "none"
        self._last_sweep = float("-inf")
        self._closed = False
        # Features that follow every engine (webhooks watch commits) hook in here.
        self._engine_hooks: list[Callable[[AppEngine], None]] = []
        self._close_hooks: list[Callable[[], None]] = []
        self._served_uri: str | None = None

    # -- opening and closing ----------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        *,
        project_dir: Path | str | None = None,
        ephemeral_ttl: timedelta = DEFAULT_EPHEMERAL_TTL,
        engine_factory: EngineFactory | None = None,
        clock: Callable[[], float] = time.time,
        exclusive: bool = True,
    ) -> Instance:
        """Open (creating if needed) a data directory and its default app.

        A server opens it ``exclusive``: it takes the data dir's lock, and a second
        server on the same directory (another process, or another instance in this one)
        fails at once with `errors.DataDirInUseError`, since each would keep its own live
        state and sweeps. ``exclusive=False`` only reads credentials next to a running
        server (``instantdb-local env``): it takes no lock and sweeps nothing.
        """
        if ephemeral_ttl <= timedelta(0):
            raise ValueError(f"ephemeral_ttl must be positive, got {ephemeral_ttl}")
        data = Path(data_dir).expanduser().resolve()
        project = Path(project_dir).expanduser().resolve() if project_dir is not None else None
        if project is not None and not project.is_dir():
            raise FileNotFoundError(f"Project directory {project} is not a directory.")
        private_dir(data, parents=True)
        lock = None
        if exclusive:
            lock = ExclusiveLock(data / _LOCK_FILE)
            try:
                lock.acquire()
            except LockHeldError as held:
                raise errors.DataDirInUseError(data, held.pid) from None
        try:
            registry = _open_registry(data / _REGISTRY_FILE)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        instance = cls(
            data,
            registry,
            project_dir=project,
            ephemeral_ttl=ephemeral_ttl,
            engine_factory=engine_factory or AppEngine,
            clock=clock,
            lock=lock,
        )
        try:
            instance._load_apps()
            if exclusive:
                instance.sweep_expired()
            instance._refresh_project(force=True, at_start=True)
        except BaseException:
            instance.close()
            raise
        return instance

    def close(self) -> None:
        """Close every engine and the registry. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            close_hooks = list(self._close_hooks)
        for hook in reversed(close_hooks):
            try:
                hook()
            except Exception:
                logger.exception("A close hook of the instance failed")
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            try:
                engine.close()
            except Exception:
                logger.exception("Closing the engine of app %s failed", engine.app_id)
        self._registry.close()
        # Last: another server may open the directory from here on.
        if self._data_lock is not None:
            self._data_lock.release()

    def on_engine_open(self, hook: Callable[[AppEngine], None]) -> None:
        """Call ``hook(engine)`` for every engine open now and every one opened later."""
        with self._lock:
            self._engine_hooks.append(hook)
            engines = list(self._engines.values())
        for engine in engines:
            hook(engine)

    def on_close(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` when the instance closes, before its engines close."""
        with self._lock:
            self._close_hooks.append(hook)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Instance(data_dir={str(self.data_dir)!r}, apps={len(self._apps)})"

    # -- apps and credentials -----------------------------------------------------------

    @property
    def default_app(self) -> AppRecord:
        with self._lock:
            for record in self._apps.values():
                if not record.is_ephemeral:
                    return record
        raise RuntimeError("The data directory has no default app")  # _load_apps makes one

    def find_app(self, app_id: str) -> AppRecord | None:
        """The app with this id, or None if there is none or it has expired."""
        self._sweep_if_due()
        with self._lock:
            record = self._apps.get(app_id)
        if record is not None and self._is_expired(record):
            self._remove_app(record)
            return None
        return record

    def require_app(self, app_id: str) -> AppRecord:
        record = self.find_app(app_id)
        if record is None:
            raise errors.record_not_found("app", args=[{"id": app_id}])
        return record

    def check_admin_token(self, app_id: str, token: str) -> AppRecord:
        """The app, if ``token`` is its admin token; else the real server's 400."""
        record = self.find_app(app_id)
        # Compare in constant time; the answer for an unknown app and a wrong token is
        # the same, as on the real server.
        if record is None or not _same_secret(record.admin_token, token):
            raise errors.invalid_admin_token()
        return record

    def engine(self, app_id: str) -> AppEngine:
        """The app's engine, opened on first use. Raises record-not-found for no such app."""
        record = self.require_app(app_id)
        if not record.is_ephemeral:
            self.refresh_project()
        return self._engine_for(record)

    def create_ephemeral_app(
        self,
        title: str,
        *,
        schema: Mapping[str, Any] | None = None,
        rules: Mapping[str, Any] | None = None,
    ) -> AppRecord:
        """A fresh isolated app that is removed after `ephemeral_ttl`.

        ``schema`` is in the vectors' shape (see `schema_files.normalize_schema`). If the
        schema or rules are rejected, the app is removed again and the error raised.
        """
        now_ms = self._now_ms()
        record = AppRecord(
            id=str(uuid.uuid4()),
            title=title,
            admin_token=str(uuid.uuid4()),
            created_at_ms=now_ms,
            expires_at_ms=now_ms + int(self.ephemeral_ttl.total_seconds() * 1000),
        )
        self._insert_app(record)
        try:
            engine = self._engine_for(record)
            if schema is not None:
                engine.apply_schema(schema)
            if rules is not None:
                engine.set_rules(rules)
        except BaseException:
            self._remove_app(record)
            raise
        return record

    def sweep_expired(self) -> int:
        """Remove every expired ephemeral app; return how many were removed."""
        self._last_sweep = self._clock()
        with self._lock:
            expired = [r for r in self._apps.values() if self._is_expired(r)]
        for record in expired:
            self._remove_app(record)
        return len(expired)

    # -- the address the server was last started on -------------------------------------

    def record_address(self, host: str, port: int) -> None:
        self._served_uri = api_uri(host, port)
        with self._lock:
            self._registry.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('api_uri', ?)",
                (api_uri(host, port),),
            )
            self._registry.commit()

    def last_api_uri(self) -> str | None:
        with self._lock:
            row = self._registry.execute(
                "SELECT value FROM settings WHERE key = 'api_uri'"
            ).fetchone()
        return str(row[0]) if row else None

    def served_uri(self) -> str:
        """The origin ``$files`` urls point at: where this data dir is (or was last) served."""
        if self._served_uri is None:
            self._served_uri = self.last_api_uri() or api_uri(DEFAULT_HOST, DEFAULT_PORT)
        return self._served_uri

    # -- project files ------------------------------------------------------------------

    def refresh_project(self, *, force: bool = False) -> bool:
        """Apply the project's schema and rules to the default app if its files changed.

        Polls file modification times at most once a second. Returns True when new files
        were applied. A file that cannot be applied is logged with its location: a schema
        keeps the previous one in force, and so does a permissions file whose earlier
        version loaded; one that never loaded locks the app (`LOCKED_RULES`), since no
        rules at all would let everyone read and write everything.
        """
        return self._refresh_project(force=force, at_start=False)

    def _refresh_project(self, *, force: bool, at_start: bool) -> bool:
        if self.project_dir is None:
            return False
        now = self._clock()
        state = self._project
        if not force and state is not None and now - state.checked_at < _PROJECT_POLL_SECONDS:
            return False
        # One thread reloads; the others carry on with the rules in force.
        if not self._project_lock.acquire(blocking=force):
            return False
        try:
            signature = _project_signature(self.project_dir)
            unchanged = state is not None and state.signature == signature
            self._project = _ProjectState(signature, now)
            if unchanged:
                return False
            return self._apply_project(self.project_dir, at_start=at_start)
        finally:
            self._project_lock.release()

    def _apply_project(self, project_dir: Path, *, at_start: bool) -> bool:
        # The two files are read and applied independently, so a typo in one never
        # holds back the other on a reload.
        # At start a failure is raised, not logged: it is reported once, by the caller.
        schema_problem = self._apply_schema_file(project_dir, log=not at_start)
        perms_problem = self._apply_perms_file(project_dir, log=not at_start)
        problems = [problem for problem in (schema_problem, perms_problem) if problem]
        if problems and at_start:
            # Starting without the rules the project asks for would serve the data open
            # to everyone; refusing to start is the only safe answer.
            raise errors.ProjectFileError("Cannot apply the project files: " + "; ".join(problems))
        return not problems and bool(self._project and self._project.signature)

    def _apply_schema_file(self, project_dir: Path, *, log: bool) -> str | None:
        """Apply the schema file if there is one; what went wrong, or None."""
        engine = self._engine_for(self.default_app)
        _, problem = _apply_project_file(
            project_dir, schema_files.load_schema_file, engine.apply_schema
        )
        if problem and log:
            logger.error("Schema not applied; the previous schema stays in force: %s", problem)
        return problem

    def _apply_perms_file(self, project_dir: Path, *, log: bool) -> str | None:
        """Apply the permissions file, or what its absence or failure calls for; what
        went wrong, or None."""
        engine = self._engine_for(self.default_app)
        found, problem = _apply_project_file(
            project_dir, schema_files.load_perms_file, engine.set_rules
        )
        if not found:
            # Rules only ever come from this file, so deleting it removes them
            # (attributes stay, as with the real server's push).
            if self._rules_source != "none":
                engine.set_rules(None)
                self._rules_source = "none"
                logger.info("Permissions file removed; the default app has no rules now")
            return None
        if problem is None:
            self._rules_source = "file"
            return None
        if self._rules_source == "file":
            if log:
                logger.error(
                    "Permissions not applied; the rules last loaded stay in force: %s", problem
                )
        else:
            engine.set_rules(LOCKED_RULES)
            self._rules_source = "locked"
            if log:
                logger.error(
                    "Permissions not applied, and no earlier version of the file loaded: the "
                    "default app refuses every request not made with the admin token until "
                    "the file loads. %s",
                    problem,
                )
        return problem

    # -- internals ----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _is_expired(self, record: AppRecord) -> bool:
        return record.expires_at_ms is not None and record.expires_at_ms <= self._now_ms()

    def _sweep_if_due(self) -> None:
        if self._clock() - self._last_sweep >= _SWEEP_SECONDS:
            self.sweep_expired()

    def _app_dir(self, record: AppRecord) -> Path:
        parent = "ephemeral" if record.is_ephemeral else "apps"
        return self.data_dir / parent / record.id

    def _engine_for(self, record: AppRecord) -> AppEngine:
        with self._lock:
            if self._closed:
                raise RuntimeError("The instance is closed")
            engine = self._engines.get(record.id)
            if engine is None:
                app_dir = self._app_dir(record)
                private_dir(app_dir.parent, parents=True)
                private_dir(app_dir, parents=True)
                engine = self._engine_factory(app_dir / _ENGINE_FILE, app_id=record.id)
                engine.use_file_url(self._file_url_builder(record.id))
                self._engines[record.id] = engine
                for hook in self._engine_hooks:
                    hook(engine)
            return engine

    def _file_url_builder(self, app_id: str) -> Callable[[str, dict[str, Any]], str]:
        def file_url(location_id: str, record: dict[str, Any]) -> str:
            return self.served_uri() + blobs.download_path(app_id, location_id)

        return file_url

    def _load_apps(self) -> None:
        rows = self._registry.execute(
            "SELECT id, title, admin_token, created_at_ms, expires_at_ms FROM apps"
        ).fetchall()
        with self._lock:
            for row in rows:
                record = AppRecord(*row)
                self._apps[record.id] = record
        if not any(not r.is_ephemeral for r in self._apps.values()):
            self._insert_app(
                AppRecord(
                    id=str(uuid.uuid4()),
                    title="local",
                    admin_token=str(uuid.uuid4()),
                    created_at_ms=self._now_ms(),
                )
            )

    def _insert_app(self, record: AppRecord) -> None:
        with self._lock:
            self._registry.execute(
                "INSERT INTO apps (id, title, admin_token, created_at_ms, expires_at_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.title,
                    record.admin_token,
                    record.created_at_ms,
                    record.expires_at_ms,
                ),
            )
            self._registry.commit()
            self._apps[record.id] = record

    def _remove_app(self, record: AppRecord) -> None:
        with self._lock:
            if self._apps.pop(record.id, None) is None:
                return
            engine = self._engines.pop(record.id, None)
            self._registry.execute("DELETE FROM apps WHERE id = ?", (record.id,))
            self._registry.commit()
        if engine is not None:
            try:
                engine.close()
            except Exception:
                logger.exception("Closing the engine of app %s failed", record.id)
        shutil.rmtree(self._app_dir(record), ignore_errors=True)
        logger.info("Removed app %s", record.id)


def api_uri(host: str, port: int) -> str:
    """The URI a client on this machine uses to reach a server bound to ``host:port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str:
    """What a server listening on a non-loopback ``host`` tells its operator."""
    return (
        f"WARNING: listening on {host}, reachable from other machines. The admin token is "
        "sent in clear over plain HTTP; bind 127.0.0.1 unless you mean it."
    )


def _apply_project_file(
    project_dir: Path,
    load: Callable[[Path], tuple[Path, _Doc] | None],
    apply: Callable[[_Doc], object],
) -> tuple[bool, str | None]:
    """Read one project file and apply what it holds: whether the file exists, and what
    went wrong (unreadable, or refused by the engine), or None."""
    try:
        loaded = load(project_dir)
    except schema_files.SchemaFileError as exc:
        return True, str(exc)
    if loaded is None:
        return False, None
    path, document = loaded
    try:
        apply(document)
    except errors.ServerError as exc:
        return True, f"{path}: {_rejection(exc)}"
    logger.info("Applied %s", path.name)
    return True, None


def _rejection(error: errors.ServerError) -> str:
    """The engine's reason for refusing a project file, with the problems it lists."""
    listed = [
        str(problem.get("message"))
        for problem in (error.hint or {}).get("errors") or []
        if isinstance(problem, Mapping) and problem.get("message")
    ]
    details = "; ".join(text for text in listed if text not in error.message)
    return f"{error.message} ({details})" if details else error.message


def _same_secret(expected: str, given: str) -> bool:
    import hmac

    return hmac.compare_digest(expected.encode(), given.encode())


def _open_registry(path: Path) -> sqlite3.Connection:
    # Create the file 0600 before SQLite opens it, so there is no moment it is readable
    # by others; SQLite gives its journal the same mode.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    path.chmod(0o600)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.executescript(
            """
            CREATE TABLE IF NOT EXISTS apps (
                id TEXT PRIMARY KEY,
                title TEXT NOT NULL,
                admin_token TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL,
                expires_at_ms INTEGER
            );
            CREATE TABLE IF NOT EXISTS settings (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            );
            """
        )
        connection.commit()
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise RuntimeError(
            f"{path} is not a usable instance database ({exc}). Move it away or pick "
            "another --data directory."
        ) from exc
    return connection


def _project_signature(project_dir: Path) -> tuple[tuple[str, int, int], ...]:
    signature = []
    for name in _PROJECT_FILE_NAMES:
        try:
            stat = (project_dir / name).stat()
        except FileNotFoundError:
            continue
        signature.append((name, stat.st_mtime_ns, stat.st_size))
    return tuple(signature)
