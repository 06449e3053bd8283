"""Live queries: the initial ``add-query-ok`` and a ``refresh-ok`` per observed change.

Subscriptions asking the same query as the same viewer share a *group*, computed once
per change. A commit marks the groups whose namespaces it touched as dirty; a dirty
group recomputes in a worker thread (at most ``workers`` at a time across the server),
and a burst of commits while it runs collapses into one more run. Each subscriber is
then sent the result only if it differs from the last one it got, so an unchanged
result is never sent twice (live-protocol sections 1.2, 1.3 and 1.6).

Runs of a group are strictly sequential and each answers only the subscribers that
were members when it started, so a subscriber never receives an older result after a
newer one; one joining mid-run is answered by the run its joining scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from instantdb_local.engine import Actor, AppEngine, Commit
from instantdb_local.errors import ServerError
from instantdb_local.instance import Instance

from ._dependencies import query_namespaces
from ._session import Session
from ._wire import crash_event, error_event, isn

logger = logging.getLogger("instantdb_local")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _actor_key(actor: Actor) -> str:
    if actor.is_admin:
        return "admin"
    # Rules see the user record and the request (ip, origin): both decide the result.
    return _canonical({"user": actor.user, "request": actor.request})


@dataclass(frozen=True)
class _Outcome:
    """One computation of a group: its result, or the error it raised."""

    basis_tx: int = 0
    result: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    digest: bytes = b""
    duration_ms: int = 0
    deps: frozenset[str] | None = None
    error: ServerError | None = None


@dataclass(eq=False)
class _Group:
    key: tuple[str, str, bool, str]
    app_id: str
    q: Any
    actor: Actor
    inference: bool
    members: set[Subscription] = field(default_factory=set)
    # Namespaces the query read on its last run; None until then, or if unknown.
    deps: frozenset[str] | None = None
    running: bool = False
    dirty: bool = False


@dataclass(eq=False)
class Subscription:
    """One query of one session."""

    session: Session
    q: Any
    client_event_id: str
    group: _Group
    answered: bool = False  # add-query-ok (or its error) sent
    digest: bytes | None = None  # of the last result sent
    last_error: str | None = None
    active: bool = True


class LiveQueries:
    """Every live query of one server. Used from the event loop only."""

    def __init__(self, instance: Instance, *, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._instance = instance
        self._loop = asyncio.get_running_loop()
        self._limiter = anyio.CapacityLimiter(workers)
        self._groups: dict[tuple[str, str, bool, str], _Group] = {}
        self._by_app: dict[str, set[_Group]] = {}
        self._by_session: dict[str, dict[str, Subscription]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        # Engines this registry listens to; touched from worker threads.
        self._listening: dict[str, AppEngine] = {}
        self._listening_lock = threading.Lock()
        self._removers: list[Callable[[], None]] = []

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(self, session: Session, q: Any, client_event_id: str) -> Subscription | None:
        """Start answering ``q`` on ``session``; None if it already asks that query."""
        q_key = _canonical(q)
        mine = self._by_session.setdefault(session.id, {})
        if q_key in mine:
            return None
        key = (session.app_id, q_key, session.inference, _actor_key(session.actor))
        group = self._groups.get(key)
        if group is None:
            group = _Group(key, session.app_id, q, session.actor, session.inference)
            self._groups[key] = group
            self._by_app.setdefault(session.app_id, set()).add(group)
        subscription = Subscription(session, q, client_event_id, group)
        group.members.add(subscription)
        mine[q_key] = subscription
        self._mark_dirty(group)
        return subscription

    def unsubscribe(self, session: Session, q: Any) -> bool:
        subscription = self._by_session.get(session.id, {}).get(_canonical(q))
        if subscription is None:
            return False
        self._remove(subscription)
        return True

    def drop_session(self, session: Session) -> None:
        for subscription in list(self._by_session.get(session.id, {}).values()):
            self._remove(subscription)
        self._by_session.pop(session.id, None)

    def count(self) -> int:
        return sum(len(subs) for subs in self._by_session.values())

    def _remove(self, subscription: Subscription) -> None:
        subscription.active = False
        group = subscription.group
        group.members.discard(subscription)
        mine = self._by_session.get(subscription.session.id)
        if mine is not None:
            mine.pop(_canonical(subscription.q), None)
        if not group.members and not group.running:
            self._discard(group)

    def _discard(self, group: _Group) -> None:
        self._groups.pop(group.key, None)
        groups = self._by_app.get(group.app_id)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._by_app[group.app_id]

    # -- invalidation ---------------------------------------------------------------------

    def on_commit(self, app_id: str, commit: Commit) -> None:
        """Mark the app's groups a commit may have changed (on the event loop)."""
        for group in list(self._by_app.get(app_id, ())):
            if commit.etypes is None or group.deps is None or group.deps & commit.etypes:
                self._mark_dirty(group)

    def _listen(self, app_id: str, engine: AppEngine) -> None:
        # Called from a worker thread before the first computation reads anything, so
        # every later commit is heard and every earlier one is in that first result.
        with self._listening_lock:
            if self._listening.get(app_id) is engine:
                return
            self._listening[app_id] = engine

            def heard(commit: Commit) -> None:
                # Runs on the writer's thread; hand the news to the event loop. After the
                # server stopped the loop is closed, and nobody is left to tell.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self.on_commit, app_id, commit)

            self._removers.append(engine.add_commit_listener(heard))

    def close(self) -> None:
        """Stop listening to the engines (the sessions are closed by the hub)."""
        with self._listening_lock:
            for remove in self._removers:
                remove()
            self._removers.clear()
            self._listening.clear()

    # -- computing ------------------------------------------------------------------------

    def _mark_dirty(self, group: _Group) -> None:
        group.dirty = True
        if not group.running:
            self._start(group)

    def _start(self, group: _Group) -> None:
        group.running = True
        group.dirty = False
        members = list(group.members)
        task = asyncio.ensure_future(self._run(group, members))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, group: _Group, members: list[Subscription]) -> None:
        try:
            outcome = await anyio.to_thread.run_sync(self._compute, group, limiter=self._limiter)
            self._deliver(members, outcome)
            if outcome.error is None:
                group.deps = outcome.deps
        finally:
            group.running = False
            if group.members and group.dirty:
                self._start(group)
            elif not group.members:
                self._discard(group)

    def _compute(self, group: _Group) -> _Outcome:
        """Run the group's query (in a worker thread)."""
        try:
            engine = self._instance.engine(group.app_id)
            self._listen(group.app_id, engine)
            basis = engine.last_tx_id()
            started = time.perf_counter()
            result, meta = engine.query_with_meta(group.q, group.actor, inference=group.inference)
            elapsed = int((time.perf_counter() - started) * 1000)
            deps = query_namespaces(engine.catalog, group.q) if group.actor.is_admin else None
        except ServerError as error:
            return _Outcome(error=error)
        except Exception:
            logger.exception("A live query failed on app %s", group.app_id)
            return _Outcome(error=ServerError(None, "crash"))
        digest = hashlib.sha256(_canonical([result, meta]).encode("utf-8")).digest()
        return _Outcome(basis, result, meta, digest, elapsed, deps)

    def _deliver(self, members: list[Subscription], outcome: _Outcome) -> None:
        for subscription in members:
            if not subscription.active:
                continue
            try:
                self._deliver_one(subscription, outcome)
            except Exception:  # one subscriber's failure must not starve the others
                logger.exception("Could not send a live query result")

    def _deliver_one(self, subscription: Subscription, outcome: _Outcome) -> None:
        if outcome.error is not None:
            self._deliver_error(subscription, outcome.error)
            return
        session = subscription.session
        if not subscription.answered:
            subscription.answered = True
            session.emit(
                {
                    "op": "add-query-ok",
                    "q": subscription.q,
                    "result": outcome.result,
                    "result-meta": outcome.meta,
                    "processed-tx-id": outcome.basis_tx,
                    "processed-isn": isn(outcome.basis_tx),
                    "client-event-id": subscription.client_event_id,
                }
            )
        elif outcome.digest != subscription.digest:
            session.emit(
                {
                    "op": "refresh-ok",
                    "processed-tx-id": outcome.basis_tx,
                    "processed-isn": isn(outcome.basis_tx),
                    "computations": [
                        {
                            "instaql-query": subscription.q,
                            "instaql-result": outcome.result,
                            "result-meta": outcome.meta,
                            "result-changed?": True,
                            "duration-ms": outcome.duration_ms,
                        }
                    ],
                    # Admin sessions always get attrs; no admin client reads them.
                    "attrs": [],
                }
            )
        subscription.digest = outcome.digest
        subscription.last_error = None

    def _deliver_error(self, subscription: Subscription, error: ServerError) -> None:
        session = subscription.session
        if not subscription.answered:
            # A query that fails at first is dropped from the session (section 1.4).
            original = {
                "op": "add-query",
                "q": subscription.q,
                "return-type": "tree",
                "client-event-id": subscription.client_event_id,
            }
            session.emit(_error_for(original, error))
            self._remove(subscription)
            return
        # A query that worked and now fails (its app was removed, say) reports each
        # distinct failure once, and sends the result again once it works.
        if subscription.last_error != error.message:
            subscription.last_error = error.message
            subscription.digest = None
            session.emit(_error_for({"op": "refresh", "q": subscription.q}, error))


def _error_for(original: dict[str, Any], error: ServerError) -> dict[str, Any]:
    if error.type is None and error.status == 500:
        return crash_event(original)
    return error_event(original, error)
