"""The auth routes: magic codes, refresh tokens, guests, users (server-semantics
sections 1 and 8).

All but ``verify_refresh_token`` need the admin token and ignore impersonation headers,
like the real server's. The flows themselves are in `instantdb_local.auth`; this module
reads parameters and spends the magic-code rate limits.

The local server sends no email: ``send_magic_code`` logs the code (INFO, logger
``instantdb_local``) and returns it, as the real server also returns it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.datastructures import State
from starlette.routing import BaseRoute

from instantdb_local import auth, errors
from instantdb_local.auth import MagicCodeLimiter

from ._plumbing import REDACTED, Call, canonical_uuid, coerce_email, is_uuid, json_route

logger = logging.getLogger("instantdb_local")

_limiter_lock = threading.Lock()


def magic_code_limiter(state: State) -> MagicCodeLimiter:
    """The server's magic-code limits: ``app.state.magic_code_limiter``, made on first use
    with the real server's defaults unless `routes.configure` set one."""
    limiter = getattr(state, "magic_code_limiter", None)
    if limiter is None:
        with _limiter_lock:
            limiter = getattr(state, "magic_code_limiter", None)
            if limiter is None:
                limiter = MagicCodeLimiter()
                state.magic_code_limiter = limiter
    assert isinstance(limiter, MagicCodeLimiter)
    return limiter


def _limiter(call: Call) -> MagicCodeLimiter:
    return magic_code_limiter(call.request.app.state)


# -- magic codes ----------------------------------------------------------------------------


def generate_magic_code(call: Call) -> Any:
    app_id = call.admin_app_id()
    email = coerce_email(call.body_param("email"), ["body", "email"])
    return {"code": auth.create_magic_code(call.engine(app_id), email)}


def send_magic_code(call: Call) -> Any:
    app_id = call.admin_app_id()
    email = coerce_email(call.body_param("email"), ["body", "email"])
    _limiter(call).spend_send(app_id, email)
    code = auth.create_magic_code(call.engine(app_id), email)
    # No email leaves this server: the log is where a developer finds the code.
    logger.info(
        "Magic code for %s (app %s): %s (not emailed by the local server)", email, app_id, code
    )
    return {"code": code}


def verify_magic_code(call: Call) -> Any:
    app_id = call.admin_app_id()
    email = coerce_email(call.body_param("email"), ["body", "email"])
    code = call.body_param("code")
    limiter = _limiter(call)
    limiter.spend_verify(app_id, email)
    user, created = auth.verify_magic_code(
        call.engine(app_id),
        email=email,
        code=code,
        extra_fields=call.body_map_param("extra-fields", required=False),
        refresh_token=call.body_param("refresh-token", required=False),
        lifetime=limiter.policy.code_lifetime,
    )
    return {"user": user, "created": created}


# -- refresh tokens and guests -------------------------------------------------------------


def refresh_tokens(call: Call) -> Any:
    app_id = call.admin_app_id()
    body = call.body_map
    user, created = auth.create_token(
        call.engine(app_id),
        email=body.get("email"),
        id=body.get("id"),
        extra_fields=call.body_map_param("extra-fields", required=False),
    )
    return {"user": user, "created": created}


def verify_refresh_token(call: Call) -> Any:
    # This route sends no admin token: the app id and the token both come in the body.
    app_id = call.body_param("app-id")
    if not is_uuid(app_id):
        raise errors.param_malformed(["body", "app-id"], app_id)
    app_id = canonical_uuid(app_id)
    token = call.body_param("refresh-token")
    if not is_uuid(token):
        raise errors.param_malformed(["body", "refresh-token"], REDACTED)
    token = canonical_uuid(token)
    user = None
    if call.instance.find_app(app_id) is not None:
        user = call.engine(app_id).find_user(refresh_token=token)
    if user is None:
        raise errors.record_not_found("app-user", args=[{"app-id": app_id}])
    return {"user": {**user, "refresh_token": token}}


def sign_in_guest(call: Call) -> Any:
    app_id = call.admin_app_id()
    extra = call.body_map_param("extra-fields", required=False)
    return {"user": auth.sign_in_guest(call.engine(app_id), extra_fields=extra)}


def sign_out(call: Call) -> Any:
    app_id = call.admin_app_id()
    body = call.body_map
    auth.sign_out(
        call.engine(app_id),
        id=body.get("id"),
        email=body.get("email"),
        refresh_token=body.get("refresh_token"),
    )
    return {"ok": True}


# -- users -----------------------------------------------------------------------------------


def _user_selector(call: Call) -> dict[str, str]:
    """The one query parameter naming a user, checked in the real server's order:
    email, then refresh_token, then id."""
    email = call.query_param("email")
    if email is not None:
        return {"email": coerce_email(email, ["params", "email"])}
    token = call.query_param("refresh_token")
    if token is not None:
        if not is_uuid(token):
            raise errors.param_malformed(["params", "refresh_token"], REDACTED)
        return {"refresh_token": canonical_uuid(token)}
    user_id = call.query_param("id")
    if user_id is not None:
        if not is_uuid(user_id):
            raise errors.param_malformed(["params", "id"], user_id)
        return {"id": canonical_uuid(user_id)}
    raise errors.validation_failed(
        "params",
        dict(call.request.query_params),
        [{"message": "Please provide a user id, email, or refresh_token"}],
    )


def get_user(call: Call) -> Any:
    app_id = call.admin_app_id()
    return {"user": call.engine(app_id).find_user(**_user_selector(call))}


def delete_user(call: Call) -> Any:
    app_id = call.admin_app_id()
    return {"deleted": auth.delete_user(call.engine(app_id), **_user_selector(call))}


ROUTES: list[BaseRoute] = [
    json_route("/admin/magic_code", generate_magic_code, methods=["POST"]),
    json_route("/admin/send_magic_code", send_magic_code, methods=["POST"]),
    json_route("/admin/verify_magic_code", verify_magic_code, methods=["POST"]),
    json_route("/admin/refresh_tokens", refresh_tokens, methods=["POST"]),
    json_route("/runtime/auth/verify_refresh_token", verify_refresh_token, methods=["POST"]),
    json_route("/admin/sign_in_guest", sign_in_guest, methods=["POST"]),
    json_route("/admin/sign_out", sign_out, methods=["POST"]),
    json_route("/admin/users", get_user, methods=["GET"], reads_body=False),
    json_route("/admin/users", delete_user, methods=["DELETE"], reads_body=False),
]
