"""The package surface: what `import instantdb` loads and exports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx

import instantdb
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, MockAPI

HEAVY_OR_OPTIONAL = [
    "pandas",
    "numpy",
    "IPython",
    "ipywidgets",
    "starlette",
    "uvicorn",
    "celpy",
    "instantdb_local",
    "instantdb_notebook",
    "httpx_sse",
    "cryptography",
]


def test_import_loads_only_the_stdlib_httpx_and_the_sdk() -> None:
    probe = "import instantdb, json, sys; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = {name.split(".")[0] for name in json.loads(output.stdout)}
    assert "httpx" in loaded  # the probe does see third-party imports
    assert sorted(loaded & set(HEAVY_OR_OPTIONAL)) == []


def test_public_names() -> None:
    assert sorted(instantdb.__all__) == sorted(
        [
            "AsyncInstant",
            "AsyncStreamReader",
            "AsyncStreamWriter",
            "AsyncStreams",
            "AsyncSubscription",
            "Chunks",
            "DebugResult",
            "Instant",
            "InstantAPIError",
            "InstantConnectionError",
            "InstantEncodeError",
            "InstantError",
            "InstantNetworkError",
            "InstantPermissionError",
            "InstantQueryTimeoutError",
            "InstantRateLimitError",
            "InstantServerError",
            "InstantTimeoutError",
            "InstantTypeError",
            "InstantValidationError",
            "InstantValueError",
            "Logger",
            "StreamReader",
            "StreamWriter",
            "Streams",
            "Subscription",
            "InstantWebhookError",
            "InstantWebhookSignatureError",
            "Query",
            "QueryResult",
            "RetryPolicy",
            "RuleParams",
            "Rules",
            "Schema",
            "TransactResult",
            "TxChunk",
            "__version__",
            "id",
            "lookup",
        ]
    )
    for name in instantdb.__all__:
        assert getattr(instantdb, name) is not None
    for name in instantdb.__all__:
        if name.startswith("Instant") and name.endswith("Error"):
            assert issubclass(getattr(instantdb, name), instantdb.InstantError)


def test_sync_client_has_the_live_features_too() -> None:
    # Unlike the official SDK, subscriptions and streams exist on both clients (B17).
    db = instantdb.Instant(app_id=APP_ID, admin_token=ADMIN_TOKEN, _transport=MockAPI().transport())
    with db:
        assert isinstance(db.subscribe_query({"goals": {}}), instantdb.Subscription)
        assert isinstance(db.streams, instantdb.Streams)


def test_async_client_survives_a_new_event_loop() -> None:
    # Scripts often call asyncio.run() more than once with one module-level client.
    api = MockAPI()
    api.default = lambda request: httpx.Response(200, json={"goals": []})
    db = instantdb.AsyncInstant(app_id=APP_ID, admin_token=ADMIN_TOKEN, _transport=api.transport())
    first_pool = db._transport.client
    assert asyncio.run(db.query({"goals": {}})) == {"goals": []}
    assert asyncio.run(db.query({"goals": {}})) == {"goals": []}
    assert db._transport.client is not first_pool  # the old loop's pool was replaced
    assert len(api.requests) == 2
    asyncio.run(db.aclose())
    assert db._transport.client.is_closed
