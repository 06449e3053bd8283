"""The data routes: ``/admin/query``, ``/admin/transact``, the two permission-debug
routes and ``/admin/schema`` (server-semantics sections 1, 3, 4 and 7)."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from instantdb_local import errors

from ._plumbing import Call, json_route, truthy


def _steps(call: Call) -> Any:
    steps = call.body_param("steps")
    # The server asks only for a collection here; the step spec checks the rest and
    # answers "Validation failed for steps".
    if not isinstance(steps, (list, dict)):
        raise errors.param_malformed(["body", "steps"], steps)
    return steps


def query(call: Call) -> Any:
    app_id, actor = call.actor()
    q = call.body_map_param("query")
    return call.engine(app_id).query(q, actor, inference=truthy(call.body_map.get("inference?")))


def transact(call: Call) -> Any:
    app_id, actor = call.actor()
    steps = _steps(call)
    tx_id = call.engine(app_id).transact(
        steps,
        actor,
        throw_on_missing_attrs=truthy(call.body_map.get("throw-on-missing-attrs?")),
    )
    return {"tx-id": tx_id}


def query_perms_check(call: Call) -> Any:
    app_id, actor = call.impersonated_actor()
    q = call.body_map_param("query")
    return call.engine(app_id).query_perms_check(
        q,
        actor,
        inference=truthy(call.body_map.get("inference?")),
        rules_override=call.body_map_param("rules-override", required=False),
    )


def transact_perms_check(call: Call) -> Any:
    app_id, actor = call.impersonated_actor()
    steps = _steps(call)
    return call.engine(app_id).transact_perms_check(
        steps,
        actor,
        rules_override=call.body_map_param("rules-override", required=False),
        commit=truthy(call.body_map.get("dangerously-commit-tx")),
        throw_on_missing_attrs=truthy(call.body_map.get("throw-on-missing-attrs?")),
    )


def schema(call: Call) -> Any:
    app_id = call.admin_app_id()
    return call.engine(app_id).schema_json()


ROUTES: list[BaseRoute] = [
    json_route("/admin/query", query, methods=["POST"]),
    json_route("/admin/transact", transact, methods=["POST"]),
    json_route("/admin/query_perms_check", query_perms_check, methods=["POST"]),
    json_route("/admin/transact_perms_check", transact_perms_check, methods=["POST"]),
    json_route("/admin/schema", schema, methods=["GET"], reads_body=False),
]
