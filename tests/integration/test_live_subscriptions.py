"""``subscribe_query`` end to end: the SDK's subscriptions against the local server's
``/admin/subscribe-query``, over real sockets, for `Instant` and `AsyncInstant` alike.

What is checked: the initial result, then one payload per change made by another
client (and none for a change that leaves the result as it was); rules applied to
impersonated and rule-param subscriptions; a server stopped and restarted on the same
data dir and port mid-subscription (the subscription reconnects by itself and yields
the fresh result); auth failures that end the subscription with an error payload
instead of retrying; iterating without the context manager; many subscribers at once.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import instantdb
from instantdb import AsyncInstant, InstantAPIError, id
from instantdb_local import LocalServer, live
from instantdb_local.engine import Actor
from instantdb_local.instance import AppCredentials, Instance
from tests.integration._live import WAIT, LiveSubscription, ok_data, titles, wait_until
from tests.integration._tcp_proxy import TCPProxy
from tests.integration.conftest import Clients, Driven, FaultProxy
from tests.local.live.harness import start_server


def attr(kind: str = "string", *, indexed: bool = False) -> dict[str, Any]:
    return {"type": kind, "unique": False, "indexed": indexed, "required": False}


SCHEMA = {
    "attrs": {
        "goals": {"title": attr(indexed=True), "ownerId": attr(), "team": attr(indexed=True)},
        "todos": {"title": attr()},
    },
    "links": {},
}
OWNER_RULES = {
    "goals": {"allow": {"view": "auth.id == data.ownerId"}},
    "todos": {"allow": {"view": "data.title == ruleParams.title"}},
}


def subscribe(db: Driven, clients: Clients, q: dict[str, Any], **kwargs: Any) -> LiveSubscription:
    return LiveSubscription(db.subscribe_query(q, **kwargs), clients.loop)


def add_goal(db: Any, title: str, **attrs: Any) -> str:
    goal_id = id()
    db.transact(db.tx.goals[goal_id].update({"title": title, **attrs}))
    return goal_id


@pytest.mark.instant_app(schema=SCHEMA)
def test_initial_result_then_one_payload_per_change_by_another_client(
    db: Driven, clients: Clients, instant_app: AppCredentials
) -> None:
    add_goal(db, "first")
    other = clients.make(instant_app)
    sub = subscribe(db, clients, {"goals": {}})
    try:
        initial = sub.next()
        assert initial is not None
        assert titles(initial) == ["first"]
        assert initial["page_info"] is None
        assert set(initial["session_info"]) == {"machine_id", "session_id"}
        assert sub.subscription.ready_state == "open"

        expected = ["first"]
        for title in ["second", "third", "fourth"]:
            add_goal(other, title)
            expected.append(title)
            assert titles(sub.until(lambda _: True)) == sorted(expected)

        # A write the query does not read sends nothing: the next payload is the one
        # for the goal written after it.
        other.transact(other.tx.todos[id()].update({"title": "unrelated"}))
        goal_id = add_goal(other, "fifth")
        assert titles(sub.until(lambda _: True)) == sorted([*expected, "fifth"])

        other.transact(other.tx.goals[goal_id].delete())
        assert titles(sub.until(lambda _: True)) == sorted(expected)
        payloads = [titles(p) for p in sub.received]
        assert all(a != b for a, b in itertools.pairwise(payloads)), payloads
        assert sub.subscription.dropped == 0
    finally:
        sub.close()
    assert sub.subscription.is_closed
    assert sub.next() is None


@pytest.mark.instant_app(schema=SCHEMA, rules=OWNER_RULES)
def test_impersonated_subscriptions_see_only_what_rules_allow(db: Driven, clients: Clients) -> None:
    token = db.auth.create_token(email="owner@example.com")
    user = db.auth.get_user(email="owner@example.com")
    add_goal(db, "mine", ownerId=user["id"])
    add_goal(db, "theirs", ownerId=str(uuid.uuid4()))

    by_email = subscribe(db.as_user(email="owner@example.com"), clients, {"goals": {}})
    by_token = subscribe(db.as_user(token=token), clients, {"goals": {}})
    # The guest sees no goal, and only the todos its rule params name.
    as_guest = subscribe(
        db.as_user(guest=True), clients, {"goals": {}, "todos": {}}, rule_params={"title": "flag"}
    )
    try:
        for sub in (by_email, by_token):
            assert titles(sub.until(lambda _: True)) == ["mine"]
        assert ok_data(as_guest.until(lambda _: True)) == {"goals": [], "todos": []}

        # Someone else's goal changes nothing the user sees, so no payload comes for
        # it (payloads keep their order); the user's next goal does.
        add_goal(db, "theirs too", ownerId=str(uuid.uuid4()))
        add_goal(db, "mine too", ownerId=user["id"])
        for sub in (by_email, by_token):
            assert titles(sub.until(lambda _: True)) == ["mine", "mine too"]
            assert len(sub.received) == 2
        db.transact(db.tx.todos[id()].update({"title": "flag"}))
        seen = ok_data(as_guest.until(lambda _: True))
        assert seen["goals"] == []
        assert [todo["title"] for todo in seen["todos"]] == ["flag"]
        assert len(as_guest.received) == 2
        assert len(db.query({"goals": {}})["goals"]) == 4
    finally:
        for sub in (by_email, by_token, as_guest):
            sub.close()


@pytest.mark.instant_app(schema=SCHEMA, rules=OWNER_RULES)
def test_rule_params_filter_a_subscription(db: Driven, clients: Clients) -> None:
    for title in ["alpha", "beta"]:
        db.transact(db.tx.todos[id()].update({"title": title}))
    guest = db.as_user(guest=True)
    sub = subscribe(guest, clients, {"todos": {}}, rule_params={"title": "alpha"})
    try:
        assert titles(sub.until(lambda _: True), "todos") == ["alpha"]
        db.transact(db.tx.todos[id()].update({"title": "beta"}))
        db.transact(db.tx.todos[id()].update({"title": "alpha"}))
        assert titles(sub.until(lambda _: True), "todos") == ["alpha", "alpha"]
        assert len(sub.received) == 2
    finally:
        sub.close()


def _write_offline(data_dir: Path, app_id: str, title: str) -> None:
    """Write a goal straight into the stopped server's data dir."""
    instance = Instance.open(data_dir)
    try:
        steps = [["update", "goals", str(uuid.uuid4()), {"title": title}]]
        instance.engine(app_id).transact(steps, Actor.admin())
    finally:
        instance.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_subscription_follows_the_server_through_a_restart(kind: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = LocalServer(data_dir=data_dir).start()
    port = server.port
    credentials = server.credentials
    clients = Clients(kind)
    restarted: list[LocalServer] = []
    try:
        db = clients.make(credentials)
        add_goal(db, "before")
        sub = subscribe(db, clients, {"goals": {}})
        assert titles(sub.until(lambda _: True)) == ["before"]

        server.stop()
        _write_offline(data_dir, credentials.app_id, "while down")

        # Restarted from another thread while the subscription is already trying to
        # reconnect to a port nobody listens on.
        def restart() -> None:
            restarted.append(LocalServer(data_dir=data_dir, port=port).start())

        timer = threading.Timer(0.3, restart)
        timer.start()
        payload = sub.until(lambda p: p["type"] == "ok", timeout=WAIT + 5)
        timer.join(WAIT)
        assert titles(payload) == ["before", "while down"]
        assert (
            payload["session_info"]["session_id"] != sub.received[0]["session_info"]["session_id"]
        )
        # A short outage is not reported; a long one (slow machine) only as "connecting".
        for seen in sub.received:
            assert seen["type"] == "ok" or not seen["is_closed"], seen

        add_goal(db, "after")
        assert titles(sub.until(lambda p: p["type"] == "ok")) == ["after", "before", "while down"]
        sub.close()
    finally:
        clients.close()
        for started in [*restarted, server]:
            started.stop()


@pytest.mark.instant_app(schema=SCHEMA)
def test_a_wrong_admin_token_ends_the_subscription_without_retrying(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy
) -> None:
    wrong = str(uuid.uuid4())
    db = clients.make(instant_app, admin_token=wrong, api_uri=fault_proxy.api_uri)
    sub = subscribe(db, clients, {"goals": {}})
    payload = sub.next()
    assert payload is not None
    assert payload["type"] == "error"
    assert payload["is_closed"] is True
    assert payload["ready_state"] == "closed"
    error = payload["error"]
    assert isinstance(error, InstantAPIError)
    assert error.status == 400
    assert error.type == "record-not-found"
    assert wrong not in str(error)
    assert wrong not in repr(error.body)
    assert sub.next() is None
    assert fault_proxy.requests == ["POST /admin/subscribe-query"]


@pytest.mark.instant_app(schema=SCHEMA)
def test_a_signed_out_refresh_token_ends_the_subscription_at_its_next_reconnect(
    db: Driven, clients: Clients, instant_app: AppCredentials
) -> None:
    token = db.auth.create_token(email="leaver@example.com")
    with TCPProxy.to(instant_app.api_uri) as proxy:
        through_proxy = clients.make(instant_app, api_uri=proxy.api_uri)
        sub = subscribe(through_proxy.as_user(token=token), clients, {"goals": {}})
        assert titles(sub.until(lambda _: True)) == []

        db.auth.sign_out(email="leaver@example.com")
        proxy.cut()  # the next connection is refused: the token is no longer valid

        payload = sub.next()
        assert payload is not None
        assert payload["type"] == "error", payload
        assert payload["is_closed"] is True
        assert isinstance(payload["error"], InstantAPIError)
        assert payload["error"].status in (400, 401)
        assert token not in str(payload["error"])
        assert token not in repr(payload["error"].body)
        assert sub.next() is None
        assert sub.subscription.is_closed


@pytest.mark.instant_app(schema=SCHEMA)
def test_iterating_without_the_context_manager_opens_and_releases_the_connection(
    db: Driven, clients: Clients, instant_app: AppCredentials
) -> None:
    with TCPProxy.to(instant_app.api_uri) as proxy:
        through_proxy = clients.make(instant_app, api_uri=proxy.api_uri)
        subscription = through_proxy.subscribe_query({"goals": {}})
        assert proxy.accepted == 0  # subscribe_query() does no I/O
        sub = LiveSubscription(subscription, clients.loop)
        assert titles(sub.next() or {}) == []
        add_goal(db, "seen")
        assert titles(sub.until(lambda _: True)) == ["seen"]
        assert proxy.open_links == 1

        sub.close()
        proxy.wait_until(lambda p: p.open_links == 0)
        assert sub.next() is None
        # Closing twice is fine; iterating a closed subscription ends at once.
        sub.close()
        assert sub.next() is None


@pytest.mark.instant_app(schema=SCHEMA)
def test_a_plain_for_loop_works_on_a_sync_client(
    instant_db: instantdb.Instant, instant_app: AppCredentials
) -> None:
    seen = []
    with TCPProxy.to(instant_app.api_uri) as proxy:
        db = instantdb.Instant(**_arguments(instant_app, api_uri=proxy.api_uri))
        subscription = db.subscribe_query({"goals": {}})
        watchdog = threading.Timer(WAIT, subscription.close)  # ends a hung loop
        watchdog.start()
        for payload in subscription:
            seen.append(titles(payload))
            if len(seen) == 1:
                add_goal(instant_db, "written")
            else:
                break
        watchdog.cancel()
        subscription.close()
        proxy.wait_until(lambda p: p.open_links == 0)
        db.close()
    assert seen == [[], ["written"]]


def _arguments(app: AppCredentials, **overrides: Any) -> dict[str, Any]:
    return {
        "app_id": app.app_id,
        "admin_token": app.admin_token,
        "api_uri": app.api_uri,
        **overrides,
    }


MANY_SUBSCRIBERS = 50
WRITES = 20
TEAMS = ["red", "green", "blue", "idle"]


def _queries() -> list[dict[str, Any]]:
    """Five distinct queries, one of which ("idle") no write ever changes."""
    by_team = [{"goals": {"$": {"where": {"team": team}}}} for team in TEAMS]
    return [{"goals": {"$": {"order": {"title": "asc"}}}}, *by_team]


@pytest.mark.instant_app(schema=SCHEMA)
def test_many_async_subscribers_converge_on_the_fresh_result_and_never_repeat_one(
    instant_app: AppCredentials,
) -> None:
    queries = _queries()

    async def scenario() -> None:
        db = AsyncInstant(**_arguments(instant_app))
        writer = AsyncInstant(**_arguments(instant_app))
        subs = [db.subscribe_query(queries[i % len(queries)]) for i in range(MANY_SUBSCRIBERS)]
        received: list[list[Any]] = [[] for _ in subs]
        changed = asyncio.Event()

        async def follow(index: int) -> None:
            async for payload in subs[index]:
                received[index].append(ok_data(payload))
                changed.set()

        readers = [asyncio.ensure_future(follow(i)) for i in range(len(subs))]
        try:
            await _until(lambda: all(received), changed)
            ids: list[str] = []
            # Writes in quick succession (the server may coalesce them): creations,
            # updates that move goals between teams, and deletions.
            for n in range(WRITES):
                if n % 4 == 3 and ids:
                    await writer.transact(writer.tx.goals[ids.pop(0)].delete())
                elif n % 4 == 2 and ids:
                    await writer.transact(writer.tx.goals[ids[-1]].update({"team": "blue"}))
                else:
                    goal_id = id()
                    ids.append(goal_id)
                    team = TEAMS[n % 3]
                    await writer.transact(
                        writer.tx.goals[goal_id].update({"title": f"goal {n:02d}", "team": team})
                    )
            fresh = [await writer.query(q) for q in queries]
            await _until(
                lambda: all(r[-1] == fresh[i % len(queries)] for i, r in enumerate(received)),
                changed,
            )
        finally:
            for sub in subs:
                await sub.aclose()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await db.aclose()
            await writer.aclose()

        for index, results in enumerate(received):
            assert all(a != b for a, b in itertools.pairwise(results)), f"subscriber {index}"
            assert subs[index].dropped == 0
        idle = [r for i, r in enumerate(received) if i % len(queries) == len(queries) - 1]
        assert idle
        assert all(r == [{"goals": []}] for r in idle)

    asyncio.run(asyncio.wait_for(scenario(), 60))


async def _until(condition: Any, changed: asyncio.Event, timeout: float = 30.0) -> None:
    async def wait() -> None:
        while not condition():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(wait(), timeout)


def test_a_stopping_server_answers_new_live_sessions_503(tmp_path: Path) -> None:
    """Regression: once a stopping server had closed its live connections, a client
    reconnecting at once (as the JS SDK's stream sessions do) got a new session that
    held the shutdown for its whole graceful timeout. It now gets a 503, which every
    client retries later; closing without ``final`` (tests, demos) keeps serving."""
    server = start_server(tmp_path / "data")
    try:
        app = server.new_app()
        headers = {"app-id": app.id, "authorization": f"Bearer {app.admin_token}"}
        routes = [
            ("/admin/sse", {}),
            ("/admin/subscribe-query", {"query": {"goals": {}}}),
        ]
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=WAIT) as http:
            live.close_connections(server.app)
            for path, body in routes:
                with http.stream("POST", path, params={"app_id": app.id}, json=body) as answer:
                    assert answer.status_code == 200
            live.close_connections(server.app, final=True)
            wait_until(lambda: server.hub.closed, "the hub closing")
            for path, body in routes:
                answer = http.post(path, params={"app_id": app.id}, json=body)
                assert answer.status_code == 503
                assert "shutting down" in answer.text
    finally:
        server.stop()


