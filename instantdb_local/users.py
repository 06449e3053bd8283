"""`$users` records in the auth routes' "db format", refresh tokens and magic codes as
rows of the store.

Refresh tokens are random UUIDs handed to the client once; only their sha-256 hex is
stored (``$userRefreshTokens.hashedToken``), linked to the user with cascade delete.
Magic codes are stored the same way (``$magicCodes.codeHash``) next to their email.
The flows that write these live in `instantdb_local.auth`.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from datetime import datetime, timezone
from typing import Any

from . import entities
from .attrs import Attr, Catalog
from .errors import param_malformed, validation_failed
from .ids import is_uuid

# Deliberately permissive: one "@", something on each side, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalize_email(email: Any, *, path: list[str]) -> str:
    """Lowercased and trimmed, or 400 ``param-malformed``."""
    if not isinstance(email, str):
        raise param_malformed(path, email)
    cleaned = email.strip().lower()
    if not _EMAIL.match(cleaned):
        raise param_malformed(path, email)
    return cleaned


def require_uuid(value: Any, *, path: list[str]) -> str:
    if not is_uuid(value):
        raise param_malformed(path, value)
    return str(value).lower()


def created_ms(conn: sqlite3.Connection, etype: str, eid: str) -> int | None:
    """When the entity was created (its creating transaction's time), epoch ms."""
    row = conn.execute(
        "SELECT t.created_ms FROM entities e JOIN txs t ON t.id = e.created_tx "
        "WHERE e.etype = ? AND e.id = ?",
        (etype, eid),
    ).fetchone()
    return None if row is None else int(row[0])


def created_at(conn: sqlite3.Connection, etype: str, eid: str) -> str | None:
    ms = created_ms(conn, etype, eid)
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def db_format(
    conn: sqlite3.Connection, catalog: Catalog, app_id: str, user_id: str
) -> dict[str, Any] | None:
    """The user as auth routes and CEL's ``auth`` see it, or None if it doesn't exist."""
    record = entities.fetch_record(conn, catalog, "$users", user_id)
    if record is None:
        return None
    user = dict(record)
    user["app_id"] = app_id
    user["created_at"] = created_at(conn, "$users", user_id)
    user["isGuest"] = record.get("type") == "guest"
    return user


def find_user_id(
    conn: sqlite3.Connection,
    catalog: Catalog,
    *,
    id: str | None = None,
    email: str | None = None,
    refresh_token: str | None = None,
) -> str | None:
    if id is not None:
        eid = str(id).lower()
        return eid if is_uuid(eid) and entities.exists(conn, "$users", eid) else None
    if email is not None:
        attr = catalog.forward("$users", "email")
        assert attr is not None
        return entities.lookup(conn, attr, email.strip().lower())
    if refresh_token is not None:
        owner = _attr(catalog, "$userRefreshTokens", "$user")
        token_id = refresh_token_id(conn, catalog, refresh_token)
        if token_id is None:
            return None
        found, user_id = entities.get_value(conn, owner, token_id)
        if not found or not isinstance(user_id, str):
            return None
        return user_id if entities.exists(conn, "$users", user_id) else None
    return None


def missing_identity() -> Exception:
    return validation_failed("body", {}, [{"message": "Please provide an `email` or `id`"}])


def refresh_token_id(conn: sqlite3.Connection, catalog: Catalog, token: str) -> str | None:
    """The `$userRefreshTokens` row of a token, or None."""
    hashed = _attr(catalog, "$userRefreshTokens", "hashedToken")
    return entities.lookup(conn, hashed, hash_token(token))


def refresh_token_ids_of(conn: sqlite3.Connection, catalog: Catalog, user_id: str) -> list[str]:
    """Every `$userRefreshTokens` row of a user (whether or not the user still exists)."""
    owner = _attr(catalog, "$userRefreshTokens", "$user")
    rows = conn.execute(
        "SELECT entity FROM triples WHERE attr = ? AND vkey = ?", (owner.id, user_id.lower())
    )
    return [str(row[0]) for row in rows]


def magic_code_ids(
    conn: sqlite3.Connection, catalog: Catalog, email: str, code_hash: str
) -> list[str]:
    """`$magicCodes` rows for this email and code hash, newest first."""
    hashed = _attr(catalog, "$magicCodes", "codeHash")
    owner = _attr(catalog, "$magicCodes", "email")
    rows = conn.execute(
        "SELECT c.entity FROM triples c "
        "JOIN triples e ON e.entity = c.entity AND e.attr = ? AND e.vkey = ? "
        "JOIN entities n ON n.etype = '$magicCodes' AND n.id = c.entity "
        "WHERE c.attr = ? AND c.vkey = ? "
        "ORDER BY n.created_tx DESC",
        (owner.id, email, hashed.id, code_hash),
    )
    return [str(row[0]) for row in rows]


def _attr(catalog: Catalog, etype: str, label: str) -> Attr:
    attr = catalog.forward(etype, label)
    if attr is None:  # pragma: no cover - the system catalog always has it
        raise RuntimeError(f"the system attribute {etype}.{label} is missing")
    return attr
