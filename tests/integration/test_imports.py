"""The local server never imports the SDK, even while it serves the SDK's requests.

Both sides write the protocol's facts down independently (docs/architecture.md), so that
the integration tests compare two implementations rather than one with itself. Importing
``instantdb_local`` alone is checked in tests/local/app/test_server.py; this runs a whole
session: start, create an app, write, read, stop.
"""

from __future__ import annotations

import subprocess
import sys

SERVE_WITHOUT_THE_SDK = """
import json, sys, urllib.request
from instantdb_local import LocalServer
from instantdb_local.pytest_plugin import create_ephemeral_app

def post(url, body, headers):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)

with LocalServer() as server:
    rules = {"goals": {"allow": {"view": "true"}}}
    app = create_ephemeral_app(server.api_uri, "imports", rules=rules)
    headers = {"app-id": app.app_id, "authorization": "Bearer " + app.admin_token}
    step = ["update", "goals", "00000000-0000-4000-8000-000000000001", {"title": "t"}]
    post(server.api_uri + "/admin/transact", {"steps": [step]}, headers)
    as_guest = {**headers, "as-guest": "true"}
    found = post(server.api_uri + "/admin/query", {"query": {"goals": {}}}, as_guest)
    assert found["goals"][0]["title"] == "t", found

sdk = sorted(m for m in sys.modules if m == "instantdb" or m.startswith("instantdb."))
print(json.dumps(sdk))
"""


def test_serving_requests_never_imports_the_sdk() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_THE_SDK],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
