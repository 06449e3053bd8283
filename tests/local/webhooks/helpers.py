"""HTTP helpers for the webhook route tests: one pooled client and the manager calls."""

from __future__ import annotations

from typing import Any

import httpx

from instantdb_local.instance import AppCredentials

URL = "http://127.0.0.1:9/hook"  # nothing listens: deliveries fail, events stay
# One pooled client: a new httpx client per request costs more than the request.
HTTP = httpx.Client(timeout=10, trust_env=False)


def dash(app: AppCredentials, path: str = "") -> str:
    return f"{app.api_uri}/dash/apps/{app.app_id}/webhooks{path}"


def admin(app: AppCredentials) -> dict[str, str]:
    return {"authorization": f"Bearer {app.admin_token}"}


def request(app: AppCredentials, method: str, path: str = "", **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", admin(app))
    return HTTP.request(method, dash(app, path), **kwargs)


def create(app: AppCredentials, **body: Any) -> dict[str, Any]:
    body = {"url": URL, "namespaces": ["goals"], "actions": ["create"], **body}
    response = request(app, "POST", json=body)
    assert response.status_code == 200, response.text
    return response.json()["webhook"]  # type: ignore[no-any-return]


def transact(app: AppCredentials, *steps: list[Any]) -> int:
    response = HTTP.post(
        f"{app.api_uri}/admin/transact",
        json={"steps": list(steps)},
        headers={**admin(app), "app-id": app.app_id},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["tx-id"])


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["type"], body["message"]
