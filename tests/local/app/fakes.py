"""A tiny in-memory engine for testing the HTTP layer on its own.

It records what the routes hand it and answers with that, so a test can see exactly
which actor, options and documents reached the engine. It knows no InstaQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instantdb_local import errors
from instantdb_local.engine import Actor, AppEngine


class FakeEngine(AppEngine):
    def __init__(self, path: Path, *, app_id: str) -> None:
        super().__init__(path, app_id=app_id)
        path.touch()
        self.schema: Mapping[str, Any] | None = None
        self.rules: Mapping[str, Any] | None = None
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.tx_id = 0
        self.closed = False
        self.boom: BaseException | None = None  # raised by the next query

    def add_user(self, email: str | None) -> dict[str, Any]:
        user = {"id": str(uuid.uuid4()), "email": email, "app_id": self.app_id}
        self.users[user["id"]] = user
        return user

    def apply_schema(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema

    def set_rules(self, rules: Mapping[str, Any] | None) -> None:
        if rules is not None and "broken" in rules:
            raise errors.validation_failed("permission", rules, [{"message": "broken rule"}])
        self.rules = rules

    def schema_json(self) -> dict[str, Any]:
        return {"schema": {"refs": {}, "blobs": dict(self.schema or {})}}

    def query(self, query: Any, actor: Actor, *, inference: bool = False) -> dict[str, Any]:
        if self.boom is not None:
            raise self.boom
        return {"query": query, "actor": _actor_json(actor), "inference": inference}

    def transact(self, steps: Any, actor: Actor, *, throw_on_missing_attrs: bool = False) -> int:
        self.tx_id += 1
        return self.tx_id

    def query_perms_check(
        self,
        query: Any,
        actor: Actor,
        *,
        inference: bool = False,
        rules_override: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {"actor": _actor_json(actor), "rules-override": rules_override}

    def transact_perms_check(
        self,
        steps: Any,
        actor: Actor,
        *,
        rules_override: Mapping[str, Any] | None = None,
        commit: bool = False,
        throw_on_missing_attrs: bool = False,
    ) -> dict[str, Any]:
        return {"actor": _actor_json(actor), "committed?": commit, "steps": steps}

    def find_user(
        self, *, id: str | None = None, email: str | None = None, refresh_token: str | None = None
    ) -> dict[str, Any] | None:
        if refresh_token is not None:
            id = self.tokens.get(refresh_token)
        if email is not None:
            return next((u for u in self.users.values() if u["email"] == email), None)
        return self.users.get(id) if id is not None else None

    def create_refresh_token(
        self, *, email: str | None = None, id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        user = self.find_user(email=email) if email is not None else self.find_user(id=id)
        created = user is None
        if user is None:
            user = {"id": id or str(uuid.uuid4()), "email": email, "app_id": self.app_id}
            self.users[user["id"]] = user
        token = str(uuid.uuid4())
        self.tokens[token] = user["id"]
        return {**user, "refresh_token": token}, created

    def close(self) -> None:
        self.closed = True


def _actor_json(actor: Actor) -> dict[str, Any]:
    return {
        "admin": actor.is_admin,
        "user": dict(actor.user) if actor.user is not None else None,
        "request": dict(actor.request),
    }
