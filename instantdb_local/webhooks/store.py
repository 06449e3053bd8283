"""The webhooks database (``<data>/webhooks.sqlite3``, mode 0600): webhooks, the change
records of transactions that matched one, delivery events, and the signing key.

One connection behind a lock: the manager routes, the commit listener and the
delivery workers all go through here, and every method is one short transaction.
Times are integer nanoseconds since the epoch; rows render them as the real server
does (``2026-05-04T04:38:53Z``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .isn import isn_text
from .signing import SigningKey

__all__ = ["Event", "Webhook", "WebhookStore", "iso_seconds"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    seed BLOB NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    url TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    actions TEXT NOT NULL,
    status TEXT NOT NULL,
    disabled_reason TEXT,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_app ON webhooks (app_id, created_ns);
CREATE TABLE IF NOT EXISTS changes (
    app_id TEXT NOT NULL,
    isn INTEGER NOT NULL,
    records TEXT NOT NULL,
    PRIMARY KEY (app_id, isn)
);
CREATE TABLE IF NOT EXISTS events (
    webhook_id TEXT NOT NULL,
    isn INTEGER NOT NULL,
    app_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts TEXT,
    next_attempt_ns INTEGER,
    claimed_ns INTEGER,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, isn)
);
CREATE INDEX IF NOT EXISTS events_due ON events (status, next_attempt_ns);
CREATE INDEX IF NOT EXISTS events_page ON events (webhook_id, created_ns, isn);
"""


