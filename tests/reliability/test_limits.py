"""Oversized and deeply nested input: refused with a clear 4xx, never a 500, a hang or a
crash, on the server and in the SDK.

Regressions (found by this suite):

* a transaction value nested 500 levels deep hit Python's recursion limit in the
  engine and answered 500; the server now refuses bodies nested deeper than
  ``MAX_JSON_DEPTH`` (128) with a 400 that says so, and everything up to that depth
  works on every route (checked below at exactly the limit);
* a 10k-deep body answered "Malformed JSON" although it was valid JSON; it now gets the
  same depth error;
* the SDK let a RecursionError escape when a server answered with deeply nested JSON;
  it now raises `InstantAPIError`.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from instantdb import Instant, InstantAPIError, InstantError, InstantValidationError, id
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.routes._plumbing import MAX_JSON_DEPTH
from tests.reliability._clients import ClientRunner, entity_ids
from tests.reliability._routes import RouteCase, route_cases

SMALL_LIMIT = 64 * 1024
DEPTH_ERROR = f"nested more than {MAX_JSON_DEPTH} levels deep"

SCHEMA = {
    "attrs": {"goals": {"title": {"type": "string"}, "rank": {"type": "number"}}},
    "links": {
        "goalNext": {
            "forward": {"on": "goals", "label": "next", "has": "one"},
            "reverse": {"on": "goals", "label": "prev", "has": "many"},
        }
    },
}
# Rules that read the deep values, so permission evaluation walks them too.
RULES = {
    "goals": {
        "allow": {
            "view": "data.v == null || size(data.v) >= 0",
            "create": "newData.v == null || size(newData.v) >= 0",
            "update": "newData.v == null || size(newData.v) >= 0",
        }
    }
}


def nested_list(depth: int) -> Any:
    """A value whose JSON is ``depth`` levels deep: ``[[...[1]...]]``."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def nested_text(depth: int) -> str:
    # Built as text: json.dumps itself would hit the recursion limit on deep values.
    return "[" * depth + "1" + "]" * depth


@pytest.fixture(scope="module")
def small_server() -> Iterator[LocalServer]:
    with LocalServer(max_body_bytes=SMALL_LIMIT) as running:
        yield running


@pytest.fixture
def deep_app(server: LocalServer) -> AppCredentials:
    return server.create_app(title="deep", schema=SCHEMA, rules=RULES)


def _post(creds: AppCredentials, path: str, body: str, **headers: str) -> httpx.Response:
    return httpx.post(
        creds.api_uri + path,
        content=body.encode(),
        headers={
            "app-id": creds.app_id,
            "authorization": f"Bearer {creds.admin_token}",
            "content-type": "application/json",
            **headers,
        },
        timeout=30,
    )


# -- depth, over HTTP ---------------------------------------------------------------------


def _in_query(inner: str) -> str:
    return '{"query": {"goals": {"$": {"where": {"v": ' + inner + "}}}}}"


def _in_transaction(inner: str) -> str:
    return '{"steps": [["update", "goals", "' + str(id()) + '", {"v": ' + inner + "}]]}"


def _bare(inner: str) -> str:
    return inner


@pytest.mark.parametrize(
    ("path", "wrap"),
    [("/admin/query", _in_query), ("/admin/transact", _in_transaction), ("/admin/query", _bare)],
    ids=["query-where", "transact-value", "bare-body"],
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 10_000, 100_000])
def test_too_deep_is_a_clear_400(
    app: AppCredentials, path: str, wrap: Any, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="instantdb_local"):
        response = _post(app, path, wrap(nested_text(depth)))
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation-failed"
    assert DEPTH_ERROR in body["message"]
    assert body["hint"] == {"data-type": "body", "limit": MAX_JSON_DEPTH}
    assert caplog.records == []
    assert entity_ids(app, "goals") == []


def json_depth(value: Any) -> int:
    """How deep a JSON value nests: a scalar is 0, ``{}`` and ``[1]`` are 1."""
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    return 0


def at_the_limit(wrap: Any) -> dict[str, Any]:
    """``wrap(inner)`` with the deepest ``inner`` that keeps the body within the limit."""
    depth = MAX_JSON_DEPTH
    while json_depth(body := wrap(nested_list(depth))) > MAX_JSON_DEPTH:
        depth -= 1
    assert json_depth(body) == MAX_JSON_DEPTH
    return body  # type: ignore[no-any-return]


