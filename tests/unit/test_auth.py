"""db.auth and db.rooms: requests, results, and the admin-only rule (both clients)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from instantdb import (
    InstantAPIError,
    InstantError,
    InstantServerError,
    InstantTypeError,
    InstantValueError,
)
from instantdb._protocol._call import USER_AGENT
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, REFRESH_TOKEN, ClientHarness
from tests.unit.test_requests import BASE, our_headers, standard

USER = {
    "id": "b0000000-0000-4000-8000-000000000001",
    "email": "a@b.c",
    "refresh_token": REFRESH_TOKEN,
}
USER_ID = USER["id"]


def sent(harness: ClientHarness) -> tuple[str, str, list[tuple[str, str]], dict[str, str], Any]:
    request = harness.api.last
    body = json.loads(request.content) if request.content else None
    return (
        request.method,
        request.url.path,
        list(request.url.params.multi_items()),
        our_headers(request),
        body,
    )


CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any], tuple[Any, ...], Any]] = [
    # method, args, kwargs, server answer, (http method, path, extra params, body), result
    (
        "send_magic_code",
        ("a@b.c",),
        {},
        {"code": "424242"},
        ("POST", "/admin/send_magic_code", [], {"email": "a@b.c"}),
        "424242",
    ),
    (
        "generate_magic_code",
        ("a@b.c",),
        {},
        {"code": "1"},
        ("POST", "/admin/magic_code", [], {"email": "a@b.c"}),
        "1",
    ),
    (
        "check_magic_code",
        (),
        {"email": "a@b.c", "code": "123456"},
        {"user": USER, "created": True},
        ("POST", "/admin/verify_magic_code", [], {"email": "a@b.c", "code": "123456"}),
        (USER, True),
    ),
    (
        "check_magic_code",
        (),
        {"email": "a@b.c", "code": "123456", "extra_fields": {"plan": "pro"}},
        {"user": USER, "created": False},
        (
            "POST",
            "/admin/verify_magic_code",
            [],
            {"email": "a@b.c", "code": "123456", "extra-fields": {"plan": "pro"}},
        ),
        (USER, False),
    ),
    (
        "create_token",
        (),
        {"email": "a@b.c"},
        {"user": USER, "created": True},
        ("POST", "/admin/refresh_tokens", [], {"email": "a@b.c"}),
        REFRESH_TOKEN,
    ),
    (
        "create_token",
        (),
        {"id": USER_ID},
        {"user": USER},
        ("POST", "/admin/refresh_tokens", [], {"id": USER_ID}),
        REFRESH_TOKEN,
    ),
    (
        "create_token",
        (),
        {"email": "a@b.c", "extra_fields": {"nick": "al"}},
        {"user": USER},
        ("POST", "/admin/refresh_tokens", [], {"email": "a@b.c", "extra-fields": {"nick": "al"}}),
        REFRESH_TOKEN,
    ),
    (
        "get_user",
        (),
        {"email": "a@b.c"},
        {"user": USER},
        ("GET", "/admin/users", [("email", "a@b.c")], None),
        USER,
    ),
    (
        "get_user",
        (),
        {"id": USER_ID},
        {"user": None},
        ("GET", "/admin/users", [("id", USER_ID)], None),
        None,
    ),
    (
        "get_user",
        (),
        {"refresh_token": REFRESH_TOKEN},
        {"user": USER},
        ("GET", "/admin/users", [("refresh_token", REFRESH_TOKEN)], None),
        USER,
    ),
    (
        "delete_user",
        (),
        {"email": "a@b.c"},
        {"deleted": USER},
        ("DELETE", "/admin/users", [("email", "a@b.c")], None),
        USER,
    ),
    (
        "delete_user",
        (),
        {"id": USER_ID},
        {"deleted": None},
        ("DELETE", "/admin/users", [("id", USER_ID)], None),
        None,
    ),
    (
        "sign_out",
        (),
        {"email": "a@b.c"},
        {"ok": True},
        ("POST", "/admin/sign_out", [], {"email": "a@b.c"}),
        None,
    ),
    (
        "sign_out",
        (),
        {"refresh_token": REFRESH_TOKEN},
        {"ok": True},
        ("POST", "/admin/sign_out", [], {"refresh_token": REFRESH_TOKEN}),
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{'-'.join(c[2]) or 'email'}" for c in CASES])
def test_auth_calls(harness: ClientHarness, case: tuple[Any, ...]) -> None:
    method, args, kwargs, answer, (http_method, path, params, body), result = case
    harness.api.queue(httpx.Response(200, json=answer))
    db = harness.make()
    assert harness.call(db.auth, method, *args, **kwargs) == result
    assert sent(harness) == (http_method, path, [("app_id", APP_ID), *params], standard(), body)


def test_verify_token_sends_no_credentials(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"user": USER}))
    db = harness.make().as_user(email="x@y.z")
    assert harness.call(db.auth, "verify_token", REFRESH_TOKEN) == USER
    assert sent(harness) == (
        "POST",
        "/runtime/auth/verify_refresh_token",
        [("app_id", APP_ID)],
        {"content-type": "application/json", "user-agent": USER_AGENT},
        {"app-id": APP_ID, "refresh-token": REFRESH_TOKEN},
    )


def test_verify_token_works_without_an_admin_token(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"user": USER}))
    db = harness.make(admin_token="")
    assert harness.call(db.auth, "verify_token", REFRESH_TOKEN) == USER


def test_auth_never_sends_an_as_user_identity(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"code": "1"}))
    scoped = harness.make().as_user(token=REFRESH_TOKEN)
    harness.call(scoped.auth, "generate_magic_code", "a@b.c")
    assert our_headers(harness.api.last) == standard()


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("send_magic_code", {"email": "a@b.c"}),
        ("create_token", {"email": "a@b.c"}),
        ("get_user", {"email": "a@b.c"}),
        ("sign_out", {"id": USER_ID}),
    ],
)
def test_admin_auth_calls_need_an_admin_token(
    harness: ClientHarness, method: str, kwargs: dict[str, Any]
) -> None:
    db = harness.make(admin_token="").as_user(token=REFRESH_TOKEN)
    with pytest.raises(InstantError, match=rf"db\.auth\.{method}\(\) needs an admin token"):
        harness.call(db.auth, method, **kwargs)
    assert harness.api.requests == []


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "message"),
    [
        (
            "get_user",
            {},
            InstantValueError,
            r"exactly one of email=\.\.\., id=\.\.\., refresh_token=\.\.\.; got none",
        ),
        ("get_user", {"email": "a@b.c", "id": USER_ID}, InstantValueError, "got email and id"),
        ("delete_user", {}, InstantValueError, "delete_user.. takes exactly one"),
        (
            "sign_out",
            {"email": "a", "refresh_token": "t"},
            InstantValueError,
            "got email and refresh_token",
        ),
        (
            "create_token",
            {},
            InstantValueError,
            r"exactly one of email=\.\.\., id=\.\.\.; got none",
        ),
        ("create_token", {"email": "a", "id": "b"}, InstantValueError, "got email and id"),
        ("create_token", {"email": 5}, InstantTypeError, "email must be a str"),
        (
            "create_token",
            {"email": "a", "extra_fields": ["x"]},
            InstantTypeError,
            "dict for extra_fields",
        ),
        ("get_user", {"id": "  "}, InstantValueError, "id must not be empty"),
        (
            "check_magic_code",
            {"email": "a@b.c", "code": 123456},
            InstantTypeError,
            "code must be a str",
        ),
        ("send_magic_code", {"email": ""}, InstantValueError, "email must not be empty"),
        ("verify_token", {"token": None}, InstantTypeError, "token must be a str"),
    ],
)
def test_bad_auth_arguments_fail_before_any_request(
    harness: ClientHarness,
    method: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    db = harness.make()
    with pytest.raises(error, match=message):
        harness.call(db.auth, method, **kwargs)
    assert harness.api.requests == []


@pytest.mark.parametrize(
    ("method", "kwargs", "answer", "message"),
    [
        ("send_magic_code", {"email": "a@b.c"}, {}, "answered without a code"),
        ("create_token", {"email": "a@b.c"}, {"user": {"id": "x"}}, "without a refresh_token"),
        ("verify_token", {"token": REFRESH_TOKEN}, {"user": None}, "without a 'user' object"),
        ("get_user", {"email": "a@b.c"}, {"user": "x"}, "not an object"),
    ],
)
def test_unexpected_answers_are_errors(
    harness: ClientHarness, method: str, kwargs: dict[str, Any], answer: Any, message: str
) -> None:
    harness.api.queue(httpx.Response(200, json=answer))
    with pytest.raises(InstantAPIError, match=message):
        harness.call(harness.make().auth, method, **kwargs)


@pytest.mark.parametrize(
    ("method", "kwargs", "retried"),
    [
        ("get_user", {"email": "a@b.c"}, True),
        ("verify_token", {"token": REFRESH_TOKEN}, True),
        ("sign_out", {"email": "a@b.c"}, True),
        ("send_magic_code", {"email": "a@b.c"}, False),
        ("check_magic_code", {"email": "a@b.c", "code": "1"}, False),
        ("create_token", {"email": "a@b.c"}, False),
        ("delete_user", {"email": "a@b.c"}, False),
    ],
)
def test_which_auth_calls_retry_an_unavailable_server(
    harness: ClientHarness, method: str, kwargs: dict[str, Any], retried: bool
) -> None:
    from instantdb import RetryPolicy

    harness.api.queue(httpx.Response(503, text="busy"))
    harness.api.default = lambda request: httpx.Response(
        200, json={"user": USER, "code": "1", "deleted": None, "ok": True}
    )
    db = harness.make(retry=RetryPolicy(initial_backoff=0, max_backoff=0))
    if retried:
        harness.call(db.auth, method, **kwargs)
        assert len(harness.api.requests) == 2
    else:
        with pytest.raises(InstantServerError):
            harness.call(db.auth, method, **kwargs)
        assert len(harness.api.requests) == 1


def test_refresh_tokens_stay_out_of_errors_and_logs(
    harness: ClientHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.api.queue(httpx.Response(400, json={"message": f"no user for {REFRESH_TOKEN}"}))
    db = harness.make()
    with caplog.at_level(logging.DEBUG), pytest.raises(InstantAPIError) as caught:
        harness.call(db.auth, "get_user", refresh_token=REFRESH_TOKEN)
    assert str(caught.value) == "no user for <redacted>"
    assert harness.api.last.url.params["refresh_token"] == REFRESH_TOKEN  # the wire has it
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert REFRESH_TOKEN not in record.getMessage()
        assert ADMIN_TOKEN not in record.getMessage()


# --- rooms -----------------------------------------------------------------------------


def test_get_presence(harness: ClientHarness) -> None:
    sessions = {"s1": {"peer-id": "s1", "data": {"x": 1}, "user": None}}
    harness.api.queue(httpx.Response(200, json={"sessions": sessions}))
    scoped = harness.make().as_user(email="a@b.c")
    assert harness.call(scoped.rooms, "get_presence", "chat", "room 1") == sessions
    request = harness.api.last
    assert (
        str(request.url)
        == f"{BASE}/admin/rooms/presence?app_id={APP_ID}&room-type=chat&room-id=room+1"
    )
    assert our_headers(request) == standard()  # always as admin: no as-email


def test_empty_room_is_an_empty_dict(harness: ClientHarness) -> None:
    harness.api.queue(httpx.Response(200, json={"sessions": None}))
    assert harness.call(harness.make().rooms, "get_presence", "chat", "empty") == {}


@pytest.mark.parametrize(
    ("args", "error"), [(("", "r"), InstantValueError), (("chat", 3), InstantTypeError)]
)
def test_get_presence_checks_its_arguments(
    harness: ClientHarness, args: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        harness.call(harness.make().rooms, "get_presence", *args)
    assert harness.api.requests == []


def test_text_a_url_cannot_carry_is_refused_before_sending(harness: ClientHarness) -> None:
    # A lone surrogate is not UTF-8: httpx would fail with a raw UnicodeEncodeError.
    with pytest.raises(InstantValueError, match=r"'room-id' query parameter.*lone surrogate"):
        harness.call(harness.make().rooms, "get_presence", "chat", "\ud800")
    with pytest.raises(InstantValueError, match="'refresh_token' query parameter") as caught:
        harness.call(harness.make().auth, "get_user", refresh_token="secret\udc80value")
    assert "secret" not in str(caught.value)  # tokens travel in params: never shown
    assert harness.api.requests == []


def test_get_presence_needs_an_admin_token(harness: ClientHarness) -> None:
    db = harness.make(admin_token="").as_user(guest=True)
    with pytest.raises(InstantError, match=r"db\.rooms\.get_presence\(\) needs an admin token"):
        harness.call(db.rooms, "get_presence", "chat", "r")
