"""Replay every server vector over real HTTP against a LocalServer.

Each case gets a fresh app from ``POST /dash/apps/ephemeral`` (with the case's schema and
rules), its setup transactions, then its request and follow-ups, sent exactly as
``server-vectors.md`` describes. Answers are compared by the shared matcher in
`tests.local.vectors`.

A case that cannot pass for a principled reason goes in `KNOWN_DIFFERENCES` with the
reason (and in docs/local-server.md); the test then asserts it still fails, so a fix is
noticed and the entry removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.pytest_plugin import create_ephemeral_app
from tests.local.vectors import Case, load_cases, mismatches

CASES = load_cases()

# name -> why the local server answers differently from the real one.
KNOWN_DIFFERENCES: dict[str, str] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture(scope="module")
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_uri, timeout=30) as client:
        yield client


class Replay:
    """One case's app and the refresh tokens minted for it."""

    def __init__(self, http: httpx.Client, app: AppCredentials) -> None:
        self.http = http
        self.app = app
        self.tokens: dict[str, str] = {}

    def admin_headers(self) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "app-id": self.app.app_id,
            "authorization": f"Bearer {self.app.admin_token}",
        }

    def token_of(self, email: str) -> str:
        if email not in self.tokens:
            response = self.http.post(
                "/admin/refresh_tokens",
                params={"app_id": self.app.app_id},
                json={"email": email},
                headers=self.admin_headers(),
            )
            assert response.status_code == 200, response.text
            self.tokens[email] = response.json()["user"]["refresh_token"]
        return self.tokens[email]

    def send(self, request: dict[str, Any]) -> tuple[int, Any]:
        headers = self.admin_headers()
        params: dict[str, str] = {"app_id": self.app.app_id}
        token = request.get("admin_token")
        if token == "omit":
            del headers["authorization"]
        elif token is not None:
            headers["authorization"] = f"Bearer {token}"
        if request.get("app_id") == "omit":
            del headers["app-id"]
            params = {}
        headers.update(self.impersonation(request.get("as")))
        response = self.http.post(
            request["route"], params=params, json=request["body"], headers=headers
        )
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return response.status_code, body

    def impersonation(self, as_: dict[str, Any] | None) -> dict[str, str]:
        if as_ is None:
            return {}
        if as_.get("guest"):
            return {"as-guest": "true"}
        if "email" in as_:
            return {"as-email": as_["email"]}
        if "token_of" in as_:
            return {"as-token": self.token_of(as_["token_of"])}
        return {"as-token": as_["token"]}


def replay(http: httpx.Client, case: Case) -> list[str]:
    """Every mismatch between the local server's answers and the case's expectations."""
    app = create_ephemeral_app(str(http.base_url), case.name, schema=case.schema, rules=case.rules)
    run = Replay(http, app)
    for index, tx in enumerate(case.setup):
        status, body = run.send(
            {"route": "/admin/transact", "body": {"steps": tx, "throw-on-missing-attrs?": False}}
        )
        if status != 200:
            return [f"setup transaction {index} answered {status}: {body!r}"]
    problems = [f"request: {p}" for p in mismatches(case.expect, *run.send(case.request))]
    for index, step in enumerate(case.then):
        found = mismatches(step["expect"], *run.send(step["request"]))
        problems.extend(f"then[{index}]: {p}" for p in found)
    return problems


def test_every_vector_is_replayed():
    assert len(CASES) == 117
    assert len({case.name for case in CASES}) == len(CASES)
    assert set(KNOWN_DIFFERENCES) <= {case.name for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_vector(http: httpx.Client, case: Case) -> None:
    problems = replay(http, case)
    if case.name in KNOWN_DIFFERENCES:
        assert problems, f"{case.name} passes now: remove it from KNOWN_DIFFERENCES"
    else:
        assert not problems, "\n".join(problems)
