"""Every route of the local server refuses a missing, malformed, wrong or other app's
admin token, before it touches any data.

The routes are read from the app itself (`route_cases`), so a route added later is
checked too: it must refuse bad tokens unless it is listed in `PUBLIC` with the reason
it needs none. Routes not implemented yet answer 501 ``unsupported`` whatever the
credentials, and serve nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from instantdb import id
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from tests.reliability._clients import entity_ids
from tests.reliability._routes import RouteCase, route_cases

# (method, path) -> why it needs no admin token. Everything else must refuse one.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/health"): "a local liveness probe that serves no app data",
    ("POST", "/dash/apps/ephemeral"): "making a throwaway app needs no credentials (real server)",
    ("GET", "/dash/apps/ephemeral/{app_id}"): "answers the app without its admin token",
    ("POST", "/runtime/auth/verify_refresh_token"): "the refresh token is the credential",
    ("GET", "/.well-known/webhooks/jwks.json"): "public keys, for receivers to check signatures",
    ("GET", "/storage/files/{app_id}/{location_id}"): (
        "a file's URL is its credential: the location id is random (122 bits), handed only "
        "to those who may see the $files row, and never derived from its path"
    ),
    ("GET", "/local/stream-files/{app_id}/{key}/{stream_id}/{index}"): (
        "a stream part's URL is its credential: the key is random, handed only to readers "
        "the $streams rules let in"
    ),
}
# Routes whose credential is not the admin token: checked on their own below.
OWN_CREDENTIAL: dict[tuple[str, str], str] = {
    ("GET", "/webhooks/payload/{app_id}/{webhook_id}/{isn:path}"): (
        "the delivery's signed payload token, bound to the app, webhook and event"
    ),
}

ROUTES = route_cases()
PROTECTED = [case for case in ROUTES if (case.method, case.template) not in PUBLIC | OWN_CREDENTIAL]
CREDENTIAL_ERRORS = {"param-missing", "param-malformed", "record-not-found"}
FOREIGN_TOKEN = "f0e1d2c3-0000-4000-8000-00000000beef"  # valid form, belongs to no app


def test_the_public_routes_exist() -> None:
    # A stale entry would hide nothing, but would no longer say anything true.
    registered = {(case.method, case.template) for case in ROUTES}
    assert set(PUBLIC) | set(OWN_CREDENTIAL) <= registered


@pytest.fixture(scope="module")
def two_apps(server: LocalServer) -> tuple[AppCredentials, AppCredentials]:
    return server.create_app(title="mine"), server.create_app(title="theirs")


def _bad_credentials(mine: AppCredentials, theirs: AppCredentials) -> dict[str, dict[str, str]]:
    return {
        "none": {"app-id": mine.app_id},
        "empty": {"app-id": mine.app_id, "authorization": ""},
        "malformed": {"app-id": mine.app_id, "authorization": "Bearer not-a-token"},
        "unknown": {"app-id": mine.app_id, "authorization": f"Bearer {FOREIGN_TOKEN}"},
        "other-apps-token": {
            "app-id": mine.app_id,
            "authorization": f"Bearer {theirs.admin_token}",
        },
        "as-email-without-token": {"app-id": mine.app_id, "as-email": "a@b.co"},
        "as-token-unknown": {"app-id": mine.app_id, "as-token": FOREIGN_TOKEN},
        "no-app-id": {"authorization": f"Bearer {mine.admin_token}"},
    }


BAD = list(_bad_credentials(AppCredentials("", "", ""), AppCredentials("", "", "")))


def _cases_with_credentials() -> list[tuple[RouteCase, str]]:
    """Every protected route with every kind of bad credentials; a route that names its
    app in the path needs no app-id header, so leaving that out is no bad credential."""
    return [
        (case, credentials)
        for case in PROTECTED
        for credentials in BAD
        if not (credentials == "no-app-id" and "{app_id}" in case.template)
    ]


def _body_for(case: RouteCase) -> bytes | None:
    if case.method == "GET":
        return None
    # A body each route would act on, so that a refusal is due to the credentials.
    plausible: dict[str, Any] = {
        "/admin/query": {"query": {"goals": {}}},
        "/admin/transact": {"steps": [["update", "goals", id(), {"title": "leak"}]]},
        "/admin/query_perms_check": {"query": {"goals": {}}},
        "/admin/transact_perms_check": {"steps": [["update", "goals", id(), {"title": "x"}]]},
        "/admin/refresh_tokens": {"email": "new@b.co"},
    }
    return json.dumps(plausible.get(case.template, {})).encode()


@dataclass(frozen=True)
class Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else {}


def _send(case: RouteCase, creds: AppCredentials, headers: dict[str, str]) -> Answer:
    # Streamed: an accepted event stream (sse, subscribe-query) never ends by itself, so
    # only its head is read.
    with httpx.stream(
        case.method,
        creds.api_uri + case.path(creds.app_id),
        content=_body_for(case),
        params={"email": "a@b.co"} if case.template == "/admin/users" else None,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    ) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return Answer(response.status_code, "")
        return Answer(response.status_code, response.read().decode())


@pytest.mark.parametrize(("case", "credentials"), _cases_with_credentials(), ids=str)
def test_protected_routes_refuse_bad_credentials(
    case: RouteCase,
    credentials: str,
    two_apps: tuple[AppCredentials, AppCredentials],
) -> None:
    mine, theirs = two_apps
    headers = _bad_credentials(mine, theirs)[credentials]
    response = _send(case, mine, headers)
    body = response.json()
    if case.pending:
        assert response.status_code == 501
        assert body["type"] == "unsupported"
        return
    assert response.status_code == 400, (response.status_code, body)
    assert body["type"] in CREDENTIAL_ERRORS
    assert set(body) <= {"type", "message", "hint"}  # an error, and nothing else
    # Tokens sent are never echoed back.
    for secret in (mine.admin_token, theirs.admin_token, FOREIGN_TOKEN):
        assert secret not in response.text


@pytest.mark.parametrize("case", [c for c in PROTECTED if not c.pending], ids=str)
def test_the_same_requests_with_the_right_token_are_not_refused_for_it(
    case: RouteCase, two_apps: tuple[AppCredentials, AppCredentials]
) -> None:
    # The control: the refusals above come from the credentials, not the request.
    mine, _ = two_apps
    headers = {"app-id": mine.app_id, "authorization": f"Bearer {mine.admin_token}"}
    if case.template.endswith("_perms_check"):
        headers["as-guest"] = "true"
    response = _send(case, mine, headers)
    body = response.json()
    hint = body.get("hint") if isinstance(body, dict) else None
    about_token = isinstance(hint, dict) and (
        hint.get("record-type") == "app-admin-token"
        or hint.get("in") in (["headers", "authorization"], ["headers", "app-id"])
    )
    assert not about_token, body


def test_a_refused_transaction_changes_nothing(
    app: AppCredentials, two_apps: tuple[AppCredentials, AppCredentials]
) -> None:
    mine, theirs = app, two_apps[1]
    transact = RouteCase("POST", "/admin/transact", pending=False)
    for headers in _bad_credentials(mine, theirs).values():
        assert _send(transact, mine, headers).status_code == 400
    assert entity_ids(mine, "goals") == []


def test_one_apps_token_never_reads_another_apps_data(
    two_apps: tuple[AppCredentials, AppCredentials],
) -> None:
    mine, theirs = two_apps
    admin = {"app-id": theirs.app_id, "authorization": f"Bearer {theirs.admin_token}"}
    steps = {"steps": [["update", "goals", id(), {"title": "theirs"}]]}
    assert httpx.post(theirs.api_uri + "/admin/transact", json=steps, headers=admin).is_success
    crossed = {"app-id": theirs.app_id, "authorization": f"Bearer {mine.admin_token}"}
    response = httpx.post(
        theirs.api_uri + "/admin/query", json={"query": {"goals": {}}}, headers=crossed
    )
    assert response.status_code == 400
    assert response.json()["hint"]["record-type"] == "app-admin-token"
    assert "theirs" not in response.text


def test_the_public_app_route_never_shows_the_admin_token(
    two_apps: tuple[AppCredentials, AppCredentials],
) -> None:
    mine, _ = two_apps
    response = httpx.get(mine.api_uri + f"/dash/apps/ephemeral/{mine.app_id}", timeout=30)
    assert response.status_code == 200
    assert response.json()["app"]["id"] == mine.app_id
    assert mine.admin_token not in response.text
