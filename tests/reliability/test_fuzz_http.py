"""Fuzz the local server over HTTP: any body, any credentials and impersonation headers,
to every route it has. Each request ends in an answer or a 4xx (a 501 for features not
implemented yet), in the server's JSON error shape, within a timeout; never a 500, and
the server logs no unexpected error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from tests.reliability._routes import RouteCase, route_cases
from tests.reliability._strategies import (
    ENTITY_IDS,
    FUZZ_RULES,
    FUZZ_SCHEMA,
    header_sets,
    queries,
    request_bodies,
    transaction_steps,
    with_numbers_out_of_range,
)

ROUTES = route_cases()


class ErrorLog(logging.Handler):
    """Collects the server's ERROR records (an unexpected exception is logged so)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzz_app(server: LocalServer) -> AppCredentials:
    creds = server.create_app(title="fuzz-http", schema=FUZZ_SCHEMA, rules=FUZZ_RULES)
    steps = [["update", "goals", eid, {"title": f"g{n}"}] for n, eid in enumerate(ENTITY_IDS)]
    response = httpx.post(
        creds.api_uri + "/admin/transact",
        json={"steps": steps},
        headers={"app-id": creds.app_id, "authorization": f"Bearer {creds.admin_token}"},
        timeout=30,
    )
    assert response.status_code == 200
    user = httpx.post(
        creds.api_uri + "/admin/refresh_tokens",
        json={"email": "a@b.co"},
        headers={"app-id": creds.app_id, "authorization": f"Bearer {creds.admin_token}"},
        timeout=30,
    )
    assert user.status_code == 200
    return creds


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def server_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logger = logging.getLogger("instantdb_local")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _body(data: st.DataObject, kind: str) -> bytes:
    if kind == "json":
        # Some numbers past a double's range, anywhere in the body (1e400 is valid JSON).
        text = json.dumps(data.draw(request_bodies()))
        return with_numbers_out_of_range(data.draw, text).encode()
    if kind == "text":
        return data.draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    return data.draw(st.binary(max_size=40))


def _check(case: RouteCase, response: httpx.Response) -> None:
    status = response.status_code
    event(f"{status}")
    if case.pending:
        assert status in (400, 501), (str(case), status, response.text[:300])
    else:
        assert status < 500, (str(case), status, response.text[:300])
    if status == 400 and response.headers["content-type"].startswith("text/plain"):
        assert response.text == "Malformed JSON in request body."
        return
    body = response.json()
    if status >= 400:
        assert isinstance(body, dict)
        assert isinstance(body.get("message"), str)
        assert body["message"]
        if "finite doubles" in body["message"]:
            event("number out of range")


@given(
    case=st.sampled_from(ROUTES),
    kind=st.sampled_from(["json", "json", "json", "text", "bytes"]),
    query=st.dictionaries(
        st.sampled_from(["app_id", "email", "id", "refresh_token", "x"]),
        st.text(max_size=12),
        max_size=2,
    ),
    data=st.data(),
)
def test_any_request_to_any_route(
    fuzz_app: AppCredentials,
    http: httpx.Client,
    server_errors: ErrorLog,
    case: RouteCase,
    kind: str,
    query: dict[str, str],
    data: st.DataObject,
) -> None:
    headers = data.draw(header_sets(fuzz_app.app_id, fuzz_app.admin_token))
    body = _body(data, kind)
    before = len(server_errors.records)
    with http.stream(
        case.method,
        fuzz_app.api_uri + case.path(fuzz_app.app_id),
        content=body if case.method != "GET" else None,
        params=query,
        headers={"content-type": "application/json", **headers},
    ) as response:
        # An accepted event stream (sse, subscribe-query) never ends: its head is the
        # answer. Everything else is read whole.
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            event("event stream")
            assert response.status_code == 200
        else:
            response.read()
            _check(case, response)
    assert server_errors.records[before:] == []


_DATA_ROUTES = {
    "/admin/query": "query",
    "/admin/query_perms_check": "query",
    "/admin/transact": "steps",
    "/admin/transact_perms_check": "steps",
}


@given(
    path=st.sampled_from(sorted(_DATA_ROUTES)),
    impersonation=st.sampled_from([{}, {"as-guest": "true"}, {"as-email": "a@b.co"}]),
    data=st.data(),
)
def test_any_query_or_steps_to_the_data_routes_with_valid_credentials(
    fuzz_app: AppCredentials,
    http: httpx.Client,
    server_errors: ErrorLog,
    path: str,
    impersonation: dict[str, str],
    data: st.DataObject,
) -> None:
    # Valid credentials get past the plumbing, so the engine sees every query and step.
    field = _DATA_ROUTES[path]
    payload = data.draw(queries() if field == "query" else transaction_steps())
    extras = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "inference?": st.booleans(),
                "throw-on-missing-attrs?": st.booleans(),
                "rules-override": st.sampled_from([FUZZ_RULES, {"goals": {"allow": {}}}]),
            },
        )
    )
    body = {**extras, field: payload}
    text = with_numbers_out_of_range(data.draw, json.dumps(body))
    before = len(server_errors.records)
    response = http.post(
        fuzz_app.api_uri + path,
        content=text.encode(),
        headers={
            "app-id": fuzz_app.app_id,
            "authorization": f"Bearer {fuzz_app.admin_token}",
            **impersonation,
        },
    )
    _check(RouteCase("POST", path, pending=False), response)
    assert server_errors.records[before:] == []
