"""A local server for the webhook tests, with retries scaled down to milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.webhooks import WebhookService, service_for

FAST_RETRIES = (0.05, 0.05, 0.05)

SCHEMA = {
    "attrs": {
        "goals": {"title": {"type": "string"}},
        "todos": {"title": {"type": "string"}},
    },
    "links": {},
}


@pytest.fixture(scope="session", autouse=True)
def _close_http_client() -> Iterator[None]:
    from tests.local.webhooks.helpers import HTTP

    yield
    HTTP.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        service_for(running.instance).configure(retry_schedule=FAST_RETRIES)
        yield running


@pytest.fixture
def service(server: LocalServer) -> WebhookService:
    return service_for(server.instance)


@pytest.fixture
def app(server: LocalServer) -> AppCredentials:
    return server.create_app(title="webhooks", schema=SCHEMA)
