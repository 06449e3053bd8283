"""Presence rooms (live-protocol section 4): who is in a room, and with what data.

Rooms are keyed by (app id, room id); the room type is ignored, as on the real server.
Each member is a peer: a session that joined, or a peer set through the local-only
presence route. After every change each member session gets the room's full map in a
``refresh-presence`` event, which every client accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._session import Session
from ._wire import op_error

# What the real server reports as the peer's server instance.
INSTANCE_ID = "instantdb-local"


@dataclass(eq=False)
class _Peer:
    user: dict[str, Any] | None  # {"id": ...} or None
    data: Any
    session: Session | None  # None for peers set through the local route

    def entry(self, peer_id: str) -> dict[str, Any]:
        return {
            "peer-id": peer_id,
            "instance-id": INSTANCE_ID,
            "user": copy.deepcopy(self.user),
            "data": copy.deepcopy(self.data),
        }


class Rooms:
    """Every room of one server. Event loop only."""

    def __init__(self) -> None:
        self._rooms: dict[tuple[str, str], dict[str, _Peer]] = {}
        self._joined: dict[str, set[str]] = {}  # session id -> room ids

    # -- session ops ----------------------------------------------------------------------

    def join(self, session: Session, message: Mapping[str, Any]) -> None:
        room_id = _room_id("join-room", message)
        data = message.get("data")
        if data is not None and not isinstance(data, dict):
            raise op_error("join-room", message, "data must be an object.")
        room = self._rooms.setdefault((session.app_id, room_id), {})
        # Joining again keeps the presence already set.
        if session.id not in room:
            room[session.id] = _Peer(session.user_ref, data or {}, session)
        self._joined.setdefault(session.id, set()).add(room_id)
        session.emit(_ack("join-room-ok", room_id, message))
        self._refresh(session.app_id, room_id)

    def set_presence(self, session: Session, message: Mapping[str, Any]) -> None:
        room_id = _room_id("set-presence", message)
        data = message.get("data")
        if not isinstance(data, dict):
            raise op_error("set-presence", message, "data must be an object.")
        peer = self._rooms.get((session.app_id, room_id), {}).get(session.id)
        if peer is None:
            raise op_error("set-presence", message, "You have not entered this room yet.")
        peer.data = data
        session.emit(_ack("set-presence-ok", room_id, message))
        self._refresh(session.app_id, room_id)

    def leave(self, session: Session, message: Mapping[str, Any]) -> None:
        room_id = _room_id("leave-room", message)
        self._remove(session.app_id, room_id, session.id)
        self._joined.get(session.id, set()).discard(room_id)
        session.emit(_ack("leave-room-ok", room_id, message))

    def broadcast(self, session: Session, message: Mapping[str, Any]) -> None:
        room_id = _room_id("client-broadcast", message)
        topic = message.get("topic")
        if not isinstance(topic, str):
            raise op_error("client-broadcast", message, "topic must be a string.")
        room = self._rooms.get((session.app_id, room_id), {})
        if session.id not in room:
            raise op_error("client-broadcast", message, "You have not entered this room yet.")
        event = {
            "op": "server-broadcast",
            "room-id": room_id,
            "topic": topic,
            "data": {"peer-id": session.id, "user": session.user_ref, "data": message.get("data")},
        }
        for peer_id, peer in room.items():
            if peer_id != session.id and peer.session is not None:
                peer.session.emit(event)
        session.emit(_ack("client-broadcast-ok", room_id, message))

    def drop_session(self, session: Session) -> None:
        for room_id in self._joined.pop(session.id, set()):
            self._remove(session.app_id, room_id, session.id)

    # -- reading and the local route --------------------------------------------------------

    def sessions(self, app_id: str, room_id: str) -> dict[str, dict[str, Any]] | None:
        """The room's map (``peer-id``, ``instance-id``, ``user``, ``data``), None if empty."""
        room = self._rooms.get((app_id, room_id))
        if not room:
            return None
        return {peer_id: peer.entry(peer_id) for peer_id, peer in room.items()}

    def set_local(
        self, app_id: str, room_id: str, peer_id: str, data: Any, user_id: str | None
    ) -> None:
        """Put or update a peer with no session (the local-only presence route)."""
        room = self._rooms.setdefault((app_id, room_id), {})
        existing = room.get(peer_id)
        if existing is not None and existing.session is not None:
            raise op_error(
                "presence",
                {"room-id": room_id, "peer-id": peer_id},
                "That peer id is a live session; it sets its own presence.",
            )
        user = {"id": user_id} if user_id is not None else None
        room[peer_id] = _Peer(user, data, None)
        self._refresh(app_id, room_id)

    def remove_local(self, app_id: str, room_id: str, peer_id: str) -> bool:
        peer = self._rooms.get((app_id, room_id), {}).get(peer_id)
        if peer is None or peer.session is not None:
            return False
        self._remove(app_id, room_id, peer_id)
        return True

    # -- internals --------------------------------------------------------------------------

    def _remove(self, app_id: str, room_id: str, peer_id: str) -> None:
        room = self._rooms.get((app_id, room_id))
        if room is None or room.pop(peer_id, None) is None:
            return
        if not room:
            del self._rooms[(app_id, room_id)]
            return
        self._refresh(app_id, room_id)

    def _refresh(self, app_id: str, room_id: str) -> None:
        data = self.sessions(app_id, room_id) or {}
        event = {"op": "refresh-presence", "room-id": room_id, "data": data}
        for peer in self._rooms.get((app_id, room_id), {}).values():
            if peer.session is not None:
                peer.session.emit(event)


def _room_id(op: str, message: Mapping[str, Any]) -> str:
    room_id = message.get("room-id")
    if not isinstance(room_id, str) or not room_id.strip():
        raise op_error(op, message, "room-id must be a non-blank string.")
    return room_id


def _ack(op: str, room_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
    return {"op": op, "room-id": room_id, "client-event-id": message.get("client-event-id")}
