"""``db.auth``: magic codes, refresh tokens and users (wire protocol §8).

Every call except `verify_token_call` always runs as admin: no ``as-*`` header is sent,
also from an ``as_user`` client (as the JS SDK does), and a client without an admin token
gets a clear error before sending. `verify_token_call` is sent with no credentials at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from instantdb._arguments import required_text
from instantdb._errors import InstantAPIError, InstantValueError
from instantdb._json import mapping_to_json
from instantdb._retry import RetrySafety
from instantdb._settings import Settings

from ._call import (
    Call,
    Request,
    Response,
    admin_only_headers,
    json_request,
    unauthenticated_headers,
)
from ._responses import json_object

__all__ = [
    "check_magic_code_call",
    "create_token_call",
    "delete_user_call",
    "generate_magic_code_call",
    "get_user_call",
    "send_magic_code_call",
    "sign_out_call",
    "verify_token_call",
]

User = dict[str, Any]


def send_magic_code_call(settings: Settings, email: str) -> Call[str]:
    """``POST /admin/send_magic_code``: emails a code to the user and returns it."""
    return _code_call(settings, "/admin/send_magic_code", email, "send_magic_code")


def generate_magic_code_call(settings: Settings, email: str) -> Call[str]:
    """``POST /admin/magic_code``: a code for you to deliver yourself."""
    return _code_call(settings, "/admin/magic_code", email, "generate_magic_code")


def check_magic_code_call(
    settings: Settings, email: str, code: str, extra_fields: Mapping[str, Any] | None
) -> Call[tuple[User, bool]]:
    """``POST /admin/verify_magic_code``: ``(user, created)``; the user has a refresh token."""
    method = "check_magic_code"
    body: dict[str, Any] = {
        "email": required_text(email, f"{method}(): email"),
        "code": required_text(code, f"{method}(): code"),
    }
    if extra_fields is not None:
        body["extra-fields"] = mapping_to_json(extra_fields, method=method, name="extra_fields")
    request = _admin_request(settings, "POST", "/admin/verify_magic_code", method, body=body)

    def parse(response: Response) -> tuple[User, bool]:
        answer = json_object(response, request)
        return _user(answer, "user", request, response), bool(answer.get("created"))

    # Sending it again after it ran would fail: a code works once.
    return Call(request, parse, RetrySafety.UNSENT_ONLY)


def create_token_call(
    settings: Settings, *, email: str | None, id: str | None, extra_fields: Mapping[str, Any] | None
) -> Call[str]:
    """``POST /admin/refresh_tokens``: a refresh token for the user (created if new)."""
    method = "create_token"
    key, value = _exactly_one(method, email=email, id=id)
    body: dict[str, Any] = {key: value}
    if extra_fields is not None:
        body["extra-fields"] = mapping_to_json(extra_fields, method=method, name="extra_fields")
    request = _admin_request(settings, "POST", "/admin/refresh_tokens", method, body=body)

    def parse(response: Response) -> str:
        token = _user(json_object(response, request), "user", request, response).get(
            "refresh_token"
        )
        if not isinstance(token, str):
            raise InstantAPIError(
                "POST /admin/refresh_tokens answered without a refresh_token",
                status=response.status,
                body=None,
            )
        return token

    return Call(request, parse, RetrySafety.UNSENT_ONLY)


def verify_token_call(settings: Settings, token: str) -> Call[User]:
    """``POST /runtime/auth/verify_refresh_token``: the user a refresh token belongs to."""
    token = required_text(token, "verify_token(): token")
    request = json_request(
        "POST",
        "/runtime/auth/verify_refresh_token",
        settings,
        # A public route: it must not receive the admin token.
        headers=unauthenticated_headers(),
        body={"app-id": settings.app_id, "refresh-token": token},
        secrets=(token,),
    )

    def parse(response: Response) -> User:
        return _user(json_object(response, request), "user", request, response)

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def get_user_call(
    settings: Settings, *, email: str | None, id: str | None, refresh_token: str | None
) -> Call[User | None]:
    """``GET /admin/users?<key>=<value>``: the user, or None if there is none."""
    return _users_call(settings, "GET", "get_user", "user", email, id, refresh_token)


def delete_user_call(
    settings: Settings, *, email: str | None, id: str | None, refresh_token: str | None
) -> Call[User | None]:
    """``DELETE /admin/users?<key>=<value>``: the deleted user, or None if there was none."""
    return _users_call(settings, "DELETE", "delete_user", "deleted", email, id, refresh_token)


def sign_out_call(
    settings: Settings, *, email: str | None, id: str | None, refresh_token: str | None
) -> Call[None]:
    """``POST /admin/sign_out``: revokes the user's refresh tokens (or just the one given)."""
    method = "sign_out"
    key, value = _exactly_one(method, email=email, id=id, refresh_token=refresh_token)
    request = _admin_request(
        settings,
        "POST",
        "/admin/sign_out",
        method,
        body={key: value},
        secret=value if key == "refresh_token" else None,
    )

    def parse(response: Response) -> None:
        json_object(response, request)

    return Call(request, parse, RetrySafety.IDEMPOTENT)  # signing out twice changes nothing


