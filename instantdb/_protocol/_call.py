"""The value types every feature module builds (`Request`, `Call`) or reads (`Response`),
and the three header sets of the admin API.

Header sets (the wire protocol, §2.2):

* standard: ``content-type``, ``app-id``, the two version headers, ``user-agent``,
  ``authorization`` when there is an admin token, and the ``as-*`` header of an
  ``as_user`` client;
* admin-only: the standard set without the ``as-*`` header (for routes that always
  run as admin), and an admin token is required;
* unauthenticated: only ``content-type`` and ``user-agent``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from instantdb._errors import InstantError, InstantValueError
from instantdb._json import dumps
from instantdb._retry import RetrySafety
from instantdb._settings import ENV_ADMIN_TOKEN, Settings
from instantdb._upload import UploadSource
from instantdb._version import __version__

__all__ = [
    "USER_AGENT",
    "Call",
    "Request",
    "Response",
    "admin_only_headers",
    "json_request",
    "standard_headers",
    "unauthenticated_headers",
]

T = TypeVar("T")

USER_AGENT = f"instantdb-python/{__version__} httpx/{httpx.__version__}"
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Request:
    """One HTTP request, to a path under the client's API base URL (or to ``url``)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | UploadSource | None = None
    """A JSON body, or a file to stream (the transport adds its exact content-length)."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values in this request that must never be shown (tokens); errors are scrubbed of them."""
    url: str | None = None
    """An absolute URL to use instead of the API base URL + ``path`` (file downloads)."""
    save_to: Path | None = None
    """Stream the answer's body into this file instead of keeping it in memory."""

    @property
    def target(self) -> str:
        """How messages and logs name what was requested (a signed URL is never shown)."""
        return self.path if self.url is None else "<file url>"

    def __repr__(self) -> str:
        params = [(key, "***" if value in self.secrets else value) for key, value in self.params]
        if self.content is None:
            body = "no body"
        elif isinstance(self.content, UploadSource):
            body = repr(self.content)
        else:
            body = f"{len(self.content)} bytes"
        return (
            f"Request({self.method} {self.target}, params={params}, "
            f"headers=<{len(self.headers)} headers>, {body})"
        )


@dataclass(frozen=True)
class Response:
    """What came back: status, headers (lower-case names) and the raw body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request, how to read its successful answer, and whether it may be sent twice."""

    request: Request
    parse: Callable[[Response], T]
    safety: RetrySafety


def json_request(
    method: str,
    path: str,
    settings: Settings,
    *,
    headers: Mapping[str, str],
    body: Any = None,
    params: tuple[tuple[str, str], ...] = (),
    secrets: tuple[str, ...] = (),
) -> Request:
    """A request to an app route: ``app_id`` in the query string, ``body`` as JSON.

    ``body`` must already be converted by `instantdb._json.to_json`. ``secrets`` are
    tokens in the params or body, beyond the client's own, to keep out of messages.
    """
    for name, value in params:
        _check_query_text(name, value)
    return Request(
        method=method,
        path=path,
        params=(("app_id", settings.app_id), *params),
        headers=headers,
        content=None if body is None else dumps(body),
        secrets=(*settings.secrets, *secrets),
    )


def _check_query_text(name: str, value: str) -> None:
    """Refuse text a URL cannot carry (a lone surrogate is not UTF-8) before any I/O; the
    value itself is not shown, since some parameters are tokens."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        char = value[exc.start]
        raise InstantValueError(
            f"cannot send the {name!r} query parameter: it holds a lone surrogate "
            f"({char!r}), which is not valid UTF-8. Fix how the text was decoded, e.g. "
            "bytes.decode('utf-8', errors='replace')."
        ) from None


def standard_headers(settings: Settings) -> dict[str, str]:
    """The header set of data routes (query, transact, ...): impersonation applies."""
    headers = _base_headers(settings)
    if settings.admin_token:
        headers["authorization"] = f"Bearer {settings.admin_token}"
    impersonation = settings.impersonation
    if impersonation is None:
        if not settings.admin_token:
            raise InstantError(
                f"This client has no admin token. Pass admin_token=... or set "
                f"{ENV_ADMIN_TOKEN}; without one, only db.as_user(token=<refresh token>) "
                "and db.as_user(guest=True) clients can make requests."
            )
    elif impersonation.kind == "email" and not settings.admin_token:
        raise InstantError(
            "as_user(email=...) needs an admin token: only admins may act as a user by "
            f"email. Pass admin_token=... or set {ENV_ADMIN_TOKEN}, or use "
            "as_user(token=<the user's refresh token>)."
        )
    if impersonation is not None:
        name, value = impersonation.header
        headers[name] = value
    return headers


def admin_only_headers(settings: Settings, what: str) -> dict[str, str]:
    """The header set of routes that always run as admin: never an ``as-*`` header."""
    if not settings.admin_token:
        raise InstantError(
            f"{what} needs an admin token, also on an as_user() client. Pass "
            f"admin_token=... or set {ENV_ADMIN_TOKEN}."
        )
    headers = _base_headers(settings)
    headers["authorization"] = f"Bearer {settings.admin_token}"
    return headers


def unauthenticated_headers() -> dict[str, str]:
    """For public routes that must not receive credentials."""
    return {"content-type": JSON_CONTENT_TYPE, "user-agent": USER_AGENT}


def _base_headers(settings: Settings) -> dict[str, str]:
    return {
        "content-type": JSON_CONTENT_TYPE,
        "app-id": settings.app_id,
        "instant-admin-version": __version__,
        "instant-core-version": __version__,
        "user-agent": USER_AGENT,
    }
