"""Construction: arguments, environment fallbacks, validation before any I/O."""

from __future__ import annotations

import httpx
import pytest

from instantdb import InstantError, InstantTypeError, InstantValueError, RetryPolicy
from instantdb._settings import DEFAULT_TIMEOUT, Impersonation, resolve_settings
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, REFRESH_TOKEN, ClientHarness


def settings(environ: dict[str, str] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "app_id": APP_ID,
        "admin_token": None,
        "api_uri": None,
        "timeout": DEFAULT_TIMEOUT,
        "retry": True,
    }
    arguments.update(kwargs)
    return resolve_settings(environ=environ or {}, **arguments)  # type: ignore[arg-type]


def test_environment_fills_what_is_not_passed() -> None:
    env = {
        "INSTANT_APP_ID": APP_ID,
        "INSTANT_APP_ADMIN_TOKEN": ADMIN_TOKEN,
        "INSTANT_API_URI": "http://localhost:8888/",
    }
    resolved = settings(env, app_id=None)
    assert resolved.app_id == APP_ID
    assert resolved.admin_token == ADMIN_TOKEN
    assert resolved.api_uri == "http://localhost:8888"


def test_arguments_beat_the_environment() -> None:
    env = {
        "INSTANT_APP_ID": "env-app",
        "INSTANT_APP_ADMIN_TOKEN": "env-token",
        "INSTANT_API_URI": "http://env",
    }
    resolved = settings(env, app_id="arg-app", admin_token="arg-token", api_uri="https://arg.test")
    assert (resolved.app_id, resolved.admin_token, resolved.api_uri) == (
        "arg-app",
        "arg-token",
        "https://arg.test",
    )


def test_values_are_trimmed() -> None:
    resolved = settings(
        app_id=f"  {APP_ID}\n", admin_token=f" {ADMIN_TOKEN} ", api_uri=" https://h.test/ "
    )
    assert resolved.app_id == APP_ID
    assert resolved.admin_token == ADMIN_TOKEN
    assert resolved.api_uri == "https://h.test"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "https://api.instantdb.com"),
        ("", "https://api.instantdb.com"),
        ("https://h.test///", "https://h.test"),
        ("https://h.test/base/", "https://h.test/base"),
        ("http://127.0.0.1:8888/prefix/api", "http://127.0.0.1:8888/prefix/api"),
    ],
)
def test_api_uri_default_and_trailing_slashes(given: str | None, expected: str) -> None:
    assert settings(api_uri=given).api_uri == expected


@pytest.mark.parametrize(
    "bad", ["localhost:8888", "ftp://h.test", "https://", "https://h.test/?x=1", "https://h/#f"]
)
def test_api_uri_must_be_an_http_url(bad: str) -> None:
    with pytest.raises(InstantValueError, match="api_uri must"):
        settings(api_uri=bad)


def test_bad_api_uri_from_the_environment_names_the_variable() -> None:
    with pytest.raises(InstantValueError, match="INSTANT_API_URI must be an http"):
        settings({"INSTANT_API_URI": "localhost"}, app_id=APP_ID)


@pytest.mark.parametrize("app_id", [None, "", "   "])
def test_missing_app_id_names_the_argument_and_variable(app_id: str | None) -> None:
    with pytest.raises(InstantError, match=r"app_id=\.\.\..*INSTANT_APP_ID") as caught:
        settings(app_id=app_id)
    assert type(caught.value) is InstantError


def test_empty_app_id_argument_does_not_fall_back_to_the_environment() -> None:
    with pytest.raises(InstantError, match="app_id is empty"):
        settings({"INSTANT_APP_ID": APP_ID}, app_id="")