def iso_seconds(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Webhook:
    id: str
    app_id: str
    url: str
    namespaces: tuple[str, ...]
    actions: tuple[str, ...]
    status: str
    disabled_reason: str | None
    created_ns: int
    updated_ns: int

    def to_json(self) -> dict[str, Any]:
        """``WebhookInfo``: the real server's row, snake_case columns."""
        return {
            "id": self.id,
            "sink": {"url": self.url},
            "namespaces": list(self.namespaces),
            "actions": list(self.actions),
            "status": self.status,
            "disabled_reason": self.disabled_reason,
            "created_at": iso_seconds(self.created_ns),
            "updated_at": iso_seconds(self.updated_ns),
        }


@dataclass(frozen=True)
class Event:
    webhook_id: str
    app_id: str
    isn: int
    status: str
    attempts: tuple[dict[str, Any], ...] | None
    next_attempt_ns: int | None
    claimed_ns: int | None
    created_ns: int
    updated_ns: int

    def to_json(self) -> dict[str, Any]:
        """``EventInfo``: attempts null before the first one."""
        return {
            "isn": isn_text(self.isn),
            "status": self.status,
            "attempts": None if self.attempts is None else list(self.attempts),
            "next_attempt_after": (
                None if self.next_attempt_ns is None else iso_seconds(self.next_attempt_ns)
            ),
            "created_at": iso_seconds(self.created_ns),
            "updated_at": iso_seconds(self.updated_ns),
        }


_WEBHOOK_COLUMNS = (
    "id, app_id, url, namespaces, actions, status, disabled_reason, created_ns, updated_ns"
)
_EVENT_COLUMNS = (
    "webhook_id, app_id, isn, status, attempts, next_attempt_ns, claimed_ns, created_ns, updated_ns"
)


def _webhook(row: Sequence[Any]) -> Webhook:
    return Webhook(
        row[0],
        row[1],
        row[2],
        tuple(json.loads(row[3])),
        tuple(json.loads(row[4])),
        row[5],
        row[6],
        row[7],
        row[8],
    )


def _event(row: Sequence[Any]) -> Event:
    attempts = None if row[4] is None else tuple(json.loads(row[4]))
    return Event(row[0], row[1], row[2], row[3], attempts, row[5], row[6], row[7], row[8])


class WebhookStore:
    """All persistent webhook state of one data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Created 0600 before SQLite opens it, so the signing key is never readable by
        # others; SQLite gives its WAL and journal files the same mode.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        path.chmod(0o600)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL survives a crash of the process (what a restart must resume
            # from); only a power cut may lose the last few events.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, args)

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- the signing key ----------------------------------------------------------------

    def signing_key(self, now_ns: int) -> SigningKey:
        with self._lock:
            row = self._conn.execute(
                "SELECT kid, seed FROM signing_keys ORDER BY created_ns DESC LIMIT 1"
            ).fetchone()
            if row is not None:
                return SigningKey(row[0], bytes(row[1]))
            key = SigningKey.generate()
            self._conn.execute(
                "INSERT INTO signing_keys (kid, seed, created_ns) VALUES (?, ?, ?)",
                (key.kid, key.seed, now_ns),
            )
            return key

    # -- webhooks -----------------------------------------------------------------------

    def insert_webhook(self, webhook: Webhook) -> None:
        self._write(
            f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                webhook.id,
                webhook.app_id,
                webhook.url,
                json.dumps(list(webhook.namespaces)),
                json.dumps(list(webhook.actions)),
                webhook.status,
                webhook.disabled_reason,
                webhook.created_ns,
                webhook.updated_ns,
            ),
        )

    def save_webhook(self, webhook: Webhook) -> None:
        self._write(
            "UPDATE webhooks SET url = ?, namespaces = ?, actions = ?, status = ?, "
            "disabled_reason = ?, updated_ns = ? WHERE id = ?",
            (
                webhook.url,
                json.dumps(list(webhook.namespaces)),
                json.dumps(list(webhook.actions)),
                webhook.status,
                webhook.disabled_reason,
                webhook.updated_ns,
                webhook.id,
            ),
        )

    def webhook(self, app_id: str, webhook_id: str) -> Webhook | None:
        rows = self._rows(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ? AND app_id = ?",
            (webhook_id, app_id),
        )
        return _webhook(rows[0]) if rows else None

    def webhooks(self, app_id: str, *, active_only: bool = False) -> list[Webhook]:
        """The app's webhooks, newest first."""
        where = " AND status = 'active'" if active_only else ""
        rows = self._rows(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE app_id = ?{where} "
            "ORDER BY created_ns DESC, rowid DESC",
            (app_id,),
        )
        return [_webhook(row) for row in rows]

    def active_webhooks(self) -> list[Webhook]:
        """Every active webhook of every app."""
        rows = self._rows(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE status = 'active'")
        return [_webhook(row) for row in rows]

    def delete_webhook(self, webhook_id: str) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM events WHERE webhook_id = ?", (webhook_id,))
                self._conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- transactions and events ----------------------------------------------------------

    def record_transaction(
        self,
        app_id: str,
        isn: int,
        changes_json: str,
        webhook_ids: Sequence[str],
        now_ns: int,
    ) -> None:
        """Keep a transaction's change record (a JSON list, as `records.encode` makes
        it) and make a pending event per webhook."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO changes (app_id, isn, records) VALUES (?, ?, ?)",
                    (app_id, isn, changes_json),
                )
                self._conn.executemany(
                    f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}) "
                    "VALUES (?, ?, ?, 'pending', NULL, NULL, NULL, ?, ?)",
                    [(webhook_id, app_id, isn, now_ns, now_ns) for webhook_id in webhook_ids],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def has_changes(self, app_id: str, isn: int) -> bool:
        """Whether the transaction was recorded (its change record is kept)."""
        rows = self._rows("SELECT 1 FROM changes WHERE app_id = ? AND isn = ?", (app_id, isn))
        return bool(rows)

    def changes(self, app_id: str, isn: int) -> list[dict[str, Any]] | None:
        rows = self._rows("SELECT records FROM changes WHERE app_id = ? AND isn = ?", (app_id, isn))
        return json.loads(rows[0][0]) if rows else None

    def event(self, webhook_id: str, isn: int) -> Event | None:
        rows = self._rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE webhook_id = ? AND isn = ?",
            (webhook_id, isn),
        )
        return _event(rows[0]) if rows else None

    def events_page(
        self, webhook_id: str, before: tuple[int, int] | None, limit: int
    ) -> list[Event]:
        """Events newest first by (created, isn), strictly after the cursor ``before``."""
        if before is None:
            rows = self._rows(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE webhook_id = ? "
                "ORDER BY created_ns DESC, isn DESC LIMIT ?",
                (webhook_id, limit),
            )
        else:
            created_ns, isn = before
            rows = self._rows(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE webhook_id = ? "
                "AND (created_ns < ? OR (created_ns = ? AND isn < ?)) "
                "ORDER BY created_ns DESC, isn DESC LIMIT ?",
                (webhook_id, created_ns, created_ns, isn, limit),
            )
        return [_event(row) for row in rows]

    def claim_due(self, now_ns: int, limit: int) -> list[Event]:
        """Mark up to ``limit`` due events ``processing`` and return them, oldest first."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE status = 'pending' "
                    "OR (status = 'error' AND next_attempt_ns <= ?) "
                    "ORDER BY COALESCE(next_attempt_ns, created_ns), isn LIMIT ?",
                    (now_ns, limit),
                ).fetchall()
                self._conn.executemany(
                    "UPDATE events SET status = 'processing', claimed_ns = ?, updated_ns = ? "
                    "WHERE webhook_id = ? AND isn = ?",
                    [(now_ns, now_ns, row[0], row[2]) for row in rows],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return [_event(row) for row in rows]

    def next_due_ns(self) -> int | None:
        rows = self._rows("SELECT MIN(next_attempt_ns) FROM events WHERE status = 'error'")
        return rows[0][0] if rows and rows[0][0] is not None else None

    def finish_attempt(
        self,
        event: Event,
        attempt: Mapping[str, Any],
        status: str,
        next_attempt_ns: int | None,
        now_ns: int,
    ) -> None:
        attempts = [*(event.attempts or ()), dict(attempt)]
        self._write(
            "UPDATE events SET status = ?, attempts = ?, next_attempt_ns = ?, claimed_ns = NULL, "
            "updated_ns = ? WHERE webhook_id = ? AND isn = ?",
            (status, json.dumps(attempts), next_attempt_ns, now_ns, event.webhook_id, event.isn),
        )

    def resend(self, webhook_id: str, isn: int, now_ns: int) -> bool:
        """Back to ``pending`` (attempts kept); False while a worker holds the event."""
        cursor = self._write(
            "UPDATE events SET status = 'pending', next_attempt_ns = NULL, updated_ns = ? "
            "WHERE webhook_id = ? AND isn = ? AND status != 'processing'",
            (now_ns, webhook_id, isn),
        )
        return cursor.rowcount == 1

    def release_stuck(self, claimed_before_ns: int, now_ns: int) -> int:
        """Return events a worker claimed before the given time (and never finished) to
        ``pending``."""
        cursor = self._write(
            "UPDATE events SET status = 'pending', claimed_ns = NULL, updated_ns = ? "
            "WHERE status = 'processing' AND claimed_ns < ?",
            (now_ns, claimed_before_ns),
        )
        return cursor.rowcount
