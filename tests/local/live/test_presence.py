"""Presence rooms (live-protocol section 4): join, set, leave and disconnect on session
transports, ``refresh-presence`` to the room's members, ``GET /admin/rooms/presence``
and the local-only route that sets presence directly."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.local.live.harness import Session, TestServer, admin_headers, client, eventually


async def presence(
    http: httpx.AsyncClient, server: TestServer, app: Any, room_id: str, **headers: str
) -> httpx.Response:
    return await http.get(
        server.base_url + "/admin/rooms/presence",
        params={"app_id": app.id, "room-type": "chat", "room-id": room_id},
        headers={"authorization": f"Bearer {app.admin_token}", **headers},
    )


def test_join_set_leave_and_disconnect(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            response = await http.post(
                server.base_url + "/admin/refresh_tokens",
                headers=admin_headers(app),
                json={"email": "ann@example.com"},
            )
            user = response.json()["user"]
            as_ann = {**admin_headers(app), "as-email": "ann@example.com"}
            async with (
                Session(server.base_url, http, app) as admin,
                Session(server.base_url, http, app, as_ann) as ann,
            ):
                assert (await presence(http, server, app, "r1")).json() == {"sessions": None}

                joined = await admin.send("join-room", **{"room-id": "r1", "room-type": "chat"})
                assert (await admin.next_op("join-room-ok")) == {
                    "op": "join-room-ok",
                    "room-id": "r1",
                    "client-event-id": joined,
                }
                first = await admin.next_op("refresh-presence")
                assert first["room-id"] == "r1"
                assert first["data"] == {
                    admin.id: {
                        "peer-id": admin.id,
                        "instance-id": "instantdb-local",
                        "user": None,
                        "data": {},
                    }
                }

                await ann.send("join-room", **{"room-id": "r1", "data": {"cursor": 1}})
                await ann.next_op("join-room-ok")
                for session in (admin, ann):
                    room = (await session.next_op("refresh-presence"))["data"]
                    assert set(room) == {admin.id, ann.id}
                    assert room[ann.id]["user"] == {"id": user["id"]}
                    assert room[ann.id]["data"] == {"cursor": 1}

                # Joining again keeps the presence already set.
                await ann.send("join-room", **{"room-id": "r1", "data": {"cursor": 99}})
                await ann.next_op("join-room-ok")
                assert (await ann.next_op("refresh-presence"))["data"][ann.id]["data"] == {
                    "cursor": 1
                }
                await admin.next_op("refresh-presence")

                await ann.send("set-presence", **{"room-id": "r1", "data": {"cursor": 2}})
                await ann.next_op("set-presence-ok")
                for session in (admin, ann):
                    room = (await session.next_op("refresh-presence"))["data"]
                    assert room[ann.id]["data"] == {"cursor": 2}

                body = (await presence(http, server, app, "r1")).json()
                assert set(body["sessions"]) == {admin.id, ann.id}
                assert body["sessions"][admin.id]["user"] is None
                expanded = body["sessions"][ann.id]["user"]
                # The full db-format record, as GET /admin/users returns it.
                by_id = await http.get(
                    server.base_url + "/admin/users",
                    params={"id": user["id"]},
                    headers=admin_headers(app),
                )
                assert expanded == by_id.json()["user"]
                assert expanded["email"] == "ann@example.com"

                left = await admin.send("leave-room", **{"room-id": "r1"})
                assert (await admin.next_op("leave-room-ok"))["client-event-id"] == left
                assert set((await ann.next_op("refresh-presence"))["data"]) == {ann.id}

                await admin.send("join-room", **{"room-id": "r1"})
                await admin.next_op("join-room-ok")
                await admin.next_op("refresh-presence")
                await ann.next_op("refresh-presence")
            # Both connections closed: their entries are gone and the room with them.
            await eventually(lambda: server.hub.rooms.sessions(app.id, "r1") is None)
            assert (await presence(http, server, app, "r1")).json() == {"sessions": None}

    asyncio.run(main())


def test_a_disconnect_refreshes_the_remaining_members(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as stays:
            await stays.send("join-room", **{"room-id": "r"})
            await stays.next_op("join-room-ok")
            await stays.next_op("refresh-presence")
            async with Session(server.base_url, http, app) as goes:
                await goes.send("join-room", **{"room-id": "r"})
                await goes.next_op("join-room-ok")
                assert set((await stays.next_op("refresh-presence"))["data"]) == {
                    stays.id,
                    goes.id,
                }
            assert set((await stays.next_op("refresh-presence"))["data"]) == {stays.id}

    asyncio.run(main())


def test_presence_errors_and_broadcasts(server):
    app = server.new_app()

    async def main() -> None:
        async with (
            client() as http,
            Session(server.base_url, http, app) as a,
            Session(server.base_url, http, app) as b,
        ):
            early = await a.send("set-presence", **{"room-id": "r", "data": {}})
            error = await a.next_op("error")
            assert error["client-event-id"] == early
            assert error["status"] == 400
            assert error["message"] == (
                "Validation failed for set-presence: You have not entered this room yet."
            )
            assert error["original-event"]["op"] == "set-presence"

            await a.send("join-room", **{"room-id": ""})
            assert (await a.next_op("error"))["original-event"]["op"] == "join-room"

            for session in (a, b):
                await session.send("join-room", **{"room-id": "r"})
                await session.next_op("join-room-ok")
            await a.next_op("refresh-presence")
            await a.next_op("refresh-presence")
            await b.next_op("refresh-presence")

            sent = await a.send("client-broadcast", **{"room-id": "r", "topic": "t", "data": [1]})
            assert (await a.next_op("client-broadcast-ok"))["client-event-id"] == sent
            assert await b.next_op("server-broadcast") == {
                "op": "server-broadcast",
                "room-id": "r",
                "topic": "t",
                "data": {"peer-id": a.id, "user": None, "data": [1]},
            }

    asyncio.run(main())


def test_the_presence_route_checks_its_parameters_and_the_admin_token(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            url = server.base_url + "/admin/rooms/presence"
            auth = {"authorization": f"Bearer {app.admin_token}"}
            missing_id = await http.get(
                url, params={"app_id": app.id, "room-type": "t"}, headers=auth
            )
            assert missing_id.status_code == 400
            assert missing_id.json()["type"] == "param-missing"
            assert missing_id.json()["hint"]["in"] == ["params", "room-id"]
            blank_type = await http.get(
                url, params={"app_id": app.id, "room-type": " ", "room-id": "r"}, headers=auth
            )
            assert blank_type.json()["hint"]["in"] == ["params", "room-type"]
            wrong_token = await http.get(
                url,
                params={"app_id": app.id, "room-type": "t", "room-id": "r"},
                headers={"authorization": f"Bearer {uuid.uuid4()}"},
            )
            assert wrong_token.status_code == 400
            assert wrong_token.json()["hint"]["record-type"] == "app-admin-token"
            # Impersonation headers do not replace the admin token on this route.
            as_guest = await http.get(
                url,
                params={"app_id": app.id, "room-type": "t", "room-id": "r"},
                headers={"as-guest": "true"},
            )
            assert as_guest.status_code == 400

    asyncio.run(main())


def test_the_local_presence_route_sets_and_removes_peers(server):
    app = server.new_app()
    other = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as watcher:
            await watcher.send("join-room", **{"room-id": "demo"})
            await watcher.next_op("join-room-ok")
            await watcher.next_op("refresh-presence")
            user = (
                await http.post(
                    server.base_url + "/admin/refresh_tokens",
                    headers=admin_headers(app),
                    json={"email": "bot@example.com"},
                )
            ).json()["user"]

            url = server.base_url + "/local/rooms/presence"
            put = await http.post(
                url,
                headers=admin_headers(app),
                json={"room-id": "demo", "data": {"typing": True}, "user-id": user["id"]},
            )
            assert put.status_code == 200, put.text
            peer = put.json()["peer-id"]
            room = (await watcher.next_op("refresh-presence"))["data"]
            assert room[peer]["data"] == {"typing": True}
            assert room[peer]["user"] == {"id": user["id"]}
            sessions = (await presence(http, server, app, "demo")).json()["sessions"]
            assert sessions[peer]["user"]["email"] == "bot@example.com"
            # Rooms belong to their app.
            assert (await presence(http, server, other, "demo")).json() == {"sessions": None}

            named = await http.post(
                url, headers=admin_headers(app), json={"room-id": "demo", "peer-id": "p2"}
            )
            assert named.json() == {"peer-id": "p2"}
            assert set((await watcher.next_op("refresh-presence"))["data"]) == {
                watcher.id,
                peer,
                "p2",
            }
            # A live session's entry is its own to change.
            refused = await http.post(
                url, headers=admin_headers(app), json={"room-id": "demo", "peer-id": watcher.id}
            )
            assert refused.status_code == 400

            removed = await http.delete(
                url, params={"room-id": "demo", "peer-id": peer}, headers=admin_headers(app)
            )
            assert removed.json() == {"removed": True}
            assert set((await watcher.next_op("refresh-presence"))["data"]) == {watcher.id, "p2"}
            again = await http.delete(
                url, params={"room-id": "demo", "peer-id": peer}, headers=admin_headers(app)
            )
            assert again.json() == {"removed": False}

            no_room = await http.post(url, headers=admin_headers(app), json={"data": {}})
            assert no_room.status_code == 400
            assert no_room.json()["type"] == "param-missing"
            no_token = await http.post(url, headers={"app-id": app.id}, json={"room-id": "x"})
            assert no_token.status_code == 400

    asyncio.run(main())
