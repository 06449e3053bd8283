"""The live side of one server: sessions, and the ops their pushes carry.

`LiveHub` owns the session registry and the three features a session can use (live
queries, streams, presence rooms) and runs each session's pushed messages one at a
time, in arrival order (a stricter form of the real server's per-key ordering, which
section 2.2 allows). Everything here runs on the server's event loop; blocking work
goes to worker threads inside the features.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from instantdb_local import errors
from instantdb_local.engine import Actor
from instantdb_local.errors import ServerError
from instantdb_local.instance import Instance

from ._presence import Rooms
from ._queries import LiveQueries
from ._session import Session, SessionRegistry
from ._sse import EventStream
from ._streams import LiveStreams
from ._wire import crash_event, error_event, isn, op_error

logger = logging.getLogger("instantdb_local")

Op = Callable[[Session, Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class LiveSettings:
    """How the live side behaves; the defaults are the real server's."""

    # A `:` comment line is written after this long without another event.
    keepalive_seconds: float = 15.0
    # Live queries recomputed at the same time, across the whole server.
    query_workers: int = 4

    def __post_init__(self) -> None:
        if not self.keepalive_seconds > 0:
            raise ValueError(f"keepalive_seconds must be positive, got {self.keepalive_seconds}")
        if self.query_workers < 1:
            raise ValueError(f"query_workers must be at least 1, got {self.query_workers}")


class LiveHub:
    """Sessions and their features for one `Instance`. Create it on the event loop."""

    def __init__(self, instance: Instance, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self.instance = instance
        self.loop = asyncio.get_running_loop()
        self.machine_id = str(uuid.uuid4())
        self.sessions = SessionRegistry()
        self.queries = LiveQueries(instance, workers=self.settings.query_workers)
        self.streams = LiveStreams(instance, machine_id=self.machine_id)
        self.rooms = Rooms()
        # Set by close(final=True): the server is stopping; no session may start now.
        self.closed = False
        # Each session's queue runner; kept referenced so it is not garbage collected.
        self._inbox_tasks: dict[str, asyncio.Future[None]] = {}
        self._ops: dict[str, Op] = {
            "add-query": self._add_query,
            "remove-query": self._remove_query,
            "transact": self._transact,
            "start-stream": self.streams.start,
            "append-stream": self.streams.append,
            "subscribe-stream": self.streams.subscribe,
            "unsubscribe-stream": self.streams.unsubscribe,
            "join-room": _sync(self.rooms.join),
            "leave-room": _sync(self.rooms.leave),
            "set-presence": _sync(self.rooms.set_presence),
            "client-broadcast": _sync(self.rooms.broadcast),
        }

    # -- sessions -------------------------------------------------------------------------

    def open_session(
        self, app_id: str, actor: Actor, *, inference: bool, base_url: str
    ) -> tuple[Session, EventStream]:
        """A new session announced with ``sse-init``, and the response that streams it.

        Refused with a 503 once the hub closed for good: a client reconnecting at once
        (on a connection still open) would otherwise get a session that holds the
        stopping server until its graceful shutdown runs out.
        """
        if self.closed:
            raise ServerError(
                None, "The server is shutting down; reconnect to it later.", status=503
            )
        session, token = self.sessions.open(
            app_id, actor, inference=inference, base_url=base_url.rstrip("/")
        )
        session.emit(
            {
                "op": "sse-init",
                "machine-id": self.machine_id,
                "session-id": session.id,
                "sse-token": token,
            }
        )
        task = asyncio.ensure_future(self._run_inbox(session))
        self._inbox_tasks[session.id] = task
        task.add_done_callback(lambda _: self._inbox_tasks.pop(session.id, None))
        response = EventStream(
            session.outbox,
            keepalive_seconds=self.settings.keepalive_seconds,
            on_close=lambda: self.close_session(session),
        )
        return session, response

    def subscribe_query(self, session: Session, q: Any) -> None:
        """The synthetic ``add-query`` of ``/admin/subscribe-query``."""
        self.queries.subscribe(session, q, str(uuid.uuid4()))

    def close_session(self, session: Session) -> None:
        """Release everything the session held. Idempotent."""
        if session.closed:
            return
        session.closed = True
        session.outbox.close()
        self.sessions.remove(session)
        # The message being handled finishes (an append half done would leave the
        # stream's bytes and its offset out of step); the ones queued after it are dropped.
        session.inbox.put_nowait(None)
        self.queries.drop_session(session)
        self.streams.drop_session(session)
        self.rooms.drop_session(session)

    def close(self, *, final: bool = False) -> None:
        """End every open session's stream (clients see the connection end); with
        ``final``, also refuse the sessions clients open from then on."""
        self.closed = self.closed or final
        for session in self.sessions.all():
            self.close_session(session)
        self.queries.close()

    # -- pushes ---------------------------------------------------------------------------

    def find_session(self, session_id: str, token: str, app_id: str) -> Session:
        session = self.sessions.find(session_id, token, app_id)
        if session is None:
            raise ServerError(
                "session-missing",
                f"Session missing for id: {session_id}",
                {"sess-id": session_id},
            )
        return session

    def push(self, session: Session, messages: list[dict[str, Any]]) -> None:
        """Queue messages for the session; their results arrive on its stream."""
        for message in messages:
            session.inbox.put_nowait(message)

    async def _run_inbox(self, session: Session) -> None:
        while True:
            message = await session.inbox.get()
            if message is None or session.closed:
                return
            try:
                await self._dispatch(session, message)
            except Exception:
                # Even a failure to report a failure must not stop the session's queue.
                logger.exception("The live op %r could not be answered", message.get("op"))

    async def _dispatch(self, session: Session, message: dict[str, Any]) -> None:
        op = message.get("op")
        handler = self._ops.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise ServerError("param-malformed", "Invalid op", {"op": op})
            await handler(session, message)
        except ServerError as error:
            session.emit(error_event(message, error))
        except Exception:
            logger.exception("The live op %r failed", op)
            session.emit(crash_event(message))

    # -- query and transact ops (section 1.7) ---------------------------------------------

    async def _add_query(self, session: Session, message: Mapping[str, Any]) -> None:
        q = message.get("q")
        if not isinstance(q, dict):
            raise errors.param_malformed(["q"], q)
        event_id = str(message.get("client-event-id") or uuid.uuid4())
        if self.queries.subscribe(session, q, event_id) is None:
            session.emit({"op": "add-query-exists", "q": q, "client-event-id": event_id})

    async def _remove_query(self, session: Session, message: Mapping[str, Any]) -> None:
        q = message.get("q")
        self.queries.unsubscribe(session, q)
        session.emit(
            {"op": "remove-query-ok", "q": q, "client-event-id": message.get("client-event-id")}
        )

    async def _transact(self, session: Session, message: Mapping[str, Any]) -> None:
        steps = message.get("tx-steps")
        if not isinstance(steps, list):
            raise op_error("transact", message, "tx-steps must be a list of steps.")
        engine = await anyio.to_thread.run_sync(self.instance.engine, session.app_id)
        tx_id = await anyio.to_thread.run_sync(lambda: engine.transact(steps, session.actor))
        session.emit(
            {
                "op": "transact-ok",
                "tx-id": tx_id,
                "isn": isn(tx_id),
                "client-event-id": message.get("client-event-id"),
            }
        )


def _sync(handler: Callable[[Session, Mapping[str, Any]], None]) -> Op:
    async def run(session: Session, message: Mapping[str, Any]) -> None:
        handler(session, message)

    return run
