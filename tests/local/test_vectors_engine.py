"""Replay the real server's vectors straight into `AppEngine`, one test per vector.

Every case of the query, transact and perms areas runs, and so does every errors/auth
case whose requests need no HTTP plumbing. Cases that test the HTTP layer itself (a
missing or wrong admin token, a missing app id, the admin token a debug route needs)
are replayed by the HTTP layer's own test; they are listed in `HTTP_ONLY` so a new
vector is never silently dropped from both.

Request bodies are unpacked the way the routes do it, including the two
``param-missing`` answers for a body without ``query``/``steps``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from instantdb_local.engine import Actor, AppEngine
from instantdb_local.errors import ServerError, param_malformed, param_missing, record_not_found
from tests.local.vectors import Case, load_cases, mismatches

CASES = load_cases()

# Vectors about request plumbing (headers, admin tokens); the HTTP replay covers them.
HTTP_ONLY = {
    "auth-missing-authorization",
    "auth-wrong-admin-token",
    "auth-malformed-admin-token",
    "auth-missing-app-id",
    "auth-impersonation-admin-token-requirements",
    "auth-perms-check-needs-admin-token",
}

# Vectors the engine deliberately answers differently: {name: reason}. Each must still
# fail; a fix makes its test fail so the entry gets removed.
KNOWN_DIFFERENCES: dict[str, str] = {}

ENGINE_CASES = [case for case in CASES if case.name not in HTTP_ONLY]


def test_http_only_vectors_exist() -> None:
    names = {case.name for case in CASES}
    assert names >= HTTP_ONLY
    assert set(KNOWN_DIFFERENCES) <= names


def _actor(engine: AppEngine, spec: dict[str, Any] | None) -> Actor:
    if spec is None:
        return Actor.admin()
    if spec.get("guest"):
        return Actor.guest()
    if "email" in spec:
        user = engine.find_user(email=spec["email"])
        if user is None:
            raise record_not_found("app-user", args=[{"email": spec["email"]}])
        return Actor.for_user(user)
    if "token_of" in spec:
        minted, _ = engine.create_refresh_token(email=spec["token_of"])
        token = minted["refresh_token"]
    else:
        token = spec["token"]
    try:
        uuid.UUID(token)
    except ValueError:
        raise param_malformed(["asUser", "token"], token) from None
    user = engine.find_user(refresh_token=token)
    if user is None:
        raise record_not_found("app-user", args=[{"refresh-token": "..."}])
    return Actor.for_user(user)


def _required(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise param_missing(["body", key])
    return body[key]


def send(engine: AppEngine, request: dict[str, Any]) -> tuple[int, Any]:
    body = request["body"]
    try:
        actor = _actor(engine, request.get("as"))
        route = request["route"]
        inference = bool(body.get("inference?", False))
        throw = bool(body.get("throw-on-missing-attrs?", False))
        if route == "/admin/query":
            return 200, engine.query(_required(body, "query"), actor, inference=inference)
        if route == "/admin/transact":
            steps = _required(body, "steps")
            return 200, {"tx-id": engine.transact(steps, actor, throw_on_missing_attrs=throw)}
        if route == "/admin/query_perms_check":
            return 200, engine.query_perms_check(
                _required(body, "query"),
                actor,
                inference=inference,
                rules_override=body.get("rules-override"),
            )
        if route == "/admin/transact_perms_check":
            return 200, engine.transact_perms_check(
                _required(body, "steps"),
                actor,
                rules_override=body.get("rules-override"),
                commit=bool(body.get("dangerously-commit-tx", False)),
                throw_on_missing_attrs=throw,
            )
        raise AssertionError(f"unknown route {route}")
    except ServerError as error:
        return error.status, error.body()


def replay(case: Case, directory: Path) -> list[str]:
    engine = AppEngine(directory / "app.sqlite3", app_id=str(uuid.uuid4()))
    try:
        if case.schema is not None:
            engine.apply_schema(case.schema)
        if case.rules is not None:
            engine.set_rules(case.rules)
        for tx in case.setup:
            engine.transact(tx, Actor.admin())
        problems = [f"request: {p}" for p in mismatches(case.expect, *send(engine, case.request))]
        for i, then in enumerate(case.then):
            status, body = send(engine, then["request"])
            problems += [f"then[{i}]: {p}" for p in mismatches(then["expect"], status, body)]
        return problems
    finally:
        engine.close()


@pytest.mark.parametrize("case", ENGINE_CASES, ids=[c.name for c in ENGINE_CASES])
def test_vector(case: Case, tmp_path: Path) -> None:
    problems = replay(case, tmp_path)
    if case.name in KNOWN_DIFFERENCES:
        assert problems, f"{case.name} now passes: remove it from KNOWN_DIFFERENCES"
    else:
        assert not problems, "\n".join(problems)
