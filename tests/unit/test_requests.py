"""What each client method sends, and what it returns: both clients, one test body each."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from instantdb import InstantError, InstantTypeError, InstantValueError, lookup
from instantdb._protocol._call import USER_AGENT
from instantdb._version import __version__
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, REFRESH_TOKEN, ClientHarness

BASE = "https://api.example.test"
GOAL = "60a10000-0000-4000-8000-000000000001"
TODO = "70d00000-0000-4000-8000-000000000001"

# Headers httpx adds by itself; everything else is ours and checked exactly.
HTTPX_OWN = {"host", "accept", "accept-encoding", "connection", "content-length"}


def our_headers(request: httpx.Request) -> dict[str, str]:
    return {name: value for name, value in request.headers.items() if name not in HTTPX_OWN}


def standard(**extra: str) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "app-id": APP_ID,
        "instant-admin-version": __version__,
        "instant-core-version": __version__,
        "user-agent": USER_AGENT,
        "authorization": f"Bearer {ADMIN_TOKEN}",
    }
    headers.update(extra)
    return headers


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_user_agent_names_the_sdk_and_httpx() -> None:
    assert f"instantdb-python/{__version__} httpx/{httpx.__version__}" == USER_AGENT


def test_query(harness: ClientHarness) -> None:
    answer = {"goals": [{"id": GOAL, "title": "Get fit"}]}
    harness.api.queue(httpx.Response(200, json=answer))
    db = harness.make()
    result = harness.call(db, "query", {"goals": {"$": {"where": {"title": "Get fit"}}}})
    assert result == answer
    request = harness.api.last
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/admin/query?app_id={APP_ID}"
    assert our_headers(request) == standard()
    assert body(request) == {
        "query": {"goals": {"$": {"where": {"title": "Get fit"}}}},
        "inference?": False,
    }


def test_query_rule_params_go_first_inside_the_query(harness: ClientHarness) -> None:
    db = harness.make()
    harness.call(db, "query", {"goals": {}}, rule_params={"region": "us"})
    sent = body(harness.api.last)
    assert list(sent) == ["query", "inference?"]
    assert list(sent["query"]) == ["$$ruleParams", "goals"]
    assert sent["query"]["$$ruleParams"] == {"region": "us"}


def test_query_values_follow_the_json_policy(harness: ClientHarness) -> None:
    import datetime

    db = harness.make()
    when = datetime.date(2024, 1, 2)
    harness.call(db, "query", {"goals": {"$": {"where": {"due": {"$gt": when}}}}})
    assert body(harness.api.last)["query"]["goals"]["$"]["where"]["due"] == {"$gt": "2024-01-02"}


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("goals",), {}, InstantTypeError, r"query\(\) takes a dict for q"),
        (({"goals": []},), {}, InstantTypeError, r"q\['goals'\] must be a dict"),
        (({"goals": {}},), {"rule_params": "x"}, InstantTypeError, "takes a dict for rule_params"),
        (
            ({"$$ruleParams": {"a": 1}, "goals": {}},),
            {"rule_params": {"a": 2}},
            InstantValueError,
            "given twice",
        ),
        (({"goals": {"$": {"where": {"x": b"y"}}}},), {}, InstantError, r'q\["goals"\]\["\$"\]'),
    ],
)
def test_bad_queries_fail_before_any_request(
    harness: ClientHarness,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    db = harness.make()
    with pytest.raises(error, match=message):
        harness.call(db, "query", *args, **kwargs)
    assert harness.api.requests == []


def test_transact(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"tx-id": 42}))
    db = harness.make()
    result = harness.call(
        db,
        "transact",
        [db.tx.goals[GOAL].update({"title": "Get fit"}), db.tx.goals[GOAL].link({"todos": TODO})],
    )
    assert result == {"tx-id": 42}
    request = harness.api.last
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/admin/transact?app_id={APP_ID}"
    assert our_headers(request) == standard()
    assert body(request) == {
        "steps": [
            ["update", "goals", GOAL, {"title": "Get fit"}],
            ["link", "goals", GOAL, {"todos": TODO}],
        ],
        "throw-on-missing-attrs?": False,
    }


def test_transact_rule_params_cover_every_entity(harness: ClientHarness) -> None:
    db = harness.make()
    harness.call(
        db,
        "transact",
        [db.tx.goals[GOAL].update({"a": 1}), db.tx.users[lookup("email", "a@b.c")].delete()],
        rule_params={"code": 7},
    )
    assert body(harness.api.last)["steps"] == [
        ["ruleParams", "goals", GOAL, {"code": 7}],
        ["ruleParams", "users", ["email", "a@b.c"], {"code": 7}],
        ["update", "goals", GOAL, {"a": 1}],
        ["delete", "users", ["email", "a@b.c"], None],
    ]


def test_transact_rejects_non_chunks_before_any_request(harness: ClientHarness) -> None:
    db = harness.make()
    with pytest.raises(InstantTypeError, match=r"chunks\[1\] is dict"):
        harness.call(db, "transact", [db.tx.goals[GOAL].delete(), {"goals": {}}])
    assert harness.api.requests == []


def test_debug_query(harness: ClientHarness) -> None:
    harness.api.queue(
        httpx.Response(
            200,
            json={
                "result": {"goals": []},
                "check-results": [{"id": GOAL, "check": True}],
                "rule-wheres": None,
            },
        )
    )
    db = harness.make().as_user(guest=True)
    result = harness.call(
        db,
        "debug_query",
        {"goals": {}},
        rules={"goals": {"allow": {"view": "true"}}},
        rule_params={"r": 1},
    )
    assert result == {
        "result": {"goals": []},
        "check_results": [{"id": GOAL, "check": True}],
        "rule_wheres": None,
    }
    request = harness.api.last
    assert str(request.url) == f"{BASE}/admin/query_perms_check?app_id={APP_ID}"
    assert our_headers(request) == standard(**{"as-guest": "true"})
    assert body(request) == {
        "query": {"$$ruleParams": {"r": 1}, "goals": {}},
        "inference?": False,
        "rules-override": {"goals": {"allow": {"view": "true"}}},
    }


def test_debug_transact(harness: ClientHarness) -> None:
    server_answer = {
        "tx-id": 9,
        "all-checks-ok?": True,
        "committed?": False,
        "check-results": [{"entity": "goals", "check-pass?": True}],
    }
    harness.api.queue(httpx.Response(200, json=server_answer))
    db = harness.make().as_user(email="a@b.c")
    result = harness.call(db, "debug_transact", db.tx.goals[GOAL].update({"title": "x"}))
    assert result == {
        "tx_id": 9,
        "all_checks_ok": True,
        "committed": False,
        "check_results": [{"entity": "goals", "check-pass?": True}],
    }
    request = harness.api.last
    assert str(request.url) == f"{BASE}/admin/transact_perms_check?app_id={APP_ID}"
    assert our_headers(request) == standard(**{"as-email": "a@b.c"})
    assert body(request) == {"steps": [["update", "goals", GOAL, {"title": "x"}]]}
    harness.call(db, "debug_transact", db.tx.goals[GOAL].delete(), rules={"goals": {}})
    assert body(harness.api.last)["rules-override"] == {"goals": {}}


@pytest.mark.parametrize("method", ["debug_query", "debug_transact"])
def test_debug_helpers_need_an_as_user_client(harness: ClientHarness, method: str) -> None:
    db = harness.make()
    argument = {"goals": {}} if method == "debug_query" else db.tx.goals[GOAL].delete()
    with pytest.raises(InstantError, match=rf"as_user\(\).*db\.as_user\(email=\.\.\.\)\.{method}"):
        harness.call(db, method, argument)
    assert harness.api.requests == []


def test_schema_is_admin_only_and_feeds_tab_completion(harness: ClientHarness) -> None:
    schema = {"blobs": {"goals": {"title": {}}, "$users": {"email": {}}}, "refs": {}}
    harness.api.queue(httpx.Response(200, json={"schema": schema}))
    db = harness.make()
    scoped = db.as_user(email="a@b.c")
    assert "goals" not in dir(db.tx)
    assert harness.call(scoped, "schema") == schema
    request = harness.api.last
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/admin/schema?app_id={APP_ID}"
    assert request.content == b""
    assert our_headers(request) == standard()  # no as-email: schema is app metadata
    # the namespaces are shared with the root client and every clone, without I/O
    assert "goals" in dir(db.tx)
    assert "goals" in dir(scoped.as_user(guest=True).tx)
    assert db.tx._ipython_key_completions_() == ["$users", "goals"]
    assert len(harness.api.requests) == 1


def test_schema_needs_an_admin_token(harness: ClientHarness) -> None:
    db = harness.make(admin_token="").as_user(token=REFRESH_TOKEN)
    with pytest.raises(InstantError, match=r"schema\(\) needs an admin token"):
        harness.call(db, "schema")
    assert harness.api.requests == []


def test_schema_answer_without_schema_is_an_error(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(InstantError, match="without a 'schema' object"):
        harness.call(harness.make(), "schema")


@pytest.mark.parametrize(
    ("kwargs", "header"),
    [
        ({"email": "alyssa@instantdb.com"}, ("as-email", "alyssa@instantdb.com")),
        ({"token": REFRESH_TOKEN}, ("as-token", REFRESH_TOKEN)),
        ({"guest": True}, ("as-guest", "true")),
    ],
)
def test_as_user_adds_its_header_and_leaves_the_original_alone(
    harness: ClientHarness, kwargs: dict[str, Any], header: tuple[str, str]
) -> None:
    db = harness.make()
    scoped = db.as_user(**kwargs)
    assert scoped is not db
    assert type(scoped) is type(db)
    harness.call(scoped, "query", {"goals": {}})
    assert our_headers(harness.api.last) == standard(**dict([header]))
    harness.call(db, "query", {"goals": {}})
    assert our_headers(harness.api.last) == standard()


def test_as_user_on_a_clone_replaces_the_identity(harness: ClientHarness) -> None:
    db = harness.make()
    harness.call(db.as_user(email="a@b.c").as_user(guest=True), "query", {"goals": {}})
    headers = our_headers(harness.api.last)
    assert headers["as-guest"] == "true"
    assert "as-email" not in headers


def test_as_user_rejects_ambiguous_identities_before_any_request(harness: ClientHarness) -> None:
    db = harness.make()
    with pytest.raises(InstantValueError, match="exactly one of"):
        db.as_user(email="a@b.c", guest=True)
    with pytest.raises(InstantValueError, match="exactly one of"):
        db.as_user()
    assert harness.api.requests == []


def test_without_an_admin_token_only_token_and_guest_clients_work(harness: ClientHarness) -> None:
    db = harness.make(admin_token=None)
    with pytest.raises(
        InstantError, match=r"no admin token.*admin_token=.*INSTANT_APP_ADMIN_TOKEN"
    ):
        harness.call(db, "query", {"todos": {}})
    with pytest.raises(InstantError, match=r"as_user\(email=\.\.\.\) needs an admin token"):
        harness.call(db.as_user(email="a@b.c"), "query", {"todos": {}})
    assert harness.api.requests == []

    harness.call(db.as_user(token=REFRESH_TOKEN), "query", {"todos": {}})
    expected = standard(**{"as-token": REFRESH_TOKEN})
    del expected["authorization"]
    assert our_headers(harness.api.last) == expected

    harness.call(db.as_user(guest=True), "transact", db.tx.todos[TODO].delete())
    assert "authorization" not in harness.api.last.headers
    assert harness.api.last.headers["as-guest"] == "true"


def test_a_clone_stays_token_less_when_the_environment_changes(
    harness: ClientHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = harness.make(admin_token=None)
    monkeypatch.setenv("INSTANT_APP_ADMIN_TOKEN", ADMIN_TOKEN)
    harness.call(db.as_user(guest=True), "query", {"todos": {}})
    assert "authorization" not in harness.api.last.headers


def test_api_uri_path_prefix_is_kept(harness: ClientHarness) -> None:
    db = harness.make(api_uri="https://proxy.test/instant/")
    harness.call(db, "query", {"goals": {}})
    assert str(harness.api.last.url) == f"https://proxy.test/instant/admin/query?app_id={APP_ID}"


def test_clones_share_the_pool_and_never_close_it(harness: ClientHarness) -> None:
    db = harness.make()
    scoped = db.as_user(guest=True)
    assert scoped._transport is db._transport
    assert harness.enter_and_exit(scoped) is scoped
    assert not db._transport.client.is_closed
    harness.call(db, "query", {"goals": {}})  # the root still works

    assert harness.enter_and_exit(db) is db
    assert db._transport.client.is_closed
    for client in (db, scoped):
        with pytest.raises(InstantError, match="client is closed"):
            harness.call(client, "query", {"goals": {}})
    assert len(harness.api.requests) == 1


def test_a_lent_http_client_is_used_and_never_closed(harness: ClientHarness) -> None:
    lent_class = httpx.AsyncClient if harness.kind == "async" else httpx.Client
    lent = lent_class(transport=harness.api.transport(), headers={"x-proxy-auth": "p"})
    db = harness.make(http_client=lent)
    harness.call(db, "query", {"goals": {}})
    assert harness.api.last.headers["x-proxy-auth"] == "p"
    harness.close(db)
    assert not lent.is_closed
    if harness.loop is not None:
        harness.loop.run_until_complete(lent.aclose())
    else:
        lent.close()
    # a lent client closed by its owner gives the SDK's clear error, not httpx's
    db2 = harness.make(http_client=lent)
    with pytest.raises(InstantError, match="client is closed"):
        harness.call(db2, "query", {"goals": {}})


def test_http_client_arguments_are_checked(harness: ClientHarness) -> None:
    wrong = httpx.Client() if harness.kind == "async" else httpx.AsyncClient()
    right_class = httpx.AsyncClient if harness.kind == "async" else httpx.Client
    right = right_class()
    with pytest.raises(InstantTypeError, match="http_client"):
        harness.make(http_client=wrong, _transport=None)
    with pytest.raises(InstantValueError, match="not both"):
        harness.client_class(app_id=APP_ID, http_client=right, _transport=harness.api.transport())
    for client in (wrong, right):
        if isinstance(client, httpx.Client):
            client.close()
        else:
            asyncio.run(client.aclose())


def test_timeout_is_applied_to_requests(harness: ClientHarness) -> None:
    seen: list[Any] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={})

    harness.api.default = record
    harness.call(harness.make(), "query", {"goals": {}})
    harness.call(harness.make(timeout=httpx.Timeout(3.0, read=7.0)), "query", {"goals": {}})
    assert seen == [
        {"connect": 10.0, "read": 60.0, "write": 60.0, "pool": 60.0},
        {"connect": 3.0, "read": 7.0, "write": 3.0, "pool": 3.0},
    ]


def test_repr_and_read_only_identity(harness: ClientHarness) -> None:
    db = harness.make()
    name = harness.client_class.__name__
    assert repr(db) == f"{name}(app_id='{APP_ID}', api_uri='{BASE}')"
    assert (
        repr(db.as_user(email="a@b.c"))
        == f"{name}(app_id='{APP_ID}', api_uri='{BASE}', as_user(email='a@b.c'))"
    )
    assert (
        repr(harness.make(admin_token=""))
        == f"{name}(app_id='{APP_ID}', api_uri='{BASE}', no admin token)"
    )
    assert (db.app_id, db.api_uri) == (APP_ID, BASE)
    with pytest.raises(AttributeError):
        db.app_id = "other"