def _deepest_query(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(levels):
        node = {"next": node}
    return node


@pytest.mark.parametrize("as_guest", [False, True], ids=["admin", "guest-with-rules"])
def test_everything_at_the_depth_limit_works(
    deep_app: AppCredentials, as_guest: bool, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"as-guest": "true"} if as_guest else {}
    chain = [id() for _ in range(MAX_JSON_DEPTH)]
    setup = [["update", "goals", eid, {"rank": n}] for n, eid in enumerate(chain)]
    setup += [["link", "goals", a, {"next": b}] for a, b in itertools.pairwise(chain)]
    # A query as deep as allowed, walking a real chain of linked entities: the body
    # {"query": {"goals": {...}}} takes three levels, then one per link followed.
    hops = MAX_JSON_DEPTH - 3
    walk = {"query": {"goals": {"$": {"where": {"id": chain[0]}}, **_deepest_query(hops)}}}
    assert json_depth(walk) == MAX_JSON_DEPTH
    with caplog.at_level(logging.ERROR, logger="instantdb_local"):
        assert _post(deep_app, "/admin/transact", json.dumps({"steps": setup})).status_code == 200
        bodies = [
            (
                200,
                "/admin/transact",
                at_the_limit(lambda v: {"steps": [["update", "goals", chain[0], {"v": v}]]}),
            ),
            (
                200,
                "/admin/transact",
                at_the_limit(lambda v: {"steps": [["merge", "goals", chain[1], {"v": v}]]}),
            ),
            # A where value must be a scalar: refused as a validation error, not a crash.
            (
                400,
                "/admin/query",
                at_the_limit(lambda v: {"query": {"goals": {"$": {"where": {"v": v}}}}}),
            ),
            (
                200,
                "/admin/query",
                at_the_limit(lambda v: {"query": {"goals": {}, "$$ruleParams": {"p": v}}}),
            ),
            (200, "/admin/query", walk),
        ]
        for status, path, body in bodies:
            response = _post(deep_app, path, json.dumps(body), **headers)
            assert response.status_code == status, (path, response.text[:300])
            assert len(response.content) > 0
        stored = bodies[0][2]["steps"][0][3]["v"]
        read_back = _post(deep_app, "/admin/query", json.dumps({"query": {"goals": {}}}), **headers)
        assert sum(row.get("v") == stored for row in read_back.json()["goals"]) == 2
        nested = _post(deep_app, "/admin/query", json.dumps(walk), **headers).json()
        depth = 0
        node = nested["goals"][0]
        # The leaf holds its has-one link as a plain id (as on the real server).
        while isinstance(node.get("next"), list):
            node, depth = node["next"][0], depth + 1
        assert depth == hops  # the whole chain came back
    assert caplog.records == []


def test_debug_routes_at_the_depth_limit(deep_app: AppCredentials) -> None:
    for path, body in (
        (
            "/admin/transact_perms_check",
            at_the_limit(lambda v: {"steps": [["update", "goals", id(), {"v": v}]]}),
        ),
        (
            "/admin/query_perms_check",
            at_the_limit(lambda v: {"query": {"goals": {}, "$$ruleParams": {"p": v}}}),
        ),
    ):
        response = _post(deep_app, path, json.dumps(body), **{"as-guest": "true"})
        assert response.status_code == 200, (path, response.text[:300])


def test_the_sdk_reports_the_servers_depth_error(
    app: AppCredentials, clients: ClientRunner
) -> None:
    db = clients.make(app)
    too_deep = nested_list(200)  # the SDK encodes it; the server refuses it
    with pytest.raises(InstantValidationError, match=DEPTH_ERROR) as caught:
        clients.run(db.transact(db.tx.goals[id()].update({"v": too_deep})))
    assert caught.value.status == 400
    assert entity_ids(app, "goals") == []


# -- depth, in the SDK -------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 400, 503])
def test_the_sdk_survives_a_deeply_nested_answer(status: int, clients: ClientRunner) -> None:
    deep = nested_text(50_000).encode()
    # MockTransport serves both clients.
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=deep))
    creds = AppCredentials("a0000000-0000-4000-8000-000000000001", str(id()), "http://x.test")
    db = clients.make(creds, _transport=transport, retry=False)
    with pytest.raises(InstantAPIError) as caught:
        clients.run(db.query({"goals": {}}))
    assert caught.value.status == status
    if status == 200:
        assert "nested too deeply" in str(caught.value)


# -- numbers beyond a double, over HTTP -----------------------------------------------------

# Valid JSON that float() turns into an infinity (or an integer no double holds). These
# answered 500 before (the engine's validation error echoed the infinity, and encoding
# that error failed: "Out of range float values are not JSON compliant", or the huge
# integer overflowed on its way to storage), except the where, which matched nothing.
RANGE_ERROR = "out of range: JSON numbers must be finite doubles"


