"""The per-app data engine: the one interface the HTTP layer talks to.

`AppEngine` owns one app's SQLite database (triples, attributes, system namespaces)
and answers InstaQL queries, InstaML transactions and the permission-debug routes.
It knows nothing of HTTP: failures are raised as `instantdb_local.errors.ServerError`.

Contract (the ASGI layer relies on exactly this; keep it stable):

- Every method is synchronous and thread-safe. Writes are serialised per app; reads may
  run concurrently (SQLite WAL).
- ``actor`` says who is asking. `Actor.admin()` bypasses every rule; `Actor.user(record)`
  and `Actor.guest()` are evaluated against the app's permission rules.
- Results are plain JSON-ready dicts/lists.

STATUS: contract only. The engine issue fills in the bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Actor:
    """Who a request runs as.

    ``user`` is the `$users` record in "db format" (see server-semantics section 5.1:
    ``id``, ``email``, ``type``, ``isGuest``, ``app_id``, ``created_at``, custom fields),
    the value CEL rules see as ``auth``. Guests have ``user=None`` and see ``auth`` as an
    empty map.
    """

    is_admin: bool
    user: Mapping[str, Any] | None = None
    request: Mapping[str, Any] = field(default_factory=dict)  # ip / origin for CEL `request`

    @classmethod
    def admin(cls) -> Actor:
        return cls(is_admin=True)

    @classmethod
    def guest(cls) -> Actor:
        return cls(is_admin=False)

    @classmethod
    def for_user(cls, user: Mapping[str, Any]) -> Actor:
        return cls(is_admin=False, user=user)


class AppEngine:
    """One app's data. Construct with the path of its SQLite file (created if missing)."""

    def __init__(self, path: Path, *, app_id: str) -> None:
        self.path = path
        self.app_id = app_id

    # -- schema and rules ---------------------------------------------------------

    def apply_schema(self, schema: Mapping[str, Any]) -> None:
        """Create or update attributes from a schema document.

        The document has the shape of ``instant.schema.ts`` as described in
        ``server-vectors.md`` (``{"attrs": {ns: {label: {type, unique, indexed,
        required}}}, "links": {name: {forward, reverse}}}``). Idempotent.
        """
        raise NotImplementedError

    def set_rules(self, rules: Mapping[str, Any] | None) -> None:
        """Replace the app's permission rules (validated; bad rules raise ServerError)."""
        raise NotImplementedError

    def schema_json(self) -> dict[str, Any]:
        """The body of ``GET /admin/schema``: ``{"schema": {"refs": ..., "blobs": ...}}``."""
        raise NotImplementedError

    # -- data plane -----------------------------------------------------------------

    def query(self, query: Any, actor: Actor, *, inference: bool = False) -> dict[str, Any]:
        """Run an InstaQL query (``$$ruleParams`` may sit at its top level)."""
        raise NotImplementedError

    def transact(self, steps: Any, actor: Actor, *, throw_on_missing_attrs: bool = False) -> int:
        """Apply InstaML steps atomically; return the new tx id."""
        raise NotImplementedError

    def query_perms_check(
        self,
        query: Any,
        actor: Actor,
        *,
        inference: bool = False,
        rules_override: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Body of ``/admin/query_perms_check``: result, check-results, rule-wheres."""
        raise NotImplementedError

    def transact_perms_check(
        self,
        steps: Any,
        actor: Actor,
        *,
        rules_override: Mapping[str, Any] | None = None,
        commit: bool = False,
        throw_on_missing_attrs: bool = False,
    ) -> dict[str, Any]:
        """Body of ``/admin/transact_perms_check``; rolled back unless ``commit``."""
        raise NotImplementedError

    # -- users (the minimum impersonation and refresh tokens need) ---------------------

    def find_user(
        self, *, id: str | None = None, email: str | None = None, refresh_token: str | None = None
    ) -> dict[str, Any] | None:
        """A `$users` record in db format, or None."""
        raise NotImplementedError

    def create_refresh_token(
        self, *, email: str | None = None, id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Find or create the user, mint a refresh token: ``(user_with_refresh_token, created)``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
