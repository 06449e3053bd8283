"""Request plumbing shared by every route: app id, admin token, impersonation, bodies,
and the shapes of error responses (server-semantics section 0 and 2)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from starlette.testclient import TestClient

from tests.local.app.fakes import FakeEngine

QUERY = {"query": {"goals": {}}, "inference?": False}


def _query(client: TestClient, headers: dict[str, str]):
    return client.post("/admin/query", json=QUERY, headers=headers)


# -- app id --------------------------------------------------------------------------------


def test_admin_query_reaches_the_engine_as_admin(client, admin_headers):
    response = _query(client, admin_headers)
    assert response.status_code == 200
    assert response.json() == {
        "query": {"goals": {}},
        "actor": {"admin": True, "user": None, "request": {}},
        "inference": False,
    }


def test_app_id_from_the_query_parameter_when_the_header_is_absent(client, instance):
    app = instance.default_app
    response = client.post(
        f"/admin/query?app_id={app.id}",
        json=QUERY,
        headers={"authorization": f"Bearer {app.admin_token}"},
    )
    assert response.status_code == 200


def test_app_id_header_wins_over_the_query_parameter(client, instance, admin_headers):
    response = client.post(f"/admin/query?app_id={uuid.uuid4()}", json=QUERY, headers=admin_headers)
    assert response.status_code == 200


def test_missing_app_id_names_both_places(client, instance):
    headers = {"authorization": f"Bearer {instance.default_app.admin_token}"}
    response = _query(client, headers)
    assert response.status_code == 400
    assert response.json() == {
        "type": "param-missing",
        "message": 'Missing parameter: ["headers" "app-id"]',
        "hint": {"in": ["headers", "app-id"], "possible-ins": [["query-params", "app_id"]]},
    }


@pytest.mark.parametrize(
    ("where", "path"),
    [("header", ["headers", "app-id"]), ("query", ["query-params", "app_id"])],
)
def test_malformed_app_id_is_param_malformed(client, instance, where, path):
    headers = {"authorization": f"Bearer {instance.default_app.admin_token}"}
    url = "/admin/query"
    if where == "header":
        headers["app-id"] = "not-a-uuid"
    else:
        url += "?app_id=not-a-uuid"
    response = client.post(url, json=QUERY, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "param-malformed"
    assert body["hint"] == {"in": path, "original-input": "not-a-uuid"}


# -- admin token ---------------------------------------------------------------------------


def test_missing_authorization_is_param_missing(client, instance):
    response = _query(client, {"app-id": instance.default_app.id})
    assert response.status_code == 400
    assert response.json()["type"] == "param-missing"
    assert response.json()["hint"] == {"in": ["headers", "authorization"]}


def test_bearer_token_is_trimmed(client, instance):
    app = instance.default_app
    headers = {"app-id": app.id, "authorization": f"Bearer   {app.admin_token}  "}
    assert _query(client, headers).status_code == 200


def test_malformed_token_is_param_malformed_and_not_echoed(client, instance):
    secretish = "0f0f0f0f-not-quite-a-token"
    headers = {"app-id": instance.default_app.id, "authorization": f"Bearer {secretish}"}
    response = _query(client, headers)
    assert response.status_code == 400
    assert response.json()["type"] == "param-malformed"
    assert secretish not in response.text


@pytest.mark.parametrize("case", ["wrong-token", "unknown-app", "token-of-another-app"])
def test_token_that_does_not_match_the_app_is_record_not_found(client, instance, case):
    app = instance.default_app
    other = instance.create_ephemeral_app("other")
    app_id, token = {
        "wrong-token": (app.id, str(uuid.uuid4())),
        "unknown-app": (str(uuid.uuid4()), app.admin_token),
        "token-of-another-app": (app.id, other.admin_token),
    }[case]
    response = _query(client, {"app-id": app_id, "authorization": f"Bearer {token}"})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "record-not-found"
    assert body["message"] == "Record not found: app-admin-token"
    assert body["hint"]["record-type"] == "app-admin-token"
    assert "may be expired or invalid" in body["hint"]["message"]


# -- impersonation -------------------------------------------------------------------------


def test_as_guest_needs_no_admin_token(client, instance):
    response = _query(client, {"app-id": instance.default_app.id, "as-guest": "true"})
    assert response.status_code == 200
    actor = response.json()["actor"]
    assert actor["admin"] is False
    assert actor["user"] is None
    assert set(actor["request"]) == {"ip", "origin"}


def test_as_guest_with_any_value_even_false(client, instance):
    response = _query(client, {"app-id": instance.default_app.id, "as-guest": "false"})
    assert response.json()["actor"]["admin"] is False


def test_as_email_requires_and_checks_the_admin_token(client, instance, fake_engine):
    fake_engine.add_user("alice@example.com")
    app = instance.default_app
    missing = _query(client, {"app-id": app.id, "as-email": "alice@example.com"})
    assert missing.status_code == 400
    assert missing.json()["type"] == "param-missing"
    wrong = _query(
        client,
        {
            "app-id": app.id,
            "as-email": "alice@example.com",
            "authorization": f"Bearer {uuid.uuid4()}",
        },
    )
    assert wrong.json()["type"] == "record-not-found"
    assert wrong.json()["hint"]["record-type"] == "app-admin-token"


def test_as_email_runs_as_that_user(client, admin_headers, fake_engine):
    alice = fake_engine.add_user("alice@example.com")
    response = _query(client, {**admin_headers, "as-email": "alice@example.com"})
    assert response.status_code == 200
    assert response.json()["actor"]["user"] == alice


def test_as_email_for_an_unknown_user_is_record_not_found(client, admin_headers):
    response = _query(client, {**admin_headers, "as-email": "nobody@example.com"})
    assert response.status_code == 400
    assert response.json()["message"] == "Record not found: app-user"


def test_as_token_needs_no_admin_token_and_ignores_a_wrong_one(client, instance, fake_engine):
    user, _ = fake_engine.create_refresh_token(email="bob@example.com")
    headers = {
        "app-id": instance.default_app.id,
        "as-token": user["refresh_token"],
        "authorization": "Bearer not-even-a-uuid",
    }
    response = _query(client, headers)
    assert response.status_code == 200
    assert response.json()["actor"]["user"]["email"] == "bob@example.com"


def test_as_token_malformed_and_unknown(client, instance):
    app_id = instance.default_app.id
    malformed = _query(client, {"app-id": app_id, "as-token": "secret-ish-value"})
    assert malformed.status_code == 400
    assert malformed.json()["type"] == "param-malformed"
    assert malformed.json()["hint"]["in"] == ["asUser", "token"]
    assert "secret-ish-value" not in malformed.text
    unknown = _query(client, {"app-id": app_id, "as-token": str(uuid.uuid4())})
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "Record not found: app-user"


def test_as_token_wins_over_as_email_and_as_guest(client, admin_headers, fake_engine):
    fake_engine.add_user("alice@example.com")
    bob, _ = fake_engine.create_refresh_token(email="bob@example.com")
    headers = {
        **admin_headers,
        "as-token": bob["refresh_token"],
        "as-email": "alice@example.com",
        "as-guest": "true",
    }
    assert _query(client, headers).json()["actor"]["user"]["email"] == "bob@example.com"
    del headers["as-token"]
    assert _query(client, headers).json()["actor"]["user"]["email"] == "alice@example.com"


def test_origin_reaches_the_rules_context(client, instance):
    headers = {"app-id": instance.default_app.id, "as-guest": "1", "origin": "https://x.test"}
    assert _query(client, headers).json()["actor"]["request"]["origin"] == "https://x.test"


# -- the perms-check routes need both ------------------------------------------------------


def test_perms_check_without_impersonation_cannot_test_as_admin(client, admin_headers):
    for route, body in [
        ("/admin/query_perms_check", QUERY),
        ("/admin/transact_perms_check", {"steps": []}),
    ]:
        response = client.post(route, json=body, headers=admin_headers)
        assert response.status_code == 400
        assert response.json()["type"] == "validation-failed"
        assert response.json()["message"] == (
            "Validation failed for non-admin: Cannot test perms as admin"
        )


def test_perms_check_needs_the_admin_token_even_with_as_guest(client, instance):
    headers = {"app-id": instance.default_app.id, "as-guest": "true"}
    response = client.post("/admin/query_perms_check", json=QUERY, headers=headers)
    assert response.status_code == 400
    assert response.json()["type"] == "param-missing"


def test_perms_check_passes_overrides_and_options(client, admin_headers):
    headers = {**admin_headers, "as-guest": "true"}
    rules = {"goals": {"allow": {"view": "false"}}}
    response = client.post(
        "/admin/query_perms_check",
        json={**QUERY, "rules-override": rules, "ip-override": "10.1.2.3"},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["rules-override"] == rules
    assert response.json()["actor"]["request"]["ip"] == "10.1.2.3"
    tx = client.post(
        "/admin/transact_perms_check",
        json={"steps": [["update", "goals", str(uuid.uuid4()), {}]], "dangerously-commit-tx": True},
        headers=headers,
    )
    assert tx.status_code == 200
    assert tx.json()["committed?"] is True


def test_rules_override_must_be_an_object(client, admin_headers):
    response = client.post(
        "/admin/query_perms_check",
        json={**QUERY, "rules-override": "nope"},
        headers={**admin_headers, "as-guest": "true"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "param-malformed"
    assert response.json()["hint"]["in"] == ["body", "rules-override"]


# -- bodies --------------------------------------------------------------------------------


def test_malformed_json_is_a_plain_text_400(client, admin_headers):
    response = client.post("/admin/query", content=b'{"query": ', headers=admin_headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Malformed JSON in request body."


@pytest.mark.parametrize("raw", [b"NaN", b'{"query": {"n": Infinity}}', b"\xff\xfe"])
def test_non_json_values_are_malformed_json(client, admin_headers, raw):
    response = client.post("/admin/query", content=raw, headers=admin_headers)
    assert response.status_code == 400
    assert response.text == "Malformed JSON in request body."


# Valid JSON numbers beyond a double's range: float() makes the first ones infinities,
# the integers have no double at all.
OUT_OF_RANGE = ["1e400", "-1e400", "1E+999", "1.8e308", "-2e308", "1" + "0" * 309, "-" + "9" * 400]


@pytest.mark.parametrize("literal", OUT_OF_RANGE)
@pytest.mark.parametrize(
    "template",
    [
        '{"query": {"goals": {"$": {"limit": %s}}}}',
        '{"query": {"goals": {"$": {"where": {"n": [1, {"deep": [%s]}]}}}}}',
        "%s",
    ],
    ids=["option", "nested", "bare"],
)
def test_a_number_out_of_range_is_a_400_naming_it(client, admin_headers, template, literal):
    body = (template % literal).encode()
    response = client.post("/admin/query", content=body, headers=admin_headers)
    assert response.status_code == 400
    answer = response.json()
    assert answer["type"] == "validation-failed"
    assert "out of range: JSON numbers must be finite doubles" in answer["message"]
    shown = answer["hint"]["number"]
    assert shown in answer["message"]
    assert answer["hint"]["data-type"] == "body"
    if len(literal) <= 40:
        assert shown == literal
    else:  # a long literal is cut, with its length
        assert shown.startswith(literal[:24])
        assert f"({len(literal)} characters)" in shown


@pytest.mark.parametrize(
    "literal",
    [
        "1.7976931348623157e308",  # the largest double
        "-1.7976931348623157e308",
        "1e-400",  # underflows to 0.0, which is a double
        "179769313486231570814527423731704356798070567525844996598917476803157260780028538"
        "760589558632766878171540458953514382464234321326889464182768467546703537516986049"
        "910576551282076245490090389328944075868508455133942304583236903222948165808559332"
        "123348274797826204144723168738177180919299881250404026184124858368",  # its integer
        "123456789012345678901234567890",
    ],
)
def test_numbers_in_range_are_parsed_as_before(literal):
    from instantdb_local.routes._plumbing import parse_json_body

    assert parse_json_body(f'{{"n": [{literal}]}}'.encode()) == {"n": [json.loads(literal)]}


def test_an_error_body_that_json_cannot_carry_is_still_answered(
    client, admin_headers, fake_engine, caplog
):
    # Belt and braces: an engine error echoing an infinity (or a lone surrogate, or an
    # object) is answered with those as text, never a 500.
    from instantdb_local import errors

    fake_engine.boom = errors.validation_failed(
        "query",
        {"limit": float("inf"), "low": float("-inf"), "nan": float("nan"), "s": "\ud800"},
        [{"message": "The limit field must be a positive integer. Got Infinity."}],
    )
    fake_engine.boom.hint["odd"] = {("a", 1): {1, 2}, 2.5: object, float("inf"): None}
    with caplog.at_level(logging.WARNING, logger="instantdb_local"):
        response = _query(client, admin_headers)
    assert response.status_code == 400
    answer = response.json()
    assert answer["type"] == "validation-failed"
    assert answer["hint"]["input"] == {
        "limit": "Infinity",
        "low": "-Infinity",
        "nan": "NaN",
        "s": "\ud800",
    }
    assert answer["hint"]["odd"] == {"('a', 1)": "{1, 2}", "2.5": str(object), "Infinity": None}
    assert "sent as text" in caplog.text


def test_a_plain_text_error_that_utf8_cannot_carry_is_still_answered(
    client, admin_headers, fake_engine
):
    from instantdb_local.errors import ServerError

    fake_engine.boom = ServerError(None, "bad \udc80 text", status=400)
    response = _query(client, admin_headers)
    assert response.status_code == 400
    assert response.text == "bad \\udc80 text"


@pytest.mark.parametrize("body", [b"", b"[1, 2]", b'"text"', b"null"])
def test_a_body_that_is_not_an_object_misses_its_parameters(client, admin_headers, body):
    response = client.post("/admin/query", content=body, headers=admin_headers)
    assert response.status_code == 400
    assert response.json()["type"] == "param-missing"
    assert response.json()["hint"] == {"in": ["body", "query"]}


def test_query_that_is_not_a_map_is_malformed(client, admin_headers):
    response = client.post("/admin/query", json={"query": [1]}, headers=admin_headers)
    assert response.json()["type"] == "param-malformed"
    assert response.json()["hint"] == {"in": ["body", "query"], "original-input": [1]}


def test_steps_missing_or_not_a_collection(client, admin_headers):
    missing = client.post("/admin/transact", json={}, headers=admin_headers)
    assert missing.json()["hint"] == {"in": ["body", "steps"]}
    scalar = client.post("/admin/transact", json={"steps": 3}, headers=admin_headers)
    assert scalar.json()["type"] == "param-malformed"


def test_transact_answers_the_tx_id(client, admin_headers):
    first = client.post("/admin/transact", json={"steps": []}, headers=admin_headers)
    second = client.post("/admin/transact", json={"steps": []}, headers=admin_headers)
    assert first.json() == {"tx-id": 1}
    assert second.json() == {"tx-id": 2}


def test_body_over_the_limit_is_413(instance, admin_headers):
    from instantdb_local.app import create_app

    with TestClient(create_app(instance, max_body_bytes=64)) as small:
        big = {"query": {"goals": {"$": {"where": {"title": "x" * 100}}}}}
        response = small.post("/admin/query", json=big, headers=admin_headers)
        assert response.status_code == 413
        assert "limit of 64 bytes" in response.json()["message"]
        # Without a content-length the limit still holds (chunked upload).
        chunked = small.post(
            "/admin/query", content=iter([b"{", b" " * 100, b"}"]), headers=admin_headers
        )
        assert chunked.status_code == 413
        assert small.post("/admin/query", json=QUERY, headers=admin_headers).status_code == 200


# -- routes and errors ---------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/admin/query")])
def test_unknown_routes_and_methods_answer_the_servers_404(client, method, path):
    response = client.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"message": "Oops! We couldn't match this route."}


def test_unexpected_exception_is_a_500_unknown_without_a_traceback(
    client, admin_headers, fake_engine, caplog
):
    fake_engine.boom = ZeroDivisionError("secret internals")
    with caplog.at_level(logging.ERROR, logger="instantdb_local"):
        response = _query(client, admin_headers)
    assert response.status_code == 500
    assert response.json() == {
        "type": "unknown",
        "message": "Something went wrong. Sorry about this!",
        "hint": {"debug-uri": None},
    }
    assert "secret internals" not in response.text
    assert "ZeroDivisionError" in caplog.text
    assert admin_headers["authorization"].split()[1] not in caplog.text
    # The server is still answering.
    fake_engine.boom = None
    assert _query(client, admin_headers).status_code == 200


def test_server_errors_keep_their_type_and_status(client, admin_headers, fake_engine):
    from instantdb_local import errors

    fake_engine.boom = errors.rate_limited("slow down")
    response = _query(client, admin_headers)
    assert response.status_code == 429
    assert response.json()["type"] == "rate-limited"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/storage/signed-upload-url"),
        ("GET", "/admin/storage/signed-download-url"),
        ("GET", "/admin/soft_deleted_attrs"),
    ],
)
def test_pending_routes_answer_501_unsupported(client, method, path):
    response = client.request(method, path)
    assert response.status_code == 501
    assert response.json()["type"] == "unsupported"
    assert "not supported by the local Instant server" in response.json()["message"]


def test_schema_route_is_admin_only(client, admin_headers, instance):
    assert client.get("/admin/schema", headers=admin_headers).json() == {
        "schema": {"refs": {}, "blobs": {}}
    }
    guest = client.get(
        "/admin/schema", headers={"app-id": instance.default_app.id, "as-guest": "1"}
    )
    assert guest.json()["type"] == "param-missing"


def test_health(client):
    assert client.get("/health").json() == {"status": "ok", "server": "instantdb-local"}


def test_engines_run_off_the_event_loop(client, admin_headers, fake_engine):
    import threading

    seen: list[str] = []
    original = FakeEngine.query

    def spy(self, *args, **kwargs):
        seen.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    fake_engine.query = spy.__get__(fake_engine)
    _query(client, admin_headers)
    # Engine calls block on SQLite, so they run in anyio's worker threads.
    assert len(seen) == 1
    assert seen[0].startswith("AnyIO worker thread")
