"""``GET /health``: a local-only readiness probe (the real server has no such route)."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from ._plumbing import Call, json_route


def health(call: Call) -> Any:
    return {"status": "ok", "server": "instantdb-local"}


ROUTES: list[BaseRoute] = [json_route("/health", health, methods=["GET"], reads_body=False)]
