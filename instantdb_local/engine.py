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

Extensions beyond the first contract:

- ``AppEngine(path, app_id=..., file_url=...)``: ``file_url(location_id, file_record)``
  builds the ``url`` of ``$files`` rows (default ``/storage/files/<location-id>``).
- `AppEngine.query_with_meta` returns ``(result, {"page-info", "aggregate"})`` for
  subscribe-query.
- `AppEngine.transact(..., system_writes=True)` lets trusted server code (uploads,
  auth) write system columns that clients may not.
- ``add_commit_listener(listener, wants_changes=...)``: while ``wants_changes()`` is
  true, each `Commit` carries per-entity `EntityChange` records (webhooks need them;
  reading them costs two record fetches per transaction, so only on request).
  Those records are also written to the app's ``change_outbox`` in the transaction
  itself, and stay there until the listener calls `AppEngine.release_changes` once it
  has kept them: `AppEngine.unreleased_changes` hands them back after a crash.
  Releasing costs no write of its own: released rows are deleted by the app's next
  transaction (or `AppEngine.flush_released_changes`, or `close`), so until then a
  crash hands them back again and the listener must treat a repeat as a no-op.
- `AppEngine.trusted_write` runs the server's own multi-step writes (auth, storage):
  reads and InstaML steps in one SQLite transaction, as admin, system columns allowed.
- `AppEngine.blobs` holds the bytes of the app's ``$files`` (`blobs.BlobStore`, next to
  the database); a committed delete of a ``$files`` row removes its blob.
  `AppEngine.use_file_url` replaces the ``url`` builder after construction.
- `AppEngine.storage_allowed` evaluates the ``$files`` rule storage routes check.
- For the live side (subscriptions, streams): `Commit.etypes` names the namespaces a
  commit may have changed, `AppEngine.catalog` is the current attribute snapshot,
  `AppEngine.last_tx_id()` the newest committed tx id, and `AppEngine.check_rule(...)`
  evaluates one rule outside a query or transaction (stream creation and reads).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import attrs as attrs_module
from . import entities, order_gaps, users
from .access import QueryRules, Resolver, RulesLike, TransactRules, Viewer, passes
from .attrs import Attr, Catalog
from .blobs import BlobStore
from .errors import ServerError, validation_failed
from .ids import new_id
from .instaml import (
    AddEntity,
    AddLink,
    DeleteEntity,
    Effects,
    MergeValue,
    RemoveLink,
    SetValueOp,
    Transaction,
)
from .instaql import FileUrl, Node, default_file_url, parse_query, run_query
from .store import Store

logger = logging.getLogger("instantdb_local")


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


