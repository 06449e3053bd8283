"""``POST /admin/subscribe-query`` (live-protocol sections 1 and 6.1): the initial
result, refreshes after other clients' writes and only when the result changed,
coalescing, permissions, and errors before and inside the stream."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx

from instantdb_local.live import isn
from tests.local.live.harness import (
    EventStream,
    TestServer,
    admin_headers,
    client,
    eventually,
    query,
    transact,
)

BODY_EXTRAS = {"inference?": False, "versions": {"@instantdb/admin": "t", "@instantdb/core": "t"}}


def subscribe(
    http: httpx.AsyncClient, server: TestServer, headers: dict[str, str], q: Any
) -> EventStream:
    return EventStream(
        http,
        f"{server.base_url}/admin/subscribe-query?local_connection_id={uuid.uuid4()}",
        headers=headers,
        body={"query": q, **BODY_EXTRAS},
    )


def ids() -> tuple[str, str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


def test_initial_result_then_a_refresh_after_another_clients_write(server):
    app = server.new_app()
    g1, g2, _ = ids()

    async def main() -> None:
        async with client() as http:
            tx1 = await transact(
                http, server.base_url, app, [["update", "goals", g1, {"title": "first"}]]
            )
            async with subscribe(http, server, admin_headers(app), {"goals": {}}) as stream:
                init = await stream.next_op("sse-init")
                added = await stream.next_op("add-query-ok")
                assert added["q"] == {"goals": {}}
                assert added["result"] == {"goals": [{"id": g1, "title": "first"}]}
                assert added["result-meta"] == {"page-info": {}, "aggregate": {}}
                assert added["processed-tx-id"] == tx1
                assert added["processed-isn"] == isn(tx1)
                assert uuid.UUID(added["client-event-id"])

                tx2 = await transact(
                    http, server.base_url, app, [["update", "goals", g2, {"title": "second"}]]
                )
                refresh = await stream.next_op("refresh-ok")
                assert refresh["processed-tx-id"] == tx2
                assert refresh["processed-isn"] == isn(tx2)
                assert refresh["attrs"] == []
                [computation] = refresh["computations"]
                assert computation["instaql-query"] == {"goals": {}}
                assert computation["instaql-result"] == await query(
                    http, server.base_url, app, {"goals": {}}
                )
                assert len(computation["instaql-result"]["goals"]) == 2
                assert computation["result-meta"] == {"page-info": {}, "aggregate": {}}
                assert computation["result-changed?"] is True

            # A reconnect is a new session with a new full result.
            async with subscribe(http, server, admin_headers(app), {"goals": {}}) as again:
                second_init = await again.next_op("sse-init")
                assert second_init["session-id"] != init["session-id"]
                assert second_init["machine-id"] == init["machine-id"]
                assert len((await again.next_op("add-query-ok"))["result"]["goals"]) == 2

    asyncio.run(main())


def test_no_refresh_for_an_unrelated_or_unchanged_write(server):
    app = server.new_app()
    g1, other, _ = ids()

    async def main() -> None:
        async with client() as http:
            await transact(http, server.base_url, app, [["update", "goals", g1, {"title": "same"}]])
            async with subscribe(http, server, admin_headers(app), {"goals": {}}) as stream:
                await stream.next_op("sse-init")
                await stream.next_op("add-query-ok")
                # Another namespace, and a write that leaves the result as it was.
                await transact(http, server.base_url, app, [["update", "notes", other, {"x": 1}]])
                await transact(
                    http, server.base_url, app, [["update", "goals", g1, {"title": "same"}]]
                )
                await stream.expect_quiet(0.6)
                # The stream is alive: a real change still arrives, and it is the next event.
                await transact(
                    http, server.base_url, app, [["update", "goals", g1, {"title": "new"}]]
                )
                refresh = await stream.next_op("refresh-ok")
                assert refresh["computations"][0]["instaql-result"]["goals"][0]["title"] == "new"
                await stream.expect_quiet(0.3)

    asyncio.run(main())


def test_nested_links_and_dotted_where_paths_are_followed(server):
    app = server.new_app()
    goal, todo, _ = ids()

    async def main() -> None:
        async with client() as http:
            await transact(
                http,
                server.base_url,
                app,
                [
                    ["update", "goals", goal, {"title": "g"}],
                    ["update", "todos", todo, {"text": "t"}],
                    ["link", "goals", goal, {"todos": todo}],
                ],
            )
            nested = {"goals": {"todos": {}}}
            dotted = {"goals": {"$": {"where": {"todos.text": "changed"}}}}
            async with (
                subscribe(http, server, admin_headers(app), nested) as by_link,
                subscribe(http, server, admin_headers(app), dotted) as by_where,
            ):
                for stream in (by_link, by_where):
                    await stream.next_op("sse-init")
                    await stream.next_op("add-query-ok")
                await transact(
                    http, server.base_url, app, [["update", "todos", todo, {"text": "changed"}]]
                )
                nested_refresh = await by_link.next_op("refresh-ok")
                [row] = nested_refresh["computations"][0]["instaql-result"]["goals"]
                assert row["todos"][0]["text"] == "changed"
                where_refresh = await by_where.next_op("refresh-ok")
                assert where_refresh["computations"][0]["instaql-result"]["goals"][0]["id"] == goal

    asyncio.run(main())


def test_a_delete_refreshes_queries_of_namespaces_linked_to_it(server):
    app = server.new_app()
    goal, todo, _ = ids()

    async def main() -> None:
        async with client() as http:
            await transact(
                http,
                server.base_url,
                app,
                [
                    ["update", "todos", todo, {"text": "t"}],
                    ["link", "goals", goal, {"todos": todo}],
                ],
            )
            async with subscribe(http, server, admin_headers(app), {"todos": {"goals": {}}}) as s:
                await s.next_op("sse-init")
                added = await s.next_op("add-query-ok")
                assert added["result"]["todos"][0]["goals"][0]["id"] == goal
                await transact(http, server.base_url, app, [["delete", "goals", goal]])
                refresh = await s.next_op("refresh-ok")
                assert refresh["computations"][0]["instaql-result"]["todos"][0]["goals"] == []

    asyncio.run(main())


def test_a_burst_of_writes_while_a_refresh_runs_collapses_into_one_refresh(server):
    app = server.new_app()
    engine = server.instance.engine(app.id)
    real_query = engine.query_with_meta
    gate = threading.Event()
    gate.set()
    entered = threading.Event()

    threads: set[threading.Thread] = set()

    def gated(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread())
        entered.set()
        assert gate.wait(10), "the test never opened the gate"
        return real_query(*args, **kwargs)

    engine.query_with_meta = gated  # type: ignore[method-assign]

    async def main() -> None:
        async with (
            client() as http,
            subscribe(http, server, admin_headers(app), {"goals": {}}) as stream,
        ):
            await stream.next_op("sse-init")
            await stream.next_op("add-query-ok")
            gate.clear()
            entered.clear()
            await transact(
                http, server.base_url, app, [["update", "goals", str(uuid.uuid4()), {"n": 0}]]
            )
            # The recompute for the first write is now running (and held).
            await eventually(entered.is_set)
            for n in range(1, 11):
                steps = [["update", "goals", str(uuid.uuid4()), {"n": n}]]
                await transact(http, server.base_url, app, steps)
            gate.set()
            refresh = await stream.next_op("refresh-ok")
            # The held run reads after the gate opens, so it already sees all eleven;
            # the one more run the burst asked for finds nothing new and sends nothing.
            assert len(refresh["computations"][0]["instaql-result"]["goals"]) == 11
            await stream.expect_quiet(0.6)

    try:
        asyncio.run(main())
    finally:
        engine.query_with_meta = real_query  # type: ignore[method-assign]
    # Recomputes run in worker threads, never on the server's event loop.
    assert threads
    assert server.thread not in threads


def test_pagination_reports_page_info(server):
    app = server.new_app(
        schema={"attrs": {"goals": {"n": {"type": "number", "indexed": True}}}, "links": {}}
    )

    async def main() -> None:
        async with client() as http:
            steps = [["update", "goals", str(uuid.uuid4()), {"n": n}] for n in range(3)]
            await transact(http, server.base_url, app, steps)
            q = {"goals": {"$": {"first": 2, "order": {"n": "asc"}}}}
            async with subscribe(http, server, admin_headers(app), q) as stream:
                await stream.next_op("sse-init")
                added = await stream.next_op("add-query-ok")
                info = added["result-meta"]["page-info"]["goals"]
                assert info["has-next-page?"] is True
                assert info["has-previous-page?"] is False
                assert info["start-cursor"]
                assert info["end-cursor"]
                assert [g["n"] for g in added["result"]["goals"]] == [0, 1]

    asyncio.run(main())


RULES = {
    "goals": {
        "allow": {
            "view": "auth.id != null && (data.owner == auth.id"
            " || (ruleParams.code != null && data.code == ruleParams.code))"
        }
    }
}


async def _user(http: httpx.AsyncClient, server: TestServer, app: Any, email: str) -> str:
    response = await http.post(
        server.base_url + "/admin/refresh_tokens", headers=admin_headers(app), json={"email": email}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["user"]["id"])


def test_impersonated_subscriptions_see_what_their_rules_allow(server):
    app = server.new_app(rules=RULES)
    mine, theirs, coded = ids()

    async def main() -> None:
        async with client() as http:
            alice = await _user(http, server, app, "alice@example.com")
            bob = await _user(http, server, app, "bob@example.com")
            await transact(
                http,
                server.base_url,
                app,
                [
                    ["update", "goals", mine, {"owner": alice}],
                    ["update", "goals", coded, {"owner": bob, "code": "c1"}],
                ],
            )
            as_alice = {**admin_headers(app), "as-email": "alice@example.com"}
            with_params = {"goals": {}, "$$ruleParams": {"code": "c1"}}
            async with (
                subscribe(http, server, as_alice, {"goals": {}}) as plain,
                subscribe(http, server, as_alice, with_params) as params,
                subscribe(http, server, {"app-id": app.id, "as-guest": "true"}, {"goals": {}}) as g,
            ):
                for stream in (plain, params, g):
                    await stream.next_op("sse-init")
                assert {
                    r["id"] for r in (await plain.next_op("add-query-ok"))["result"]["goals"]
                } == {mine}
                added = await params.next_op("add-query-ok")
                assert added["q"] == with_params  # echoed as received
                assert {r["id"] for r in added["result"]["goals"]} == {mine, coded}
                assert (await g.next_op("add-query-ok"))["result"] == {"goals": []}

                # Bob's new goal is invisible to Alice and guests: nothing is sent.
                await transact(
                    http, server.base_url, app, [["update", "goals", theirs, {"owner": bob}]]
                )
                for stream in (plain, params, g):
                    await stream.expect_quiet(0.4)
                # Alice's own change reaches both of her subscriptions.
                await transact(http, server.base_url, app, [["update", "goals", mine, {"t": 1}]])
                for stream in (plain, params):
                    refresh = await stream.next_op("refresh-ok")
                    assert mine in {
                        r["id"] for r in refresh["computations"][0]["instaql-result"]["goals"]
                    }
                await g.expect_quiet(0.3)

    asyncio.run(main())


def test_errors_before_the_stream_are_plain_json(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            url = server.base_url + "/admin/subscribe-query"

            async def post(headers: dict[str, str], body: Any) -> httpx.Response:
                return await http.post(url, headers=headers, json=body)

            bad_token = {"app-id": app.id, "authorization": f"Bearer {uuid.uuid4()}"}
            response = await post(bad_token, {"query": {"goals": {}}})
            assert response.status_code == 400
            assert response.json()["type"] == "record-not-found"
            assert response.json()["hint"]["record-type"] == "app-admin-token"
            assert "text/event-stream" not in response.headers["content-type"]

            response = await post(admin_headers(app), {"inference?": False})
            assert response.status_code == 400
            assert response.json()["type"] == "param-missing"
            assert response.json()["hint"]["in"] == ["body", "query"]

            response = await post(admin_headers(app), {"query": ["goals"]})
            assert response.status_code == 400
            assert response.json()["type"] == "param-malformed"

            response = await post({"app-id": "nope"}, {"query": {}})
            assert response.status_code == 400
            assert response.json()["type"] == "param-malformed"

            response = await post(
                {**admin_headers(app), "as-email": "nobody@example.com"}, {"query": {}}
            )
            assert response.status_code == 400
            assert response.json()["type"] == "record-not-found"

    asyncio.run(main())


def test_an_invalid_query_is_an_error_event_and_the_stream_stays_open(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            q = {"goals": {"$": {"limit": -1}}}
            async with subscribe(http, server, admin_headers(app), q) as stream:
                await stream.next_op("sse-init")
                error = await stream.next_op("error")
                assert error["status"] == 400
                assert error["type"] == "validation-failed"
                assert "limit" in error["message"]
                assert error["original-event"]["op"] == "add-query"
                assert error["original-event"]["q"] == q
                assert error["client-event-id"] == error["original-event"]["client-event-id"]
                # The failed query is dropped: later writes send nothing, the stream lives on.
                await transact(
                    http, server.base_url, app, [["update", "goals", str(uuid.uuid4()), {}]]
                )
                keepalives = stream.keepalives
                await stream.expect_quiet(0.6)
                assert stream.keepalives > keepalives
                assert not stream.ended.is_set()

    asyncio.run(main())


def test_a_closed_connection_releases_its_subscription(server):
    app = server.new_app()

    async def main() -> None:
        async with client() as http:
            async with subscribe(http, server, admin_headers(app), {"goals": {}}) as stream:
                await stream.next_op("sse-init")
                await stream.next_op("add-query-ok")
                assert server.hub.queries.count() >= 1
                session_count = len(server.hub.sessions)
            await eventually(lambda: len(server.hub.sessions) == session_count - 1)
            await eventually(lambda: server.hub.queries.count() == 0)

    asyncio.run(main())