@pytest.mark.instant_app(schema=SCHEMA)
def test_an_invalid_query_ends_the_subscription_with_the_servers_reason(
    db: Driven, clients: Clients
) -> None:
    sub = subscribe(db, clients, {"goals": {"$": {"order": {"nope": "asc"}}}})
    payload = sub.next()
    assert payload is not None
    assert payload["type"] == "error"
    assert payload["is_closed"] is True
    assert isinstance(payload["error"], instantdb.InstantValidationError)
    assert "no `nope` attribute" in str(payload["error"])
    assert sub.next() is None


@pytest.mark.instant_app(schema=SCHEMA)
def test_a_paginated_subscription_carries_its_page_info(db: Driven, clients: Clients) -> None:
    for title in ["a", "b", "c"]:
        add_goal(db, title)
    sub = subscribe(db, clients, {"goals": {"$": {"limit": 2, "order": {"title": "asc"}}}})
    try:
        first = sub.until(lambda _: True)
        assert titles(first) == ["a", "b"]
        page = first["page_info"]["goals"]
        assert page["has_next_page"] is True
        assert page["has_previous_page"] is False
        assert {"start_cursor", "end_cursor"} <= set(page)
        add_goal(db, "0")  # sorts first: the page moves
        moved = sub.until(lambda _: True)
        assert titles(moved) == ["0", "a"]
        assert moved["page_info"]["goals"]["end_cursor"] != page["end_cursor"]
    finally:
        sub.close()
