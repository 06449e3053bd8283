"""``POST /admin/sse/push`` (live-protocol section 2.2): authenticated by session id and
token alone, ops handled in order, ``client-event-id`` echoed, unknown ops refused."""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.local.live.harness import Session, client, eventually, query


def test_push_is_authenticated_by_the_session_token(server):
    app = server.new_app()
    other = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as session:
            url = f"{server.base_url}/admin/sse/push"
            good = {
                "machine_id": session.init["machine-id"],
                "session_id": session.id,
                "sse_token": session.init["sse-token"],
                "messages": [],
            }
            ok = await http.post(f"{url}?app_id={app.id}", json=good)
            assert (ok.status_code, ok.json()) == (200, {})

            wrong_token = str(uuid.uuid4())
            cases = [
                ({**good, "sse_token": wrong_token}, app.id),
                ({**good, "sse_token": "not-a-uuid"}, app.id),
                ({**good, "session_id": str(uuid.uuid4())}, app.id),
                (good, other.id),  # the session belongs to another app
            ]
            for body, app_id in cases:
                response = await http.post(f"{url}?app_id={app_id}", json=body)
                assert response.status_code == 400, response.text
                error = response.json()
                assert error["type"] == "session-missing"
                assert error["message"] == f"Session missing for id: {body['session_id']}"
                assert error["hint"] == {"sess-id": body["session_id"]}
                # The token is a credential: never echoed.
                assert session.init["sse-token"] not in response.text
                assert wrong_token not in response.text

            missing_app = await http.post(url, json=good)
            assert missing_app.status_code == 400
            assert missing_app.json()["type"] == "param-missing"
            assert missing_app.json()["hint"]["in"] == ["query-params", "app_id"]
            # The app-id header is not enough here: the real server reads the query string.
            header_only = await http.post(url, json=good, headers={"app-id": app.id})
            assert header_only.json()["type"] == "param-missing"

            for name in ("machine_id", "session_id", "sse_token", "messages"):
                body = {k: v for k, v in good.items() if k != name}
                response = await http.post(f"{url}?app_id={app.id}", json=body)
                assert response.status_code == 400
                assert response.json()["type"] == "param-missing"
                assert response.json()["hint"]["in"] == ["body", name]

            not_messages = await http.post(
                f"{url}?app_id={app.id}", json={**good, "messages": [1, 2]}
            )
            assert not_messages.status_code == 400
            assert not_messages.json()["type"] == "param-malformed"

    asyncio.run(main())


def test_ops_run_in_order_and_echo_their_client_event_ids(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as session:
            # One batch of several messages, the way the JS client sends them.
            response = await session.push(
                {"client-event-id": "a", "op": "join-room", "room-id": "r", "data": {"n": 1}},
                {"client-event-id": "b", "op": "no-such-op", "x": 1},
                {"client-event-id": "c", "op": "set-presence", "room-id": "r", "data": {"n": 2}},
                {"client-event-id": "d", "op": "leave-room", "room-id": "r"},
            )
            assert response.status_code == 200
            seen = []
            while len(seen) < 6:
                event = await session.next()
                seen.append((event["op"], event.get("client-event-id")))
                if event["op"] == "error":
                    assert event["status"] == 400
                    assert event["type"] == "param-malformed"
                    assert event["message"] == "Invalid op"
                    assert event["hint"] == {"op": "no-such-op"}
                    assert event["original-event"] == {
                        "client-event-id": "b",
                        "op": "no-such-op",
                        "x": 1,
                    }
            assert seen == [
                ("join-room-ok", "a"),
                ("refresh-presence", None),
                ("error", "b"),
                ("set-presence-ok", "c"),
                ("refresh-presence", None),
                ("leave-room-ok", "d"),
            ]

    asyncio.run(main())


def test_add_query_remove_query_and_transact_over_push(server):
    app = server.new_app()
    goal = str(uuid.uuid4())

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as session:
            add = await session.send("add-query", q={"goals": {}}, **{"return-type": "tree"})
            added = await session.next_op("add-query-ok")
            assert added["client-event-id"] == add
            assert added["result"] == {"goals": []}

            again = await session.send("add-query", q={"goals": {}})
            exists = await session.next_op("add-query-exists")
            assert exists["client-event-id"] == again

            steps = [["update", "goals", goal, {"title": "from push"}]]
            await session.send("transact", **{"tx-steps": steps})
            # The write's own refresh and its ack may come in either order.
            events = {(await session.next())["op"]: None for _ in range(2)}
            assert set(events) == {"transact-ok", "refresh-ok"}
            assert (await query(http, server.base_url, app, {"goals": {}}))["goals"][0][
                "id"
            ] == goal

            bad = await session.send("transact", **{"tx-steps": "nope"})
            error = await session.next_op("error")
            assert error["client-event-id"] == bad
            assert error["original-event"]["op"] == "transact"

            removed = await session.send("remove-query", q={"goals": {}})
            assert (await session.next_op("remove-query-ok"))["client-event-id"] == removed
            steps = [["update", "goals", goal, {"title": "unwatched"}]]
            await session.send("transact", **{"tx-steps": steps})
            assert (await session.next())["op"] == "transact-ok"
            await session.stream.expect_quiet(0.4)

    asyncio.run(main())


def test_a_closed_session_is_forgotten(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            async with Session(server.base_url, http, app) as session:
                pass
            await eventually(lambda: session.id not in {s.id for s in server.hub.sessions.all()})
            response = await session.push({"client-event-id": "x", "op": "join-room"})
            assert response.status_code == 400
            assert response.json()["type"] == "session-missing"

    asyncio.run(main())


def test_a_push_cut_off_mid_body_queues_nothing_and_logs_no_error(server, caplog):
    app = server.new_app()

    async def main() -> None:
        async with client() as http, Session(server.base_url, http, app) as session:
            host, port = server.base_url.removeprefix("http://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
            ids = {
                "machine_id": session.init["machine-id"],
                "session_id": session.id,
                "sse_token": session.init["sse-token"],
            }
            body = json.dumps(ids).encode()[:-1] + b',"messages":[{"op":"join-'
            head = (
                f"POST /admin/sse/push?app_id={app.id} HTTP/1.1\r\nhost: {host}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body) + 100}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            writer.close()  # gone before the rest of the body
            await writer.wait_closed()
            await session.stream.expect_quiet(0.3)
            # The session still works.
            await session.send("join-room", **{"room-id": "r"})
            await session.next_op("join-room-ok")

    with caplog.at_level("ERROR", logger="instantdb_local"):
        asyncio.run(main())
    assert not [r for r in caplog.records if "Unexpected error" in r.getMessage()]
