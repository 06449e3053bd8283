"""examples/fastapi_webhooks: the FastAPI receiver, served on loopback, fed by the local
server's real deliveries."""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from instantdb import Instant
from instantdb_local import LocalServer
from instantdb_local.server import bind_socket, uvicorn_server
from tests.local.webhooks.receiver import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_webhooks" / "app.py"
SCHEMA = {"attrs": {"goals": {"title": {"type": "string"}}}, "links": {}}


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Instant, ModuleType, str]]:
    with LocalServer() as server:
        creds = server.create_app(title="fastapi-webhooks", schema=SCHEMA)
        for key, value in creds.env.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location("fastapi_webhooks_example", EXAMPLE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sock = bind_socket("127.0.0.1", 0)
        receiver = uvicorn_server(module.app)
        thread = threading.Thread(target=receiver.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        wait_until(lambda: receiver.started)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/instant"
        db = Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri)
        try:
            yield db, module, url
        finally:
            db.close()
            receiver.should_exit = True
            thread.join(10)
            sock.close()


def test_the_receiver_keeps_its_index_in_step(setup: tuple[Instant, ModuleType, Any]) -> None:
    db, module, url = setup
    db.webhooks.manager.create(
        url=url, namespaces=["goals"], actions=["create", "update", "delete"]
    )
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    db.transact(
        [db.tx.goals[first].update({"title": "Run"}), db.tx.goals[second].update({"title": "Swim"})]
    )
    wait_until(lambda: module.search_index == {first: "Run", second: "Swim"})
    db.transact(db.tx.goals[first].update({"title": "Run far"}))
    wait_until(lambda: module.search_index == {first: "Run far", second: "Swim"})
    db.transact(db.tx.goals[second].delete())
    wait_until(lambda: module.search_index == {first: "Run far"})


def test_forged_deliveries_get_401(setup: tuple[Instant, ModuleType, Any]) -> None:
    _, module, url = setup
    body = b'{"payloadUrl":"http://127.0.0.1:1/x","token":"eyJ"}'
    for header in ("", "t=1,kid=1,v1=00", f"t=1,kid=1,v1={'ab' * 64}"):
        answer = httpx.post(url, content=body, headers={"Instant-Signature": header}, timeout=10)
        assert answer.status_code == 401, answer.text
    assert module.search_index == {}
