"""SQLite for one app: the file, its tables, connections and the transaction sequence.

One writer at a time (a lock per app) on a dedicated connection; readers borrow pooled
connections and see committed snapshots (WAL). Every connection gets the same pragmas
and the SQL functions the query compiler uses.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from . import attrs as attrs_module
from . import order_gaps
from .values import date_ms_of_json, sql_like

_SCHEMA = """
-- One row per committed transaction: its number (the tx-id clients see, also the
-- serverCreatedAt order of the entities it created) and its wall-clock time.
CREATE TABLE IF NOT EXISTS txs (
    id         INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS attrs (
    id                TEXT PRIMARY KEY,
    etype             TEXT NOT NULL,
    label             TEXT NOT NULL,
    value_type        TEXT NOT NULL,
    cardinality       TEXT NOT NULL,
    is_unique         INTEGER NOT NULL,
    is_indexed        INTEGER NOT NULL,
    is_required       INTEGER NOT NULL,
    checked_type      TEXT,
    rev_etype         TEXT,
    rev_label         TEXT,
    on_delete         TEXT,
    on_delete_reverse TEXT,
    is_system         INTEGER NOT NULL,
    UNIQUE (etype, label)
);

-- An entity exists in a namespace when it has a row here (Instant's id triple).
-- created_tx orders results by serverCreatedAt.
CREATE TABLE IF NOT EXISTS entities (
    etype      TEXT NOT NULL,
    id         TEXT NOT NULL,
    created_tx INTEGER NOT NULL,
    PRIMARY KEY (etype, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_by_creation ON entities (etype, created_tx, id);

-- Every other triple. Links are stored once, in forward orientation, with the target
-- id as a string key.
CREATE TABLE IF NOT EXISTS triples (
    entity     TEXT NOT NULL,
    attr       TEXT NOT NULL REFERENCES attrs (id) ON DELETE CASCADE,
    vtype      TEXT NOT NULL,
    vkey,
    value      TEXT NOT NULL,
    vdate      REAL,
    created_tx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS triples_by_entity ON triples (entity, attr);
CREATE INDEX IF NOT EXISTS triples_by_value ON triples (attr, vkey, entity);
-- Dates in order, ties by entity: ordered walks over date attributes read it in order.
CREATE INDEX IF NOT EXISTS triples_by_date_order ON triples (attr, vdate, entity)
    WHERE vdate IS NOT NULL;
-- Replaced by triples_by_date_order, which serves every query it did.
DROP INDEX IF EXISTS triples_by_date;

-- The per-entity changes of committed transactions that a listener (webhooks) has not
-- released yet, written in the transaction itself: a crash right after the commit
-- cannot lose them (a transactional outbox).
CREATE TABLE IF NOT EXISTS change_outbox (
    tx      INTEGER PRIMARY KEY,
    records TEXT NOT NULL
);
"""

# Bumped when a migration must run on an existing file: 1 added `order_gaps`.
_SCHEMA_VERSION = 1

_BUSY_TIMEOUT_MS = 10_000
_POOL_SIZE = 8


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Durable commits: a transaction the client saw succeed survives a power cut.
    conn.execute("PRAGMA synchronous = FULL")
    conn.create_function("instant_like", 3, sql_like, deterministic=True)
    conn.create_function("instant_date_ms", 1, date_ms_of_json, deterministic=True)


class Store:
    """The SQLite file of one app."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.RLock()
        self._pool_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._closed = False
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode = WAL")
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            for statement in [*_SCHEMA.split(";"), order_gaps.TABLE_SQL]:
                if statement.strip():
                    self._writer.execute(statement)
            before = attrs_module.load(self._writer)
            attrs_module.seed_system(self._writer)
            after = attrs_module.load(self._writer)
            version = self._writer.execute("PRAGMA user_version").fetchone()[0]
            if version < 1:
                # A file from before the table existed (or a new one): fill it once.
                order_gaps.rebuild_all(self._writer, after)
                self._writer.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            else:
                order_gaps.sync_catalog(self._writer, before, after)
            self._writer.execute("COMMIT")

    @property
    def lock(self) -> threading.RLock:
        """Held by every write; hold it to do something right after a commit."""
        return self._write_lock

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=10
        )
        _configure(conn)
        return conn

    # -- reads -------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection reading one consistent committed snapshot."""
        self._check_open()
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
        broken = False
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error:
            # The connection may be unusable; never hand it out again.
            broken = True
            raise
        finally:
            if broken or not self._return_to_pool(conn):
                conn.close()

    def _return_to_pool(self, conn: sqlite3.Connection) -> bool:
        with self._pool_lock:
            if self._closed or len(self._pool) >= _POOL_SIZE:
                return False
            self._pool.append(conn)
            return True

    # -- writes ------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside one transaction, committed if the block succeeds."""
        self._check_open()
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def write_then_rollback(self) -> Iterator[sqlite3.Connection]:
        """Like `write`, but always rolled back (dry runs)."""
        self._check_open()
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    @staticmethod
    def next_tx(conn: sqlite3.Connection) -> int:
        """The next transaction number: strictly increasing per committed transaction."""
        cursor = conn.execute("INSERT INTO txs (created_ms) VALUES (?)", (int(time.time() * 1000),))
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the app database {self.path} is closed")

    def close(self) -> None:
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._pool:
                conn.close()
            self._pool.clear()
            self._writer.close()
