"""pytest fixtures for testing code against an Instant server.

Registered through the ``pytest11`` entry point, so installing ``instantdb[local]`` is
enough. Fixtures:

- ``instant_server`` (session): a `LocalServer` on a free loopback port with a temporary
  data dir. If ``INSTANT_TEST_API_URI`` is set, an `ExternalServer` for that URI instead
  (e.g. a self-hosted Instant); it offers ``api_uri`` and ``create_app`` only.
- ``instant_app``: a fresh, isolated app for one test, made through the ephemeral-app
  route (``POST /dash/apps/ephemeral``), so it works against any Instant server. Give it
  a schema and rules with ``@pytest.mark.instant_app(schema=..., rules=..., title=...)``.
- ``instant_db`` / ``async_instant_db``: an ``instantdb.Instant`` / ``AsyncInstant``
  for ``instant_app``, closed after the test.

This module imports only pytest and the standard library at load time: it is loaded in
every pytest run of an environment that has the package installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from instantdb import AsyncInstant, Instant
    from instantdb_local.instance import AppCredentials
    from instantdb_local.server import LocalServer

API_URI_VARIABLE = "INSTANT_TEST_API_URI"
_TIMEOUT_SECONDS = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "instant_app(schema=None, rules=None, title=None): schema and permission rules for "
        "the app the instant_app fixture creates",
    )


class ExternalServer:
    """An Instant server this process did not start, reached at ``api_uri``."""

    def __init__(self, api_uri: str) -> None:
        self.api_uri = api_uri.rstrip("/")

    def __repr__(self) -> str:
        return f"ExternalServer(api_uri={self.api_uri!r})"

    def create_app(
        self,
        title: str = "test",
        *,
        schema: Mapping[str, Any] | None = None,
        rules: Mapping[str, Any] | None = None,
    ) -> AppCredentials:
        return create_ephemeral_app(self.api_uri, title, schema=schema, rules=rules)


def create_ephemeral_app(
    api_uri: str,
    title: str = "test",
    *,
    schema: Mapping[str, Any] | None = None,
    rules: Mapping[str, Any] | None = None,
) -> AppCredentials:
    """Create an app through ``POST /dash/apps/ephemeral`` on any Instant server."""
    from instantdb_local.instance import AppCredentials

    body: dict[str, Any] = {"title": title}
    if schema is not None:
        body["schema"] = schema
    if rules is not None:
        body["rules"] = {"code": rules}
    request = urllib.request.Request(
        api_uri.rstrip("/") + "/dash/apps/ephemeral",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        raise RuntimeError(
            f"Creating an ephemeral app on {api_uri} failed with {exc.code}: {detail}"
        ) from None
    app = answer["app"]
    return AppCredentials(app["id"], app["admin-token"], api_uri.rstrip("/"))


def _start_local_server() -> LocalServer:
    try:
        from instantdb_local.server import LocalServer
    except ModuleNotFoundError as exc:
        from instantdb_local.errors import missing_extra_message

        raise RuntimeError(
            missing_extra_message(
                "The instant_server fixture",
                exc.name,
                alternative=f"or set {API_URI_VARIABLE} to use another Instant server",
            )
        ) from exc
    return LocalServer().start()


@pytest.fixture(scope="session")
def instant_server() -> Iterator[LocalServer | ExternalServer]:
    """The server the Instant fixtures talk to, for the whole session."""
    external = os.environ.get(API_URI_VARIABLE)
    if external:
        yield ExternalServer(external)
        return
    server = _start_local_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def instant_app(
    instant_server: LocalServer | ExternalServer, request: pytest.FixtureRequest
) -> AppCredentials:
    """Credentials of a fresh app, made through the ephemeral-app route."""
    marker = request.node.get_closest_marker("instant_app")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    unknown = set(options) - {"schema", "rules", "title"}
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.instant_app takes schema, rules and title; got {sorted(unknown)}"
        )
    return create_ephemeral_app(
        instant_server.api_uri,
        options.get("title") or request.node.name[:100],
        schema=options.get("schema"),
        rules=options.get("rules"),
    )


@pytest.fixture
def instant_db(instant_app: AppCredentials) -> Iterator[Instant]:
    """An ``instantdb.Instant`` for ``instant_app``."""
    from instantdb import Instant

    db = Instant(
        app_id=instant_app.app_id,
        admin_token=instant_app.admin_token,
        api_uri=instant_app.api_uri,
    )
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def async_instant_db(instant_app: AppCredentials) -> Iterator[AsyncInstant]:
    """An ``instantdb.AsyncInstant`` for ``instant_app``; use it inside your event loop."""
    import httpx

    # No connection is kept between requests: the test's event loop ends before this
    # fixture's teardown, and pooled connections can neither outlive their loop nor be
    # closed from another one. On loopback a fresh connection per request costs little.
    http = httpx.AsyncClient(
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=httpx.Timeout(60.0, connect=10.0),
        follow_redirects=False,
    )
    from instantdb import AsyncInstant

    db = AsyncInstant(
        app_id=instant_app.app_id,
        admin_token=instant_app.admin_token,
        api_uri=instant_app.api_uri,
        http_client=http,
    )
    try:
        yield db
    finally:
        asyncio.run(http.aclose())
