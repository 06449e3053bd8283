"""Ephemeral apps: ``POST /dash/apps/ephemeral`` and ``GET /dash/apps/ephemeral/{app_id}``.

Like the real server, creating one needs no credentials: it is how test suites get a
fresh, isolated app (with a schema and rules) on any Instant server. The body is
``{"title", "schema"?, "rules"?: {"code": <rules document>}}``; the schema may be in the
vectors' shape or the JSON of the JS ``i.schema(...)`` builder.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from instantdb_local import errors, schema_files
from instantdb_local.errors import ServerError
from instantdb_local.instance import AppRecord

from ._plumbing import Call, canonical_uuid, is_uuid, json_route


def _app_json(record: AppRecord, *, with_token: bool) -> dict[str, Any]:
    app: dict[str, Any] = {
        "id": record.id,
        "title": record.title,
        "created_at": record.created_at_iso(),
    }
    if with_token:
        app["admin-token"] = record.admin_token
    return app


def _rules(call: Call) -> dict[str, Any] | None:
    rules = call.body_map.get("rules")
    if rules is None:
        return None
    if not isinstance(rules, dict) or not isinstance(rules.get("code"), dict):
        # The real server reads only rules.code and ignores anything else; saying so is
        # kinder than creating an app without the rules the caller meant to set.
        raise errors.validation_failed(
            "rules",
            rules,
            [{"message": 'rules must be {"code": <rules document>}'}],
        )
    code: dict[str, Any] = rules["code"]
    return code


def _schema(call: Call) -> dict[str, Any] | None:
    schema = call.body_map.get("schema")
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise errors.param_malformed(["body", "schema"], schema)
    try:
        return schema_files.normalize_schema(schema)
    except schema_files.SchemaFileError as exc:
        raise errors.validation_failed("schema", schema, [{"message": str(exc)}]) from None


def create_ephemeral_app(call: Call) -> Any:
    title = call.body_param("title")
    if not isinstance(title, str) or not title.strip():
        raise errors.param_malformed(["body", "title"], title)
    rules = _rules(call)
    schema = _schema(call)
    record = call.instance.create_ephemeral_app(title.strip(), schema=schema, rules=rules)
    return {"app": _app_json(record, with_token=True), "expires_ms": record.expires_at_ms}


def get_ephemeral_app(call: Call) -> Any:
    app_id = call.request.path_params["app_id"]
    if not is_uuid(app_id):
        raise errors.param_malformed(["params", "app_id"], app_id)
    record = call.instance.require_app(canonical_uuid(app_id))
    if not record.is_ephemeral:
        raise ServerError(
            "permission-denied",
            "Permission denied: not ephemeral-app?",
            {"input": record.id, "expected": "ephemeral-app?"},
        )
    return {"app": _app_json(record, with_token=False), "expires_ms": record.expires_at_ms}


ROUTES: list[BaseRoute] = [
    json_route("/dash/apps/ephemeral", create_ephemeral_app, methods=["POST"]),
    json_route(
        "/dash/apps/ephemeral/{app_id}", get_ephemeral_app, methods=["GET"], reads_body=False
    ),
]