def test_empty_admin_token_means_no_token_even_if_the_environment_has_one() -> None:
    assert (
        settings(
            {"INSTANT_APP_ADMIN_TOKEN": ADMIN_TOKEN}, app_id=APP_ID, admin_token=""
        ).admin_token
        is None
    )
    assert settings({"INSTANT_APP_ADMIN_TOKEN": "  "}, app_id=APP_ID).admin_token is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"app_id": 5}, InstantTypeError),
        ({"admin_token": b"x"}, InstantTypeError),
        ({"api_uri": 1}, InstantTypeError),
        ({"timeout": None}, InstantTypeError),
        ({"timeout": "10"}, InstantTypeError),
        ({"timeout": True}, InstantTypeError),
        ({"timeout": 0}, InstantValueError),
        ({"timeout": float("inf")}, InstantValueError),
        ({"retry": None}, InstantTypeError),
        ({"retry": 3}, InstantTypeError),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], error: type[Exception]) -> None:
    kwargs.setdefault("app_id", APP_ID)
    with pytest.raises(error):
        settings(**kwargs)


def test_timeout_forms() -> None:
    assert settings(app_id=APP_ID).timeout == httpx.Timeout(60.0, connect=10.0)
    assert settings(app_id=APP_ID, timeout=5).timeout == httpx.Timeout(5.0)
    custom = httpx.Timeout(1.0, read=30.0)
    assert settings(app_id=APP_ID, timeout=custom).timeout is custom


def test_retry_forms() -> None:
    assert settings(app_id=APP_ID).retry == RetryPolicy()
    assert settings(app_id=APP_ID, retry=False).retry.max_attempts == 1
    policy = RetryPolicy(max_attempts=5)
    assert settings(app_id=APP_ID, retry=policy).retry is policy


def test_timeout_none_explains_itself() -> None:
    with pytest.raises(InstantTypeError, match=r"httpx\.Timeout\(None\)"):
        settings(app_id=APP_ID, timeout=None)


@pytest.mark.parametrize(
    ("kwargs", "kind", "value"),
    [
        ({"email": " a@b.c "}, "email", "a@b.c"),
        ({"token": REFRESH_TOKEN}, "token", REFRESH_TOKEN),
        ({"guest": True}, "guest", "true"),
    ],
)
def test_impersonation_kinds(kwargs: dict[str, object], kind: str, value: str) -> None:
    chosen = Impersonation.from_arguments(
        **{"email": None, "token": None, "guest": False, **kwargs}
    )  # type: ignore[arg-type]
    assert (chosen.kind, chosen.value) == (kind, value)
    assert chosen.header == (f"as-{kind}", value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, InstantValueError, "got none of them"),
        ({"email": "a@b.c", "guest": True}, InstantValueError, "got email and guest"),
        ({"email": "a@b.c", "token": "t"}, InstantValueError, "got email and token"),
        ({"guest": False}, InstantValueError, "exactly one of"),
        ({"guest": "yes"}, InstantTypeError, "True or False"),
        ({"email": ""}, InstantValueError, "must not be empty"),
        ({"token": 5}, InstantTypeError, r"as_user\(token=\.\.\.\) must be a str"),
    ],
)
def test_as_user_needs_exactly_one_identity(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Impersonation.from_arguments(**{"email": None, "token": None, "guest": False, **kwargs})  # type: ignore[arg-type]


def test_clients_read_the_environment(
    monkeypatch: pytest.MonkeyPatch, harness: ClientHarness
) -> None:
    monkeypatch.setenv("INSTANT_APP_ID", APP_ID)
    monkeypatch.setenv("INSTANT_APP_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("INSTANT_API_URI", "http://127.0.0.1:8888/")
    db = harness.client_class(_transport=harness.api.transport())
    harness.clients.append(db)
    harness.call(db, "query", {"goals": {}})
    request = harness.api.last
    assert str(request.url) == f"http://127.0.0.1:8888/admin/query?app_id={APP_ID}"
    assert request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"


def test_missing_app_id_fails_at_construction(harness: ClientHarness) -> None:
    with pytest.raises(InstantError, match="INSTANT_APP_ID"):
        harness.client_class(admin_token=ADMIN_TOKEN)
