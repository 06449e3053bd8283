"""Constructor arguments and environment variables -> one frozen `Settings`.

Everything a request needs to know about the client lives here, and nothing in here
ever shows a secret: the admin token and an impersonation refresh token are masked in
every repr.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlsplit

import httpx

from ._arguments import header_text, required_text
from ._errors import InstantError, InstantTypeError, InstantValueError
from ._retry import RetryPolicy

__all__ = [
    "DEFAULT_API_URI",
    "DEFAULT_TIMEOUT",
    "Impersonation",
    "Settings",
    "resolve_settings",
]

DEFAULT_API_URI = "https://api.instantdb.com"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

ENV_APP_ID = "INSTANT_APP_ID"
ENV_ADMIN_TOKEN = "INSTANT_APP_ADMIN_TOKEN"
ENV_API_URI = "INSTANT_API_URI"


@dataclass(frozen=True)
class Impersonation:
    """Who an ``as_user`` client acts as: exactly one of an email, a token or a guest."""

    kind: Literal["email", "token", "guest"]
    value: str = field(repr=False)

    @property
    def header(self) -> tuple[str, str]:
        return (f"as-{self.kind}", self.value)

    @property
    def secret(self) -> str | None:
        """The refresh token, which must never be shown, or None."""
        return self.value if self.kind == "token" else None

    def describe(self) -> str:
        if self.kind == "email":
            return f"email={self.value!r}"
        if self.kind == "token":
            return "token=***"
        return "guest=True"

    def __repr__(self) -> str:
        return f"Impersonation({self.describe()})"

    @classmethod
    def from_arguments(cls, *, email: str | None, token: str | None, guest: bool) -> Impersonation:
        if not isinstance(guest, bool):
            raise InstantTypeError(f"as_user(guest=...) takes True or False, got {guest!r}")
        given = [
            name
            for name, present in (("email", email is not None), ("token", token is not None))
            if present
        ] + (["guest"] if guest else [])
        if len(given) != 1:
            got = " and ".join(given) if given else "none of them"
            raise InstantValueError(
                f"as_user() takes exactly one of email=..., token=... or guest=True; got {got}"
            )
        if guest:
            return cls("guest", "true")
        if email is not None:
            text = required_text(email, "as_user(email=...)")
            return cls("email", header_text(text, "as_user(email=...)"))
        assert token is not None
        text = required_text(token, "as_user(token=...)")
        return cls("token", header_text(text, "as_user(token=...)", secret=True))


@dataclass(frozen=True)
class Settings:
    """Everything requests need to know about one client (a root or an ``as_user`` clone)."""

    app_id: str
    admin_token: str | None = field(repr=False)
    api_uri: str
    timeout: httpx.Timeout = field(repr=False)
    retry: RetryPolicy = field(repr=False)
    impersonation: Impersonation | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in messages or reprs."""
        found = (self.admin_token, self.impersonation.secret if self.impersonation else None)
        return tuple(secret for secret in found if secret)

    def impersonating(self, impersonation: Impersonation) -> Settings:
        return replace(self, impersonation=impersonation)

    def __repr__(self) -> str:
        token = "***" if self.admin_token else None
        user = f", as_user={self.impersonation.describe()}" if self.impersonation else ""
        return (
            f"Settings(app_id={self.app_id!r}, api_uri={self.api_uri!r}, admin_token={token}{user})"
        )


def resolve_settings(
    *,
    app_id: str | None,
    admin_token: str | None,
    api_uri: str | None,
    timeout: float | httpx.Timeout,
    retry: RetryPolicy | bool,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate the constructor arguments, falling back to the environment."""
    env = os.environ if environ is None else environ
    return Settings(
        app_id=_app_id(app_id, env),
        admin_token=_admin_token(admin_token, env),
        api_uri=_api_uri(api_uri, env),
        timeout=_timeout(timeout),
        retry=_retry_policy(retry),
    )


def _app_id(value: str | None, env: Mapping[str, str]) -> str:
    source = "app_id"
    if value is None:
        value, source = env.get(ENV_APP_ID), ENV_APP_ID
    if value is not None and not isinstance(value, str):
        raise InstantTypeError(f"app_id must be a str, got {type(value).__name__}")
    value = (value or "").strip()
    if not value:
        empty = f" ({source} is empty)" if source == "app_id" or ENV_APP_ID in env else ""
        raise InstantError(
            f"No app id{empty}: pass app_id=... to the client, or set the {ENV_APP_ID} "
            "environment variable. Find it on your app's dashboard page."
        )
    return header_text(value, source)


def _admin_token(value: str | None, env: Mapping[str, str]) -> str | None:
    # An explicit "" means "no token, and do not read the environment": as_user clones
    # and tests rely on it to stay token-less whatever the environment says.
    if value is None:
        value = env.get(ENV_ADMIN_TOKEN)
    if value is not None and not isinstance(value, str):
        raise InstantTypeError(f"admin_token must be a str, got {type(value).__name__}")
    token = (value or "").strip() or None
    return None if token is None else header_text(token, "admin_token", secret=True)


def _api_uri(value: str | None, env: Mapping[str, str]) -> str:
    source = "api_uri"
    if value is not None and not isinstance(value, str):
        raise InstantTypeError(f"api_uri must be a str, got {type(value).__name__}")
    if not (value or "").strip():
        value, source = env.get(ENV_API_URI), ENV_API_URI
    uri = (value or "").strip().rstrip("/") or DEFAULT_API_URI
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InstantValueError(
            f"{source} must be an http(s) URL such as {DEFAULT_API_URI!r} or "
            f"'http://localhost:8888', got {uri!r}"
        )
    if parts.query or parts.fragment:
        raise InstantValueError(f"{source} must not have a query or fragment, got {uri!r}")
    return uri


def _timeout(value: float | httpx.Timeout) -> httpx.Timeout:
    if value is None:
        raise InstantTypeError(
            "timeout=None is ambiguous: leave it out for the default (60 s, connect 10 s), "
            "or pass httpx.Timeout(None) to wait forever"
        )
    if isinstance(value, httpx.Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InstantTypeError(
            f"timeout must be a number of seconds or an httpx.Timeout, got {value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise InstantValueError(f"timeout must be a positive number of seconds, got {value!r}")
    return httpx.Timeout(float(value))


def _retry_policy(value: RetryPolicy | bool) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    if value is True:
        return RetryPolicy()
    if value is False:
        return RetryPolicy.disabled()
    raise InstantTypeError(
        f"retry must be a RetryPolicy, True (the default policy) or False (no retries), "
        f"got {value!r}"
    )
