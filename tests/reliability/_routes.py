"""Every route the local server has, read from the app itself, so the fuzzing and the
security table cover routes added later (phase 2: subscriptions, streams, auth,
storage, webhooks) without being edited."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.routing import Route

from instantdb_local.routes import all_routes, unsupported

__all__ = ["RouteCase", "route_cases"]

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class RouteCase:
    method: str
    template: str  # as registered, e.g. /dash/apps/{app_id}/webhooks
    pending: bool  # answered 501 unsupported until its feature lands

    def path(self, app_id: str) -> str:
        """A concrete path: ``{app_id}`` is the app's id, other parameters a fixed id."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "app_id":
                return app_id
            if name == "rest":
                return "00000000-0000-4000-8000-000000000001/events"
            return "00000000-0000-4000-8000-000000000001"

        return _PARAM.sub(fill, self.template)

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def route_cases() -> list[RouteCase]:
    """One case per (method, path) the app routes, HEAD left out (Starlette adds it to
    every GET)."""
    pending = {id(route) for route in unsupported.ROUTES}
    cases: dict[tuple[str, str], RouteCase] = {}
    for route in all_routes():
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            # The first route for a method and path wins, as in the router: a pending
            # entry left behind a real route is never reached.
            cases.setdefault(
                (method, route.path), RouteCase(method, route.path, id(route) in pending)
            )
    return list(cases.values())
