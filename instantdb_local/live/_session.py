"""Sessions: one per SSE connection, found again by the push endpoint (section 2.2).

A session is created by ``POST /admin/subscribe-query`` or ``POST /admin/sse``, is
announced with ``sse-init {machine-id, session-id, sse-token}``, and lives until its
connection closes. Pushes name it by id and prove it with the token; only the token's
SHA-256 is kept, as on the real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from instantdb_local.engine import Actor

from ._sse import Outbox, encode_event


def hash_token(token: str) -> bytes:
    """SHA-256 over the token UUID's 16 bytes (how the real server stores it)."""
    return hashlib.sha256(uuid.UUID(token).bytes).digest()


class Inbox:
    """A session's pushed messages, in arrival order; None ends the queue.

    Unlike `asyncio.Queue`, it lets the handler of one message take the messages queued
    right behind it (`take_while`): the appends of a push are stored together, with one
    fsync. Event loop only; one consumer.
    """

    def __init__(self) -> None:
        self._items: deque[dict[str, Any] | None] = deque()
        self._ready = asyncio.Event()

    def put_nowait(self, item: dict[str, Any] | None) -> None:
        self._items.append(item)
        self._ready.set()

    async def get(self) -> dict[str, Any] | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def take_while(self, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The messages at the head of the queue, removed, for as long as ``wanted``
        accepts them (never past the end marker)."""
        taken: list[dict[str, Any]] = []
        while self._items:
            head = self._items[0]
            if head is None or not wanted(head):
                break
            taken.append(head)
            self._items.popleft()
        return taken

    def __len__(self) -> int:
        return len(self._items)


@dataclass(eq=False)
class Session:
    """One live connection. Touched only from the event loop."""

    id: str
    app_id: str
    actor: Actor
    token_hash: bytes = field(repr=False)
    # Whether queries on this session ask for `inference?` results.
    inference: bool
    # Where the client reached this server; stream file URLs are built on it.
    base_url: str
    outbox: Outbox = field(default_factory=Outbox, repr=False)
    # Pushed messages, handled one at a time in arrival order; None ends the queue.
    inbox: Inbox = field(default_factory=Inbox, repr=False)
    closed: bool = False

    def emit(self, message: Mapping[str, Any]) -> None:
        """Queue one event for this session's stream (dropped once it has closed)."""
        if not self.closed:
            self.outbox.put(encode_event(message))

    @property
    def user_ref(self) -> dict[str, Any] | None:
        """``{"id": user id}`` for impersonated users; None for admins and guests."""
        user = self.actor.user
        return {"id": user["id"]} if user is not None else None


class SessionRegistry:
    """The open sessions of one server, by id."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(
        self, app_id: str, actor: Actor, *, inference: bool, base_url: str
    ) -> tuple[Session, str]:
        """A new session and its token (the only time the token exists in clear)."""
        token = str(uuid.uuid4())
        session = Session(
            id=str(uuid.uuid4()),
            app_id=app_id,
            actor=actor,
            token_hash=hash_token(token),
            inference=inference,
            base_url=base_url,
        )
        self._sessions[session.id] = session
        return session, token

    def find(self, session_id: str, token: str, app_id: str) -> Session | None:
        """The session, if the token is its token and it belongs to ``app_id``."""
        session = self._sessions.get(session_id)
        try:
            given = hash_token(token)
        except ValueError:
            return None
        # Compared in constant time; a wrong token and an unknown id look the same.
        if session is None or not hmac.compare_digest(session.token_hash, given):
            return None
        return session if session.app_id == app_id else None

    def remove(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)