@pytest.mark.parametrize(
    ("path", "body", "literal"),
    [
        ("/admin/transact", _in_transaction("1e400"), "1e400"),
        ("/admin/query", '{"query": {"goals": {"$": {"limit": 1e400}}}}', "1e400"),
        ("/admin/transact", _in_transaction('{"w": [1, [1e999]]}'), "1e999"),
        ("/admin/transact", _in_transaction("-" + "9" * 400), "-" + "9" * 23),
        ("/admin/query", _in_query('{"$gt": 2e308}'), "2e308"),
    ],
    ids=["transact-value", "query-limit", "nested-in-a-value", "huge-integer", "where"],
)
def test_a_number_out_of_range_is_a_clear_400(
    app: AppCredentials, path: str, body: str, literal: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="instantdb_local"):
        response = _post(app, path, body)
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert answer["type"] == "validation-failed"
    assert RANGE_ERROR in answer["message"]
    assert literal in answer["message"]
    assert caplog.records == []
    assert entity_ids(app, "goals") == []


def _json_routes() -> list[RouteCase]:
    # Every implemented route that takes a JSON body, read from the router: all POSTs
    # but the 501 placeholders (uploads are PUT, their body is the file).
    return [case for case in route_cases() if case.method == "POST" and not case.pending]


@pytest.mark.parametrize("case", _json_routes(), ids=str)
def test_every_json_route_refuses_a_number_out_of_range(
    app: AppCredentials, case: RouteCase, caplog: pytest.LogCaptureFixture
) -> None:
    body = '{"query": {"goals": {}}, "steps": [], "email": "a@b.co", "n": [1, -1e400]}'
    with caplog.at_level(logging.WARNING, logger="instantdb_local"):
        response = httpx.post(
            app.api_uri + case.path(app.app_id),
            params={"app_id": app.app_id},  # where /admin/sse/push reads it
            content=body.encode(),
            headers={"app-id": app.app_id, "authorization": f"Bearer {app.admin_token}"},
            timeout=30,
        )
    assert response.status_code == 400, (str(case), response.text[:300])
    assert RANGE_ERROR in response.json()["message"]
    assert "-1e400" in response.json()["message"]
    assert caplog.records == []


# -- size ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL_LIMIT + 1, 1024 * 1024, 8 * 1024 * 1024])
def test_an_oversized_transaction_is_refused_with_413(
    small_server: LocalServer, size: int, clients: ClientRunner
) -> None:
    creds = small_server.create_app()
    db = clients.make(creds)
    with pytest.raises(InstantValidationError) as caught:
        clients.run(db.transact(db.tx.goals[id()].update({"blob": "x" * size})))
    assert caught.value.status == 413
    assert f"larger than the local server's limit of {SMALL_LIMIT} bytes" in str(caught.value)
    assert entity_ids(creds, "goals") == []
    # The server carries on, and a body under the limit goes through.
    clients.run(db.transact(db.tx.goals[id()].update({"blob": "x" * 1000})))
    assert len(entity_ids(creds, "goals")) == 1


def test_an_oversized_body_without_a_length_is_refused(small_server: LocalServer) -> None:
    creds = small_server.create_app()

    def chunks() -> Iterator[bytes]:
        yield b'{"steps": [["update", "goals", "%s", {"blob": "' % str(id()).encode()
        for _ in range(64):
            yield b"x" * 4096
        yield b'"}]]}'

    response = httpx.post(
        creds.api_uri + "/admin/transact",
        content=chunks(),  # sent chunked: the limit is enforced while reading
        headers={"app-id": creds.app_id, "authorization": f"Bearer {creds.admin_token}"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["hint"] == {"data-type": "body", "limit": SMALL_LIMIT}
    assert entity_ids(creds, "goals") == []


def test_a_declared_length_over_the_limit_is_refused_unread(server: LocalServer) -> None:
    # Announce 64 MiB, send two bytes: refused on the header alone (httpx would not send
    # such a request, so it goes over a raw socket).
    creds = server.credentials
    host, port = creds.api_uri.removeprefix("http://").split(":")
    head = (
        f"POST /admin/transact HTTP/1.1\r\nhost: {host}\r\napp-id: {creds.app_id}\r\n"
        f"authorization: Bearer {creds.admin_token}\r\n"
        f"content-length: {64 * 1024 * 1024}\r\nconnection: close\r\n\r\n{{}}"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["hint"]["limit"] == 32 * 1024 * 1024  # the documented default


def test_sdk_encoder_refuses_what_it_cannot_encode_before_io() -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    with Instant(
        app_id="a0000000-0000-4000-8000-000000000001",
        admin_token=str(id()),
        _transport=transport,
    ) as db:
        with pytest.raises(InstantError) as caught:  # InstantError
            db.transact(db.tx.goals[id()].update({"v": nested_list(5000)}))
        assert "nested too deeply" in str(caught.value)
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        with pytest.raises(InstantError, match="nested too deeply or contains"):
            db.query({"goals": {"$": {"where": {"v": cyclic}}}})
    assert sent == []
