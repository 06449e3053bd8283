"""Webhook routes (live protocol §3.4, §3.6): the manager under ``/dash/apps/{app}/webhooks``
(admin token of that app), the payload route (the delivery's JWT or an admin token) and
the public JWKS. The work is done by `instantdb_local.webhooks.WebhookService`.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from instantdb_local import errors
from instantdb_local.webhooks import WebhookService, service_for

from ._plumbing import Call, canonical_uuid, is_uuid, json_route

_NO_STORE = {
    "Cache-Control": "no-store, private",
    "Pragma": "no-cache",
    "Expires": "0",
    "Vary": "Authorization",
}


def _service(call: Call) -> WebhookService:
    return service_for(call.instance)


def _app_id(call: Call) -> str:
    value = call.request.path_params["app_id"]
    if not is_uuid(value):
        raise errors.param_malformed(["params", "app_id"], value)
    return canonical_uuid(value)


def _admin_app(call: Call) -> str:
    """The path's app id, once the bearer admin token is checked to be that app's."""
    app_id = _app_id(call)
    call.instance.check_admin_token(app_id, call.admin_token())
    return app_id


def _webhook_id(call: Call) -> str:
    value = call.request.path_params["webhook_id"]
    if not is_uuid(value):
        raise errors.record_not_found("webhook", args=[{"id": value}])
    return canonical_uuid(value)


def list_webhooks(call: Call) -> Any:
    return {"webhooks": _service(call).list_webhooks(_admin_app(call))}


def create_webhook(call: Call) -> Any:
    app_id = _admin_app(call)
    return {"webhook": _service(call).create(app_id, call.body_map)}


def update_webhook(call: Call) -> Any:
    app_id = _admin_app(call)
    return {"webhook": _service(call).update(app_id, _webhook_id(call), call.body_map)}


def delete_webhook(call: Call) -> Any:
    app_id = _admin_app(call)
    return {"webhook": _service(call).delete(app_id, _webhook_id(call))}


def enable_webhook(call: Call) -> Any:
    app_id = _admin_app(call)
    return {"webhook": _service(call).set_status(app_id, _webhook_id(call), active=True)}


def disable_webhook(call: Call) -> Any:
    app_id = _admin_app(call)
    reason = call.body_map.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise errors.param_malformed(["body", "reason"], reason)
    webhook = _service(call).set_status(app_id, _webhook_id(call), active=False, reason=reason)
    return {"webhook": webhook}


def list_events(call: Call) -> Any:
    app_id = _admin_app(call)
    return _service(call).events_page(app_id, _webhook_id(call), call.query_param("after"))


def get_event(call: Call) -> Any:
    app_id = _admin_app(call)
    isn = call.request.path_params["isn"]
    return {"event": _service(call).event(app_id, _webhook_id(call), isn).to_json()}


def resend_event(call: Call) -> Any:
    app_id = _admin_app(call)
    isn = call.request.path_params["isn"]
    return {"event": _service(call).resend(app_id, _webhook_id(call), isn)}


def get_payload(call: Call) -> Response:
    app_id = _app_id(call)
    webhook_id = _webhook_id(call)
    isn = call.request.path_params["isn"]
    service = _service(call)
    header = call.request.headers.get("authorization", "").strip()
    token = header[7:].strip() if header[:7].lower() == "bearer " else header
    if token.startswith("eyJ"):
        service.check_token(token, app_id, webhook_id, isn)
        call.instance.require_app(app_id)
    else:
        call.instance.check_admin_token(app_id, call.admin_token())
    return JSONResponse(service.payload(app_id, webhook_id, isn), headers=_NO_STORE)


def jwks(call: Call) -> Any:
    return _service(call).jwks()


_HOOK = "/dash/apps/{app_id}/webhooks/{webhook_id}"

ROUTES: list[BaseRoute] = [
    json_route("/dash/apps/{app_id}/webhooks", list_webhooks, methods=["GET"], reads_body=False),
    json_route("/dash/apps/{app_id}/webhooks", create_webhook, methods=["POST"]),
    json_route(_HOOK, update_webhook, methods=["POST"]),
    json_route(_HOOK, delete_webhook, methods=["DELETE"], reads_body=False),
    json_route(_HOOK + "/enable", enable_webhook, methods=["POST"]),
    json_route(_HOOK + "/disable", disable_webhook, methods=["POST"]),
    json_route(_HOOK + "/events", list_events, methods=["GET"], reads_body=False),
    json_route(_HOOK + "/events/{isn:path}", get_event, methods=["GET"], reads_body=False),
    json_route(_HOOK + "/events/{isn:path}", resend_event, methods=["POST"]),
    json_route(
        "/webhooks/payload/{app_id}/{webhook_id}/{isn:path}",
        get_payload,
        methods=["GET"],
        reads_body=False,
    ),
    json_route("/.well-known/webhooks/jwks.json", jwks, methods=["GET"], reads_body=False),
]
