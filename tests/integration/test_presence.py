"""Presence end to end: peers put in a room on the local server, read back with the SDK's
``db.rooms.get_presence`` (both clients).

The SDK has no way to join a room (neither has the official one), so rooms are filled
the two ways the local server offers: its local-only ``POST /local/rooms/presence``
route, and a raw ``/admin/sse`` session that pushes ``join-room`` as a realtime client
would (live-protocol section 4). Leaving and disconnecting must empty the room again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from instantdb_local.instance import AppCredentials
from tests.integration._live import WAIT, wait_until
from tests.integration.conftest import Driven

USERS_SCHEMA = {
    "attrs": {"$users": {"nickname": {"type": "string", "unique": False, "indexed": False}}},
    "links": {},
}


def admin_headers(app: AppCredentials, **extra: str) -> dict[str, str]:
    return {"app-id": app.app_id, "authorization": f"Bearer {app.admin_token}", **extra}


class RawSession:
    """A realtime client's session on ``/admin/sse``, driven message by message."""

    def __init__(self, app: AppCredentials, **identity: str) -> None:
        self._app = app
        self._http = httpx.Client(base_url=app.api_uri, timeout=WAIT)
        self._response = self._http.send(
            self._http.build_request(
                "POST",
                "/admin/sse",
                params={"app_id": app.app_id},
                headers=admin_headers(app, **identity),
                json={"inference?": False, "versions": {}},
            ),
            stream=True,
        )
        assert self._response.status_code == 200, self._response.read()
        self._lines: Iterator[str] = self._response.iter_lines()
        init = self.next_op("sse-init")
        self.id: str = init["session-id"]
        self._ids = {
            "machine_id": init["machine-id"],
            "session_id": init["session-id"],
            "sse_token": init["sse-token"],
        }
        self._events = 0

    def next_op(self, op: str) -> dict[str, Any]:
        """The next event with this ``op`` (others, like ``refresh-presence``, skipped)."""
        for line in self._lines:  # bounded: the read timeout fails a silent stream
            if line.startswith("data:"):
                event: dict[str, Any] = json.loads(line[len("data:") :])
                if event.get("op") == op:
                    return event
                assert event.get("op") != "error", event
        raise AssertionError(f"the session ended before {op!r}")

    def push(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one message and return the server's answer to it."""
        self._events += 1
        event_id = f"e{self._events}"
        answer = self._http.post(
            "/admin/sse/push",
            params={"app_id": self._app.app_id},
            json={**self._ids, "messages": [{"client-event-id": event_id, "op": op, **fields}]},
        )
        assert answer.status_code == 200, answer.text
        reply = self.next_op(f"{op}-ok")
        assert reply["client-event-id"] == event_id
        return reply

    def close(self) -> None:
        self._response.close()
        self._http.close()


@pytest.fixture
def user(db: Driven) -> dict[str, Any]:
    db.auth.create_token(email="present@example.com", extra_fields={"nickname": "pat"})
    found = db.auth.get_user(email="present@example.com")
    assert found is not None
    return dict(found)


@pytest.mark.instant_app(schema=USERS_SCHEMA)
def test_a_peer_put_through_the_local_route_is_read_back_with_its_user(
    db: Driven, instant_app: AppCredentials, user: dict[str, Any]
) -> None:
    local = httpx.Client(base_url=instant_app.api_uri, headers=admin_headers(instant_app))
    try:
        with_user = local.post(
            "/local/rooms/presence",
            json={"room-id": "lobby", "data": {"cursor": [1, 2]}, "user-id": user["id"]},
        ).json()["peer-id"]
        anonymous = local.post(
            "/local/rooms/presence", json={"room-id": "lobby", "peer-id": "bot"}
        ).json()["peer-id"]
        assert anonymous == "bot"

        presence = db.rooms.get_presence("chat", "lobby")
        assert set(presence) == {with_user, "bot"}
        entry = presence[with_user]
        assert entry["peer-id"] == with_user
        assert entry["data"] == {"cursor": [1, 2]}
        assert entry["user"]["id"] == user["id"]
        assert entry["user"]["email"] == "present@example.com"
        assert entry["user"]["nickname"] == "pat"
        assert presence["bot"]["user"] is None
        assert presence["bot"]["data"] == {}
        # Reading presence always runs as admin, also from an impersonating client.
        assert db.as_user(guest=True).rooms.get_presence("chat", "lobby") == presence
        # Another room, or another room id, is empty.
        assert db.rooms.get_presence("chat", "elsewhere") == {}

        for peer in (with_user, "bot"):
            removed = local.delete(
                "/local/rooms/presence", params={"room-id": "lobby", "peer-id": peer}
            )
            assert removed.json() == {"removed": True}
        assert db.rooms.get_presence("chat", "lobby") == {}
    finally:
        local.close()


@pytest.mark.instant_app(schema=USERS_SCHEMA)
def test_a_session_is_present_from_join_until_it_leaves_or_disconnects(
    db: Driven, instant_app: AppCredentials, user: dict[str, Any]
) -> None:
    member = RawSession(instant_app, **{"as-email": "present@example.com"})
    admin = RawSession(instant_app)
    try:
        member.push("join-room", **{"room-id": "doc-1", "room-type": "doc", "data": {"x": 1}})
        admin.push("join-room", **{"room-id": "doc-1", "room-type": "doc"})
        presence = db.rooms.get_presence("doc", "doc-1")
        assert set(presence) == {member.id, admin.id}
        assert presence[member.id]["user"]["email"] == "present@example.com"
        assert presence[member.id]["user"]["nickname"] == "pat"
        assert presence[member.id]["data"] == {"x": 1}
        assert presence[admin.id]["user"] is None  # a plain admin session has no user

        member.push("set-presence", **{"room-id": "doc-1", "data": {"x": 2, "typing": True}})
        assert db.rooms.get_presence("doc", "doc-1")[member.id]["data"] == {"x": 2, "typing": True}

        member.push("leave-room", **{"room-id": "doc-1"})
        assert set(db.rooms.get_presence("doc", "doc-1")) == {admin.id}

        # Joining again, then dropping the connection without leaving.
        member.push("join-room", **{"room-id": "doc-1", "room-type": "doc"})
        assert set(db.rooms.get_presence("doc", "doc-1")) == {member.id, admin.id}
        member.close()
        wait_until(
            lambda: set(db.rooms.get_presence("doc", "doc-1")) == {admin.id},
            "the disconnected session leaving the room",
        )
        admin.close()
        wait_until(lambda: db.rooms.get_presence("doc", "doc-1") == {}, "the room becoming empty")
    finally:
        member.close()
        admin.close()
