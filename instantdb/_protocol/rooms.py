"""``db.rooms``: reading presence (wire protocol §10)."""

from __future__ import annotations

from typing import Any

from instantdb._arguments import required_text
from instantdb._retry import RetrySafety
from instantdb._settings import Settings

from ._call import Call, Response, admin_only_headers, json_request
from ._responses import json_object

__all__ = ["get_presence_call"]


def get_presence_call(settings: Settings, room_type: str, room_id: str) -> Call[dict[str, Any]]:
    """``GET /admin/rooms/presence``: ``{session id: {"data", "peer-id", "user", ...}}``.

    Always runs as admin, also from an ``as_user`` client. An empty room gives ``{}``.
    """
    params = (
        ("room-type", required_text(room_type, "get_presence(): room_type", strip=False)),
        ("room-id", required_text(room_id, "get_presence(): room_id", strip=False)),
    )
    request = json_request(
        "GET",
        "/admin/rooms/presence",
        settings,
        headers=admin_only_headers(settings, "db.rooms.get_presence()"),
        params=params,
    )

    def parse(response: Response) -> dict[str, Any]:
        sessions = json_object(response, request).get("sessions")
        return sessions if isinstance(sessions, dict) else {}

    return Call(request, parse, RetrySafety.IDEMPOTENT)