@dataclass(frozen=True)
class EntityChange:
    """One entity a committed transaction created, updated or deleted.

    ``before`` / ``after`` hold the entity's scalar attributes by label, ``id`` included
    (never links); ``before`` is None for a create and ``after`` for a delete. An update
    that only changed links is not reported.
    """

    namespace: str
    id: str
    action: Literal["create", "update", "delete"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class Commit:
    """What a committed transaction did, for listeners (subscriptions, blob storage,
    webhooks)."""

    tx_id: int
    deleted_files: tuple[dict[str, Any], ...] = ()
    changes: tuple[EntityChange, ...] = ()
    """Filled only while a listener's ``wants_changes()`` is true, in the order the
    transaction touched the entities."""
    changes_json: str | None = None
    """``changes`` as the outbox row holds them: a JSON list of `EntityChange` fields
    (what `AppEngine.unreleased_changes` decodes), so a listener need not encode them
    again. None when there are no changes."""
    # The namespaces whose query results this commit may have changed; None when that
    # is unknown (or the schema changed), which listeners must read as "any of them".
    etypes: frozenset[str] | None = None


CommitListener = Callable[[Commit], None]


class _Rollback(Exception):
    """Leaves a write transaction without committing it (dry runs)."""


# Remembered query parses per app (see `AppEngine._parsed`): enough for the distinct
# queries of a busy app; the texts of huge queries are not kept.
_PLANS_KEPT = 512
_PLAN_KEY_MAX_CHARS = 8192

_SCHEMA_TYPES = {"string": "string", "number": "number", "boolean": "boolean", "date": "date"}


class AppEngine:
    """One app's data. Construct with the path of its SQLite file (created if missing)."""

    def __init__(self, path: Path, *, app_id: str, file_url: FileUrl | None = None) -> None:
        self.path = path
        self.app_id = app_id
        self._file_url = file_url or default_file_url
        self._store = Store(path)
        with self._store.read() as conn:
            self._catalog = attrs_module.load(conn)
        self._rules_lock = threading.Lock()
        self._rules_doc: Mapping[str, Any] | None = None
        self._rules: RulesLike | None = None
        self._listeners: list[CommitListener] = []
        self._plans: dict[tuple[str, bool], tuple[Catalog, dict[str, Node], dict[str, Any]]] = {}
        self._change_wanters: list[Callable[[], bool]] = []
        self._outbox = _ChangeOutbox()
        self.blobs = BlobStore(path.parent / "files")
        self.add_commit_listener(self._drop_deleted_blobs)
        self._sweep_orphan_blobs()

    def add_commit_listener(
        self, listener: CommitListener, *, wants_changes: Callable[[], bool] | None = None
    ) -> Callable[[], None]:
        """Call ``listener(Commit)`` after every committed transaction; returns a remover.

        Listeners run on the writer's thread after the write lock is released, so they
        may query the engine; they should return quickly. Exceptions they raise are
        not the writer's problem and are swallowed. While ``wants_changes()`` returns
        true (asked before each transaction), commits carry their `EntityChange` records.
        """
        self._listeners.append(listener)
        if wants_changes is not None:
            self._change_wanters.append(wants_changes)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if wants_changes is not None and wants_changes in self._change_wanters:
                self._change_wanters.remove(wants_changes)

        return remove

    def _changes_wanted(self) -> bool:
        for wants in list(self._change_wanters):
            try:
                if wants():
                    return True
            except Exception:  # when in doubt, record: a missed change cannot be recovered
                return True
        return False

    def unreleased_changes(self) -> list[tuple[int, list[dict[str, Any]]]]:
        """``(tx_id, records)`` of committed changes not yet released, oldest first:
        what a listener that wants changes missed (a crash between commit and
        `release_changes`). Records are `EntityChange` fields as dicts."""
        with self._store.read() as conn:
            rows = conn.execute("SELECT tx, records FROM change_outbox ORDER BY tx").fetchall()
        released = self._outbox.released()
        return [(int(tx), json.loads(records)) for tx, records in rows if tx not in released]

    def release_changes(self, tx_id: int) -> None:
        """The changes of ``tx_id`` are kept elsewhere now; forget them.

        No write happens here: a commit costs a disk sync, and the listener runs on the
        writer's thread. The row is deleted inside the app's next transaction; until
        then a crash hands it back from `unreleased_changes`.
        """
        self._outbox.release(tx_id)

    def flush_released_changes(self) -> None:
        """Delete the outbox rows released since the last transaction now (a listener
        whose filters changed calls this, so a crash cannot replay an old transaction
        through the new filters)."""
        if not self._outbox.has_released():
            return
        with self._store.lock:
            with self._store.write() as conn:
                deleted, _ = self._outbox.write(conn, None, ())
            self._outbox.committed(deleted)

    def _notify(self, commit: Commit) -> None:
        for listener in list(self._listeners):
            try:
                listener(commit)
            except Exception:  # a listener's bug must not fail the client's write
                continue

    def __repr__(self) -> str:
        return f"AppEngine(app_id={self.app_id!r}, path={str(self.path)!r})"

    # -- files ----------------------------------------------------------------------

    def use_file_url(self, file_url: FileUrl) -> None:
        """Build the ``url`` of ``$files`` rows with ``file_url`` from now on."""
        self._file_url = file_url

    def _drop_deleted_blobs(self, commit: Commit) -> None:
        for record in commit.deleted_files:
            location_id = record.get("location-id")
            if not isinstance(location_id, str):
                continue
            try:
                self.blobs.delete(location_id)
            except (OSError, ValueError):
                # The row is gone, so the blob is unreachable; the next start sweeps it.
                logger.warning("Could not remove the blob of deleted file %s", record.get("id"))

    def _sweep_orphan_blobs(self) -> None:
        # Blobs of uploads that crashed before committing, or of deletes whose cleanup
        # never ran: nothing can reach them any more.
        if not self.blobs.root.is_dir():
            return
        attr = self._catalog.forward("$files", "location-id")
        assert attr is not None
        with self._store.read() as conn:
            rows = conn.execute("SELECT value FROM triples WHERE attr = ?", (attr.id,))
            keep = {json.loads(row[0]) for row in rows}
        removed = self.blobs.sweep({k for k in keep if isinstance(k, str)})
        if removed:
            logger.info("Removed %d unreferenced file(s) of app %s", removed, self.app_id)

    def storage_allowed(self, actor: Actor, action: str, path: str) -> bool:
        """Whether ``actor`` may ``create`` or ``delete`` the file at ``path``.

        The storage routes check this before touching any bytes; the rule sees only
        ``data = {"path": path}``, and with no rule at all storage is denied.
        """
        if actor.is_admin:
            return True
        program = self._rule_set().program("$files", action)
        if program is None:
            return False
        from .perms import RuleContext

        viewer = self._viewer(actor, {}, debug=False)
        with self._store.read() as conn:
            result = program.evaluate(
                RuleContext(
                    etype="$files",
                    ref=Resolver(conn, self._catalog),
                    data={"path": path},
                    auth=actor.user,
                    rule_params={},
                    request=viewer.request_for(),
                    show_error_details=False,
                )
            )
        return passes(result)

    # -- trusted writes -------------------------------------------------------------

    @contextlib.contextmanager
    def trusted_write(self) -> Iterator[TrustedWrite]:
        """One write by the server itself, committed when the block succeeds.

        Everything done through the yielded `TrustedWrite` is one SQLite transaction
        under the app's write lock: an exception rolls all of it back. Listeners hear
        of it once, after the commit.
        """
        with self._store.lock:
            with self._store.write() as conn:
                write = TrustedWrite(self, conn, capture=self._changes_wanted())
                yield write
                deleted, encoded = self._outbox.write(conn, write.tx, tuple(write.changes))
            self._outbox.committed(deleted)
            self._catalog = write.catalog  # published only once committed
        if write.tx is not None:
            self._notify(
                Commit(
                    write.tx,
                    tuple(write.deleted_files),
                    tuple(write.changes),
                    changes_json=encoded,
                )
            )

    # -- schema and rules ---------------------------------------------------------

    def apply_schema(self, schema: Mapping[str, Any]) -> None:
        """Create or update attributes from a schema document.

        The document has the shape of ``instant.schema.ts`` as described in
        ``server-vectors.md`` (``{"attrs": {ns: {label: {type, unique, indexed,
        required}}}, "links": {name: {forward, reverse}}}``). Idempotent: applying the
        same document again changes nothing; a document that adds attributes or flips
        flags evolves the catalog (newly indexed attributes are null-filled).
        """
        if isinstance(schema, Mapping) and "entities" in schema and "attrs" not in schema:
            from .schema_files import normalize_schema

            schema = normalize_schema(schema)
        wanted = _schema_attrs(schema)
        with self._store.lock:
            with self._store.write() as conn:
                catalog = self._apply_attrs(conn, wanted)
            self._catalog = catalog  # published only once committed

    def _apply_attrs(self, conn: Any, wanted: list[Attr]) -> Catalog:
        catalog = self._catalog
        tx: int | None = None
        for attr in wanted:
            existing = catalog.forward(attr.etype, attr.label)
            if existing is not None and existing.system:
                continue  # the system catalog is fixed
            if existing is None:
                reserved = attr.etype.startswith("$")
                if reserved and attr.etype not in attrs_module.USER_SYSTEM_NAMESPACES:
                    raise _schema_error(
                        f"$ is reserved for system tables. You can't create {attr.etype}"
                    )
                attrs_module.insert(conn, attr)
                updated = attr
            else:
                updated = attrs_module.with_flags(attr, id=existing.id, system=existing.system)
                if updated == existing:
                    continue
                if existing.is_ref != updated.is_ref:
                    raise _schema_error(
                        f"`{attr.etype}.{attr.label}` can't change between a link and an attribute."
                    )
                attrs_module.update(conn, updated)
                if existing.checked_type != updated.checked_type:
                    entities.recompute_dates(conn, updated)
            catalog = Catalog.of([a for a in catalog.attrs if a.id != updated.id] + [updated])
            newly_indexed = updated.indexed and (existing is None or not existing.indexed)
            if newly_indexed and not updated.is_ref and not updated.is_id:
                tx = tx if tx is not None else Store.next_tx(conn)
                entities.backfill_indexed_nulls(conn, updated, tx)
        order_gaps.sync_catalog(conn, self._catalog, catalog)
        return catalog

    def set_rules(self, rules: Mapping[str, Any] | None) -> None:
        """Replace the app's permission rules (validated; bad rules raise ServerError)."""
        from .perms import RuleSet

        compiled = RuleSet.from_document(rules)
        with self._rules_lock:
            self._rules_doc = rules
            self._rules = compiled

    def use_rule_set(self, rules: RulesLike) -> None:
        """Install an already compiled rule set (anything shaped like `perms.RuleSet`)."""
        with self._rules_lock:
            self._rules = rules

    def _rule_set(self, override: Mapping[str, Any] | None = None) -> RulesLike:
        from .perms import RuleSet

        if override is not None:
            return RuleSet.from_document(override)
        with self._rules_lock:
            if self._rules is None:
                self._rules = RuleSet.from_document(None)
            return self._rules

    @property
    def catalog(self) -> Catalog:
        """The attribute catalog as of the last commit (an immutable snapshot)."""
        return self._catalog

    def last_tx_id(self) -> int:
        """The id of the newest committed transaction (0 before the first)."""
        with self._store.read() as conn:
            row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM txs").fetchone()
        return int(row[0])

    def check_rule(
        self,
        etype: str,
        action: str,
        data: Mapping[str, Any],
        actor: Actor,
        *,
        rule_params: Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether ``actor`` passes the app's ``etype.action`` rule for ``data``.

        For checks that are neither a query nor a transaction, such as creating or
        reading a stream. Admins always pass; with no rule at all the action is allowed
        (system namespaces have their own fallbacks). A rule that fails to evaluate
        raises ``permission-evaluation-failed``.
        """
        if actor.is_admin:
            return True
        program = self._rule_set().program(etype, action)
        if program is None:
            return True
        params = dict(rule_params or {})
        viewer = self._viewer(actor, params, debug=False)
        from .perms import RuleContext  # the CEL runtime loads only when rules are used

        with self._store.read() as conn:
            context = RuleContext(
                etype=etype,
                ref=Resolver(conn, self._catalog),
                data=data,
                auth=actor.user,
                rule_params=params,
                request=viewer.request_for(),
            )
            return passes(program.evaluate(context))

    def schema_json(self) -> dict[str, Any]:
        """The body of ``GET /admin/schema``: ``{"schema": {"refs": ..., "blobs": ...}}``."""
        refs: dict[str, Any] = {}
        blobs: dict[str, dict[str, Any]] = {}
        for attr in self._catalog:
            if attr.etype in attrs_module.INTERNAL_NAMESPACES:
                continue
            if attr.is_ref:
                key = f"{attr.etype}-{attr.label}-{attr.rev_etype}-{attr.rev_label}"
                refs[key] = attr.to_json()
            else:
                blobs.setdefault(attr.etype, {})[attr.label] = attr.to_json()
        return {"schema": {"refs": refs, "blobs": blobs}}

    # -- data plane -----------------------------------------------------------------

    def _viewer(self, actor: Actor, rule_params: Mapping[str, Any], *, debug: bool) -> Viewer:
        return Viewer(
            auth=actor.user,
            request=actor.request,
            rule_params=rule_params,
            show_error_details=debug,
        )

    def query(self, query: Any, actor: Actor, *, inference: bool = False) -> dict[str, Any]:
        """Run an InstaQL query (``$$ruleParams`` may sit at its top level)."""
        return self.query_with_meta(query, actor, inference=inference)[0]

    def query_with_meta(
        self, query: Any, actor: Actor, *, inference: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The result tree plus ``{"page-info": {ns: ...}, "aggregate": {ns: ...}}``."""
        catalog = self._catalog
        nodes, rule_params = self._parsed(query, actor.is_admin, catalog)
        rules = None if actor.is_admin else self._rule_set()
        with self._store.read() as conn:
            access = None
            if rules is not None:
                viewer = self._viewer(actor, rule_params, debug=False)
                access = QueryRules(rules, viewer, conn, catalog)
            return run_query(
                conn, catalog, nodes, inference=inference, access=access, file_url=self._file_url
            )

    def _parsed(
        self, query: Any, is_admin: bool, catalog: Catalog
    ) -> tuple[dict[str, Node], dict[str, Any]]:
        """`parse_query`, remembered per query text and catalog snapshot.

        Subscriptions and clients repeat the same queries; a remembered parse also
        keeps each node's compiled where (admin runs), so a repeat skips validation and
        SQL generation. The key is the query's ``repr``, which tells apart every value
        the parser treats differently (``1``/``1.0``/``True``, lists/tuples).
        """
        try:
            text = repr(query)
        except Exception:  # an object whose repr fails: parse it, don't remember it
            return parse_query(query, is_admin=is_admin)
        key = (text, is_admin)
        kept = self._plans.get(key)
        if kept is not None and kept[0] is catalog:
            return kept[1], dict(kept[2])
        nodes, rule_params = parse_query(query, is_admin=is_admin)
        if len(text) <= _PLAN_KEY_MAX_CHARS:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            self._plans[key] = (catalog, nodes, dict(rule_params))
        return nodes, rule_params

    def transact(
        self,
        steps: Any,
        actor: Actor,
        *,
        throw_on_missing_attrs: bool = False,
        system_writes: bool = False,
    ) -> int:
        """Apply InstaML steps atomically; return the new tx id."""
        rules = None
        if not actor.is_admin:
            rules = TransactRules(
                self._rule_set(), self._viewer(actor, {}, debug=False), record_only=False
            )
        capture = self._changes_wanted()
        with self._store.lock:
            with self._store.write() as conn:
                tx, catalog, effects, changes = self._run(
                    conn, steps, actor, throw_on_missing_attrs, rules, system_writes, capture
                )
                deleted, encoded = self._outbox.write(conn, tx, changes)
            self._outbox.committed(deleted)
            self._catalog = catalog  # published only once committed
        self._notify(
            Commit(
                tx,
                tuple(effects.deleted_files),
                changes=changes,
                changes_json=encoded,
                etypes=_changed_etypes(steps, effects, catalog),
            )
        )
        return tx

    def _run(
        self,
        conn: Any,
        steps: Any,
        actor: Actor,
        throw_on_missing_attrs: bool,
        rules: TransactRules | None,
        system_writes: bool = False,
        capture: bool = False,
    ) -> tuple[int, Catalog, Effects, tuple[EntityChange, ...]]:
        txn = Transaction(
            conn,
            self._catalog,
            steps,
            is_admin=actor.is_admin,
            throw_on_missing_attrs=throw_on_missing_attrs,
            system_writes=system_writes,
        )
        if rules is None:
            txn.prepare_attrs()
            txn.expand()
            tx = Store.next_tx(conn)
            if not capture:
                return tx, txn.catalog, txn.apply(tx), ()
            effects, changes = _apply_recording_changes(conn, txn, tx)
            return tx, txn.catalog, effects, changes
        for attr_step in txn.attr_steps:
            rules.admin_only(attr_step.action, "attrs", None)
        new_attrs = txn.prepare_attrs()
        pre = Resolver(conn, txn.catalog)
        for attr in new_attrs:
            rules.new_attr(attr, pre)
        txn.expand()
        tx = Store.next_tx(conn)
        before, after = _checked_apply(conn, txn, tx, rules)
        changes = _entity_changes(txn.catalog, before, after) if capture else ()
        return tx, txn.catalog, txn.effects, changes

    def query_perms_check(
        self,
        query: Any,
        actor: Actor,
        *,
        inference: bool = False,
        rules_override: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Body of ``/admin/query_perms_check``: result, check-results, rule-wheres."""
        _refuse_admin(actor)
        nodes, rule_params = parse_query(query, is_admin=False)
        rules = self._rule_set(rules_override)
        catalog = self._catalog
        checks: list[dict[str, Any]] = []
        with self._store.read() as conn:
            access = QueryRules(
                rules, self._viewer(actor, rule_params, debug=True), conn, catalog, checks
            )
            result, _ = run_query(
                conn, catalog, nodes, inference=inference, access=access, file_url=self._file_url
            )
        return {"check-results": checks, "result": result, "rule-wheres": None}

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
        _refuse_admin(actor)
        rules = TransactRules(
            self._rule_set(rules_override), self._viewer(actor, {}, debug=True), record_only=True
        )
        committed = False
        tx = 0
        deleted: tuple[int, ...] = ()
        encoded: str | None = None
        capture = commit and self._changes_wanted()
        with self._store.lock:
            try:
                with self._store.write() as conn:
                    tx, catalog, effects, changes = self._run(
                        conn, steps, actor, throw_on_missing_attrs, rules, capture=capture
                    )
                    if not (commit and all(c.ok for c in rules.checks)):
                        raise _Rollback
                    deleted, encoded = self._outbox.write(conn, tx, changes)
                    committed = True
            except _Rollback:
                pass
            if committed:
                self._outbox.committed(deleted)
                self._catalog = catalog
        if committed:
            self._notify(
                Commit(
                    tx,
                    tuple(effects.deleted_files),
                    changes=changes,
                    changes_json=encoded,
                    etypes=_changed_etypes(steps, effects, catalog),
                )
            )
        return {
            "tx-id": tx,
            "all-checks-ok?": all(c.ok for c in rules.checks),
            "committed?": committed,
            "check-results": [c.to_json() for c in rules.checks],
        }

    # -- users (the minimum impersonation and refresh tokens need) ---------------------

    def find_user(
        self, *, id: str | None = None, email: str | None = None, refresh_token: str | None = None
    ) -> dict[str, Any] | None:
        """A `$users` record in db format, or None."""
        catalog = self._catalog
        with self._store.read() as conn:
            user_id = users.find_user_id(
                conn, catalog, id=id, email=email, refresh_token=refresh_token
            )
            if user_id is None:
                return None
            return users.db_format(conn, catalog, self.app_id, user_id)

    def create_refresh_token(
        self, *, email: str | None = None, id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Find or create the user, mint a refresh token: ``(user_with_refresh_token, created)``.

        See `instantdb_local.auth.create_token`, which also takes ``extra_fields``.
        """
        from . import auth

        return auth.create_token(self, email=email, id=id)

    def close(self) -> None:
        try:
            self.flush_released_changes()
        except (sqlite3.Error, RuntimeError):  # closed already, or the disk failed:
            # the rows stay, are handed back on reopen, and the listener skips them.
            logger.warning("Could not flush the change outbox of app %s", self.app_id)
        self._store.close()


class TrustedWrite:
    """The handle `AppEngine.trusted_write` yields: its connection, the catalog, and
    `transact` for InstaML steps run as admin with system columns writable."""

    def __init__(self, engine: AppEngine, conn: sqlite3.Connection, *, capture: bool) -> None:
        self.conn = conn
        self.catalog = engine._catalog
        self.tx: int | None = None
        self.deleted_files: list[dict[str, Any]] = []
        self.changes: list[EntityChange] = []
        self._engine = engine
        self._capture = capture

    def transact(self, steps: list[Any]) -> int:
        tx, catalog, effects, changes = self._engine._run(
            self.conn, steps, Actor.admin(), False, None, system_writes=True, capture=self._capture
        )
        self.catalog = catalog
        self.tx = tx
        self.deleted_files.extend(effects.deleted_files)
        self.changes.extend(changes)
        return tx

    def user(self, user_id: str) -> dict[str, Any] | None:
        """The `$users` record in db format as this write sees it, or None."""
        return users.db_format(self.conn, self.catalog, self._engine.app_id, user_id)


def _refuse_admin(actor: Actor) -> None:
    if actor.is_admin:
        raise validation_failed("non-admin", None, [{"message": "Cannot test perms as admin"}])


def _checked_apply(
    conn: Any, txn: Transaction, tx: int, rules: TransactRules
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Apply a non-admin transaction with its permission checks (section 7).

    ``update``/``delete`` rules and the link fallback's ``view`` see the database as it
    was before the transaction, so the writes are applied once inside a savepoint to
    learn each entity's new state, rolled back, checked, then applied for real;
    ``create`` and ``link`` rules then run against the new state in the same database
    transaction, where ``data.ref`` sees links written by this transaction.

    Returns the involved entities' records before and after, in touch order.
    """
    catalog = txn.catalog
    conn.execute("SAVEPOINT instant_checks")
    effects = txn.apply(tx)
    keys = _involved(effects)
    after = _records(conn, catalog, keys)
    conn.execute("ROLLBACK TO instant_checks")
    conn.execute("RELEASE instant_checks")

    before = _records(conn, catalog, keys)
    pre = Resolver(conn, catalog)
    params_of = effects.rule_params

    def params(key: tuple[str, str]) -> dict[str, Any]:
        touch = effects.touches.get(key)
        if key in params_of:
            return params_of[key]
        if touch is not None and touch.cascade_from is not None:
            return params_of.get(touch.cascade_from, {})
        return {}

    fallback_forward: set[tuple[str, str]] = set()
    link_checks: list[Any] = []
    for change in effects.links:
        attr = change.link.attr
        forward = change.link.forward
        step_label = attr.label if forward else attr.rev_label
        other_etype = change.link.target_etype
        other_label = attr.rev_label if forward else attr.label
        other_id = change.target if forward else change.source
        assert step_label is not None
        assert other_label is not None
        programs = rules.link_programs(
            change.action, change.step_etype, step_label, other_etype, other_label
        )
        if programs:
            link_checks.append((change, programs, other_etype, other_id))
            continue
        fallback_forward.add((attr.etype, change.source))
        rev_key = (str(attr.rev_etype), change.target)
        rules.entity(
            "view",
            rev_key[0],
            rev_key[1],
            pre,
            data=before.get(rev_key) or after.get(rev_key) or {},
            rule_params=params(rev_key),
        )

    for key, touch in effects.touches.items():
        etype, eid = key
        if touch.deleted:
            rules.entity(
                "delete", etype, eid, pre, data=before.get(key, {}), rule_params=params(key)
            )
            continue
        if key not in before or key not in after:
            continue
        if touch.written or touch.modified or key in fallback_forward:
            rules.entity(
                "update",
                etype,
                eid,
                pre,
                data=before[key],
                new_data=after[key],
                rule_params=params(key),
                modified=list(dict.fromkeys([*touch.modified, *touch.linked])),
            )

    txn.apply(tx)
    post = Resolver(conn, catalog)
    now = _records(conn, catalog, keys)
    for key, touch in effects.touches.items():
        if key in before or key not in now:
            continue
        if touch.written or touch.modified or key in fallback_forward:
            rules.entity(
                "create",
                key[0],
                key[1],
                post,
                data=now[key],
                new_data=now[key],
                rule_params=params(key),
                modified=list(dict.fromkeys([*touch.modified, *touch.linked])),
            )
    for change, programs, other_etype, other_id in link_checks:
        step_key = (change.step_etype, change.step_eid)
        other_key = (other_etype, other_id)
        data = now.get(step_key) or before.get(step_key) or {}
        linked = now.get(other_key) or before.get(other_key) or {}
        actions = {
            "data": "update" if step_key in before else "create",
            "linkedData": "update" if other_key in before else "create",
        }
        for program, on_step_side in programs:
            if on_step_side:
                rules.link(
                    program,
                    change.action,
                    change.step_etype,
                    change.step_eid,
                    post,
                    data=data,
                    linked_etype=other_etype,
                    linked_data=linked,
                    actions=actions,
                    rule_params=params(step_key),
                )
            else:
                rules.link(
                    program,
                    change.action,
                    other_etype,
                    other_id,
                    post,
                    data=linked,
                    linked_etype=change.step_etype,
                    linked_data=data,
                    actions={"data": actions["linkedData"], "linkedData": actions["data"]},
                    rule_params=params(other_key),
                )
    return _in_order(before, keys), _in_order(now, keys)


def _changed_etypes(steps: Any, effects: Effects, catalog: Catalog) -> frozenset[str] | None:
    """The namespaces whose query results a committed transaction may have changed.

    A superset is fine (listeners only recompute more); a missing namespace would
    leave a live query stale, so deletes also count the namespaces linked to the
    deleted entities (their link fields change) and attribute edits count as all.
    """
    if effects.attr_steps:
        return None
    etypes = {etype for etype, _ in effects.touches}
    # Steps name their namespace even when they only create an entity with no values.
    for step in steps if isinstance(steps, list) else ():
        if isinstance(step, list) and len(step) > 1 and isinstance(step[1], str):
            etypes.add(step[1])
    for change in effects.links:
        etypes.add(change.link.attr.etype)
        etypes.add(str(change.link.attr.rev_etype))
    for attr in effects.new_attrs:
        etypes.add(attr.etype)
        if attr.rev_etype is not None:
            etypes.add(attr.rev_etype)
    for etype in {touch.etype for touch in effects.touches.values() if touch.deleted}:
        etypes.update(attr.etype for attr in catalog.reverse_refs_to(etype))
        etypes.update(str(attr.rev_etype) for attr in catalog.attrs_of(etype) if attr.is_ref)
    return frozenset(etypes)


def _involved(effects: Any) -> dict[tuple[str, str], None]:
    """Entities a transaction touched or linked, in the order it touched them."""
    keys = dict.fromkeys(effects.touches)
    for change in effects.links:
        attr = change.link.attr
        keys[(attr.etype, change.source)] = None
        keys[(str(attr.rev_etype), change.target)] = None
    return keys


def _in_order(
    records: dict[tuple[str, str], dict[str, Any]], keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    return {key: records[key] for key in keys if key in records}


def _op_keys(ops: Iterable[Any]) -> dict[tuple[str, str], None]:
    """The entities InstaML ops name directly (cascaded deletes are found on apply)."""
    keys: dict[tuple[str, str], None] = {}
    for op in ops:
        if isinstance(op, (AddEntity, DeleteEntity)):
            keys[(op.etype, op.eid)] = None
        elif isinstance(op, (SetValueOp, MergeValue)):
            keys[(op.attr.etype, op.eid)] = None
        elif isinstance(op, (AddLink, RemoveLink)):
            attr = op.link.attr
            keys[(attr.etype, op.source)] = None
            keys[(str(attr.rev_etype), op.target)] = None
    return keys


def _apply_recording_changes(
    conn: Any, txn: Transaction, tx: int
) -> tuple[Effects, tuple[EntityChange, ...]]:
    """Apply an admin transaction, reading its entities' records before and after.

    The records before are read for the entities the ops name; if applying touched
    others too (cascaded deletes), the writes are rolled back, their records read, and
    the transaction applied again, so every deleted entity's last state is known.
    """
    catalog = txn.catalog
    keys = _op_keys(txn.ops)
    before = _records(conn, catalog, keys)
    conn.execute("SAVEPOINT instant_changes")
    effects = txn.apply(tx)
    extra = [key for key in _involved(effects) if key not in keys]
    if extra:
        conn.execute("ROLLBACK TO instant_changes")
        before.update(_records(conn, catalog, extra))
        keys.update(dict.fromkeys(extra))
        effects = txn.apply(tx)
    conn.execute("RELEASE instant_changes")
    after = _records(conn, catalog, keys)
    return effects, _entity_changes(catalog, _in_order(before, keys), _in_order(after, keys))


class _ChangeOutbox:
    """The engine's side of the change outbox: rows written inside each transaction,
    and the transactions their listener has released, deleted by the next one.

    Deleting a released row in a transaction of its own would cost a second synced
    commit per transaction; riding along with the next write costs one statement.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released: set[int] = set()

    def release(self, tx: int) -> None:
        with self._lock:
            self._released.add(tx)

    def released(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._released)

    def has_released(self) -> bool:
        return bool(self._released)

    def write(
        self, conn: sqlite3.Connection, tx: int | None, changes: tuple[EntityChange, ...]
    ) -> tuple[tuple[int, ...], str | None]:
        """Inside a write transaction: keep ``changes`` of ``tx`` and delete the rows
        released so far. Returns those released txs, for `committed` once it commits
        (a rollback keeps them pending), and the changes' JSON (None if none)."""
        with self._lock:
            deleted = tuple(self._released)
        if deleted:
            conn.executemany(
                "DELETE FROM change_outbox WHERE tx = ?", [(released,) for released in deleted]
            )
        if not changes or tx is None:
            return deleted, None
        records = [
            {
                "namespace": change.namespace,
                "id": change.id,
                "action": change.action,
                "before": change.before,
                "after": change.after,
            }
            for change in changes
        ]
        encoded = json.dumps(records, ensure_ascii=False)
        conn.execute(
            "INSERT OR REPLACE INTO change_outbox (tx, records) VALUES (?, ?)", (tx, encoded)
        )
        return deleted, encoded

    def committed(self, deleted: tuple[int, ...]) -> None:
        if deleted:
            with self._lock:
                self._released.difference_update(deleted)


def _entity_changes(
    catalog: Catalog,
    before: dict[tuple[str, str], dict[str, Any]],
    after: dict[tuple[str, str], dict[str, Any]],
) -> tuple[EntityChange, ...]:
    """Create / update / delete records from entity states (both in touch order)."""
    changes: list[EntityChange] = []
    for key in dict.fromkeys([*before, *after]):
        etype, eid = key
        if etype in attrs_module.INTERNAL_NAMESPACES:
            continue  # hashed tokens and codes are nobody's business
        refs = {attr.label for attr in catalog.attrs_of(etype) if attr.is_ref}
        old = _scalars(before.get(key), refs)
        new = _scalars(after.get(key), refs)
        if old is None and new is None:
            continue
        if old is None:
            changes.append(EntityChange(etype, eid, "create", None, new))
        elif new is None:
            changes.append(EntityChange(etype, eid, "delete", old, None))
        elif old != new:
            changes.append(EntityChange(etype, eid, "update", old, new))
    return tuple(changes)


def _scalars(record: dict[str, Any] | None, refs: set[str]) -> dict[str, Any] | None:
    if record is None:
        return None
    return {label: value for label, value in record.items() if label not in refs}


def _records(
    conn: Any, catalog: Catalog, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for etype, eid in keys:
        by_type.setdefault(etype, []).append(eid)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for etype, ids in by_type.items():
        for eid, record in entities.fetch_records(conn, catalog, etype, ids).items():
            found[(etype, eid)] = record
    return found


# -- schema documents ---------------------------------------------------------------------


def _schema_error(message: str) -> ServerError:
    return validation_failed("schema", None, [{"message": message}])


def _flag(spec: Mapping[str, Any], key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise _schema_error(f"`{key}` must be true or false, got {value!r}.")
    return value


def _schema_attrs(schema: Any) -> list[Attr]:
    """The attributes a schema document describes, validated before any I/O."""
    if not isinstance(schema, Mapping):
        raise _schema_error("A schema must be a map with `attrs` and `links`.")
    unknown = set(schema) - {"attrs", "links"}
    if unknown:
        raise _schema_error(f"Unknown schema keys: {sorted(unknown)}; expected `attrs`, `links`.")
    wanted: list[Attr] = []
    namespaces: list[str] = []
    attrs = schema.get("attrs") or {}
    links = schema.get("links") or {}
    if not isinstance(attrs, Mapping) or not isinstance(links, Mapping):
        raise _schema_error("`attrs` and `links` must be maps.")
    for etype, labels in attrs.items():
        if not isinstance(etype, str) or not etype or not isinstance(labels, Mapping):
            raise _schema_error(f"Namespace {etype!r} must map attribute names to specs.")
        namespaces.append(etype)
        for label, spec in labels.items():
            if label == "id":
                continue
            if not isinstance(spec, Mapping):
                raise _schema_error(f'`{etype}.{label}` must be a map like {{"type": "string"}}.')
            kind = spec.get("type", "any")
            if kind not in ("string", "number", "boolean", "date", "json", "any"):
                raise _schema_error(
                    f"`{etype}.{label}` has unknown type {kind!r}; use string, number, boolean, "
                    "date, json or any."
                )
            wanted.append(
                attrs_module.Attr(
                    id=new_id(),
                    etype=etype,
                    label=str(label),
                    unique=_flag(spec, "unique"),
                    indexed=_flag(spec, "indexed"),
                    required=_flag(spec, "required"),
                    checked_type=_SCHEMA_TYPES.get(kind),
                )
            )
    for name, link in links.items():
        try:
            forward, reverse = link["forward"], link["reverse"]
            on, label, has = forward["on"], forward["label"], forward["has"]
            rev_on, rev_label, rev_has = reverse["on"], reverse["label"], reverse["has"]
        except (KeyError, TypeError):
            raise _schema_error(
                f"Link `{name}` needs forward and reverse {{on, label, has}}."
            ) from None
        if has not in ("one", "many") or rev_has not in ("one", "many"):
            raise _schema_error(f'Link `{name}`: `has` must be "one" or "many".')
        for side in (forward, reverse):
            if side.get("onDelete") not in (None, "cascade"):
                raise _schema_error(f'Link `{name}`: onDelete must be "cascade" when given.')
        namespaces += [on, rev_on]
        wanted.append(
            attrs_module.Attr(
                id=new_id(),
                etype=on,
                label=label,
                value_type="ref",
                cardinality=has,
                unique=rev_has == "one",
                indexed=False,
                required=bool(forward.get("required", False)),
                rev_etype=rev_on,
                rev_label=rev_label,
                on_delete=forward.get("onDelete"),
                on_delete_reverse=reverse.get("onDelete"),
            )
        )
    ids = [
        attrs_module.Attr(id=new_id(), etype=etype, label="id", unique=True, indexed=True)
        for etype in dict.fromkeys(namespaces)
    ]
    return ids + wanted