def _code_call(settings: Settings, path: str, email: str, method: str) -> Call[str]:
    request = _admin_request(
        settings, "POST", path, method, body={"email": required_text(email, f"{method}(): email")}
    )

    def parse(response: Response) -> str:
        code = json_object(response, request).get("code")
        if not isinstance(code, str):
            raise InstantAPIError(
                f"POST {path} answered without a code", status=response.status, body=None
            )
        return code

    # Not repeated after it may have run: each run makes (and may email) a new code.
    return Call(request, parse, RetrySafety.UNSENT_ONLY)


def _users_call(
    settings: Settings,
    http_method: str,
    method: str,
    answer_key: str,
    email: str | None,
    id: str | None,
    refresh_token: str | None,
) -> Call[User | None]:
    key, value = _exactly_one(method, email=email, id=id, refresh_token=refresh_token)
    request = _admin_request(
        settings,
        http_method,
        "/admin/users",
        method,
        params=((key, value),),
        secret=value if key == "refresh_token" else None,
    )

    def parse(response: Response) -> User | None:
        user = json_object(response, request).get(answer_key)
        if user is not None and not isinstance(user, dict):
            raise InstantAPIError(
                f"{http_method} /admin/users answered with a {answer_key!r} that is not an object",
                status=response.status,
                body=None,
            )
        return user

    # Deleting is not repeated after it may have run: the second answer would say
    # "nothing deleted", hiding what the first one did.
    safety = RetrySafety.IDEMPOTENT if http_method == "GET" else RetrySafety.UNSENT_ONLY
    return Call(request, parse, safety)


def _admin_request(
    settings: Settings,
    http_method: str,
    path: str,
    method: str,
    *,
    body: Any = None,
    params: tuple[tuple[str, str], ...] = (),
    secret: str | None = None,
) -> Request:
    return json_request(
        http_method,
        path,
        settings,
        headers=admin_only_headers(settings, f"db.auth.{method}()"),
        body=body,
        params=params,
        secrets=() if secret is None else (secret,),
    )


def _user(answer: dict[str, Any], key: str, request: Request, response: Response) -> User:
    user = answer.get(key)
    if not isinstance(user, dict):
        raise InstantAPIError(
            f"{request.method} {request.target} answered without a {key!r} object",
            status=response.status,
            body=None,
        )
    return user


def _exactly_one(method: str, **given: str | None) -> tuple[str, str]:
    present = [(key, value) for key, value in given.items() if value is not None]
    if len(present) != 1:
        allowed = ", ".join(f"{key}=..." for key in given)
        got = " and ".join(key for key, _ in present) if present else "none of them"
        raise InstantValueError(f"{method}() takes exactly one of {allowed}; got {got}")
    key, value = present[0]
    return key, required_text(value, f"{method}(): {key}")
