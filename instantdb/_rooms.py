"""``db.rooms`` for both clients."""

from __future__ import annotations

from typing import Any

from ._protocol import rooms
from ._settings import Settings
from ._transport import AsyncTransport, SyncTransport

__all__ = ["AsyncRooms", "Rooms"]


class Rooms:
    """Presence in rooms (blocking)."""

    def __init__(self, settings: Settings, transport: SyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    def get_presence(self, room_type: str, room_id: str) -> dict[str, Any]:
        """``{session id: {"data": ..., "peer-id": ..., "user": ...}}``; ``{}`` if empty."""
        return self._transport.run(rooms.get_presence_call(self._settings, room_type, room_id))


class AsyncRooms:
    """Presence in rooms (asyncio)."""

    def __init__(self, settings: Settings, transport: AsyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    async def get_presence(self, room_type: str, room_id: str) -> dict[str, Any]:
        """``{session id: {"data": ..., "peer-id": ..., "user": ...}}``; ``{}`` if empty."""
        call = rooms.get_presence_call(self._settings, room_type, room_id)
        return await self._transport.run(call)
