"""The user routes the data plane needs: minting and verifying refresh tokens and
looking users up (server-semantics sections 1 and 8).

Magic codes, guests, sign-out and user deletion belong to the auth routes, which are
not implemented yet (see `unsupported`).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from instantdb_local import errors

from ._plumbing import REDACTED, Call, canonical_uuid, coerce_email, is_uuid, json_route


def refresh_tokens(call: Call) -> Any:
    app_id = call.admin_app_id()
    body = call.body_map
    if body.get("extra-fields") is not None:
        raise errors.unsupported("`extra-fields` on /admin/refresh_tokens")
    email = body.get("email")
    user_id = body.get("id")
    if email is None and user_id is None:
        raise errors.validation_failed(
            "body", body, [{"message": "Please provide an `email` or `id`"}]
        )
    if email is not None:
        email = coerce_email(email, ["body", "email"])
    if user_id is not None:
        if not is_uuid(user_id):
            raise errors.param_malformed(["body", "id"], user_id)
        user_id = canonical_uuid(user_id)
    user, created = call.engine(app_id).create_refresh_token(email=email, id=user_id)
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


def get_user(call: Call) -> Any:
    app_id = call.admin_app_id()
    # Checked in the real server's order: email, then refresh_token, then id.
    email = call.query_param("email")
    token = call.query_param("refresh_token")
    user_id = call.query_param("id")
    engine = call.engine(app_id)
    if email is not None:
        user = engine.find_user(email=coerce_email(email, ["params", "email"]))
    elif token is not None:
        if not is_uuid(token):
            raise errors.param_malformed(["params", "refresh_token"], REDACTED)
        user = engine.find_user(refresh_token=canonical_uuid(token))
    elif user_id is not None:
        if not is_uuid(user_id):
            raise errors.param_malformed(["params", "id"], user_id)
        user = engine.find_user(id=canonical_uuid(user_id))
    else:
        raise errors.validation_failed(
            "params",
            dict(call.request.query_params),
            [{"message": "Please provide a user id, email, or refresh_token"}],
        )
    return {"user": user}


ROUTES: list[BaseRoute] = [
    json_route("/admin/refresh_tokens", refresh_tokens, methods=["POST"]),
    json_route("/runtime/auth/verify_refresh_token", verify_refresh_token, methods=["POST"]),
    json_route("/admin/users", get_user, methods=["GET"], reads_body=False),
]
