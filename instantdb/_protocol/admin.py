"""The data routes: query, transact, the permission debug helpers, and the app schema."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from instantdb._errors import InstantAPIError, InstantError, InstantTypeError, InstantValueError
from instantdb._json import mapping_to_json
from instantdb._retry import RetrySafety
from instantdb._settings import Settings
from instantdb._tx import Chunks, Step, steps_of, with_rule_params

from ._call import Call, Request, Response, admin_only_headers, json_request, standard_headers
from ._responses import json_object

__all__ = [
    "debug_query_call",
    "debug_transact_call",
    "query_call",
    "schema_call",
    "transact_call",
]

RULE_PARAMS_KEY = "$$ruleParams"


def query_call(
    settings: Settings, q: Mapping[str, Any], rule_params: Mapping[str, Any] | None
) -> Call[dict[str, Any]]:
    """``POST /admin/query``: the result tree, as the server sent it."""
    body = {"query": _query(q, rule_params, "query"), "inference?": False}
    request = json_request(
        "POST", "/admin/query", settings, headers=standard_headers(settings), body=body
    )
    return Call(request, _object_parser(request), RetrySafety.IDEMPOTENT)


def transact_call(
    settings: Settings, chunks: Chunks, rule_params: Mapping[str, Any] | None
) -> Call[dict[str, Any]]:
    """``POST /admin/transact``: ``{"tx-id": n}``, as the server sent it."""
    steps = _steps(chunks, rule_params)
    body = {"steps": steps, "throw-on-missing-attrs?": False}
    request = json_request(
        "POST", "/admin/transact", settings, headers=standard_headers(settings), body=body
    )
    # A transaction that reached the server may have been applied: never send it twice
    # unless it provably did not run.
    return Call(request, _object_parser(request), RetrySafety.UNSENT_ONLY)


def debug_query_call(
    settings: Settings,
    q: Mapping[str, Any],
    rules: Mapping[str, Any] | None,
    rule_params: Mapping[str, Any] | None,
) -> Call[dict[str, Any]]:
    """``POST /admin/query_perms_check``: ``{"result", "check_results", ...}``."""
    _require_impersonation(settings, "debug_query")
    body: dict[str, Any] = {"query": _query(q, rule_params, "debug_query"), "inference?": False}
    if rules is not None:
        body["rules-override"] = mapping_to_json(rules, method="debug_query", name="rules")
    request = json_request(
        "POST", "/admin/query_perms_check", settings, headers=standard_headers(settings), body=body
    )
    return Call(request, _debug_parser(request), RetrySafety.IDEMPOTENT)


def debug_transact_call(
    settings: Settings,
    chunks: Chunks,
    rules: Mapping[str, Any] | None,
    rule_params: Mapping[str, Any] | None = None,
) -> Call[dict[str, Any]]:
    """``POST /admin/transact_perms_check`` (a dry run: nothing is committed).

    Returns ``{"tx_id", "all_checks_ok", "committed", "check_results", ...}``.
    """
    _require_impersonation(settings, "debug_transact")
    body: dict[str, Any] = {"steps": _steps(chunks, rule_params)}
    if rules is not None:
        body["rules-override"] = mapping_to_json(rules, method="debug_transact", name="rules")
    request = json_request(
        "POST",
        "/admin/transact_perms_check",
        settings,
        headers=standard_headers(settings),
        body=body,
    )
    # A dry run changes nothing, so it is as safe to repeat as a read.
    return Call(request, _debug_parser(request), RetrySafety.IDEMPOTENT)


def schema_call(settings: Settings) -> Call[dict[str, Any]]:
    """``GET /admin/schema``: the ``schema`` object (``{"blobs": ..., "refs": ...}``)."""
    request = json_request(
        "GET", "/admin/schema", settings, headers=admin_only_headers(settings, "schema()")
    )

    def parse(response: Response) -> dict[str, Any]:
        schema = json_object(response, request).get("schema")
        if not isinstance(schema, dict):
            raise InstantAPIError(
                "GET /admin/schema answered without a 'schema' object",
                status=response.status,
                body=schema,
            )
        return schema

    return Call(request, parse, RetrySafety.IDEMPOTENT)


def namespaces_of(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The namespace names a schema defines (its ``blobs`` keys), sorted."""
    blobs = schema.get("blobs")
    return tuple(sorted(blobs)) if isinstance(blobs, Mapping) else ()


def _query(q: object, rule_params: Mapping[str, Any] | None, method: str) -> dict[str, Any]:
    query = mapping_to_json(q, method=method, name="q")
    for namespace, subquery in query.items():
        if namespace != RULE_PARAMS_KEY and not isinstance(subquery, dict):
            raise InstantTypeError(
                f"{method}(): q[{namespace!r}] must be a dict (use {{}} for all entities, or "
                f"{{'$': {{'where': ...}}}}), got {type(subquery).__name__}: {subquery!r}"
            )
    if rule_params is None:
        return query
    if RULE_PARAMS_KEY in query:
        raise InstantValueError(
            f"{method}(): rule params were given twice, as rule_params= and as "
            f"q[{RULE_PARAMS_KEY!r}]; pass them once"
        )
    # The server reads rule params only from inside the query, under this key.
    return {
        RULE_PARAMS_KEY: mapping_to_json(rule_params, method=method, name="rule_params"),
        **query,
    }


def _steps(chunks: Chunks, rule_params: Mapping[str, Any] | None) -> list[Step]:
    steps = steps_of(chunks)
    return steps if rule_params is None else with_rule_params(steps, rule_params)


def _require_impersonation(settings: Settings, method: str) -> None:
    if settings.impersonation is None:
        raise InstantError(
            f"{method}() checks permissions as a user, so it needs an as_user() client: "
            f"db.as_user(email=...).{method}(...), or as_user(token=...) / as_user(guest=True)"
        )


def _object_parser(request: Request) -> Callable[[Response], dict[str, Any]]:
    def parse(response: Response) -> dict[str, Any]:
        return json_object(response, request)

    return parse


def _debug_parser(request: Request) -> Callable[[Response], dict[str, Any]]:
    def parse(response: Response) -> dict[str, Any]:
        return {_python_key(key): value for key, value in json_object(response, request).items()}

    return parse


def _python_key(key: str) -> str:
    """``"all-checks-ok?"`` -> ``"all_checks_ok"``: the debug helpers' top-level keys."""
    return key.rstrip("?").replace("-", "_")
