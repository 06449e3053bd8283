"""Security of the live features, storage and webhooks:

* storage paths never escape the data dir (``..``, absolute paths, NUL, backslashes,
  URL-encoded variants, over HTTP), and file and stream-part URLs cannot be walked out of;
* an impersonated subscription sees only what the rules let that user see, also as the
  data changes under it;
* stream sessions and pushes are bound to their session token and app, and a stream to
  its reconnect token;
* a webhook payload token goes only to the configured API host, and the payload route
  takes only the token made for that webhook and event (or the app's admin token, as
  ``manager.get_payload`` sends);
* refresh tokens never reach the server's logs (in-process at DEBUG, and the CLI's
  stderr at ``--log-level debug``).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from instantdb import Instant, InstantValueError
from instantdb import webhooks as receiving
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from tests.local.webhooks.receiver import Receiver
from tests.reliability._live import WAIT, Subscriber
from tests.reliability._process import ServerProcess
from tests.reliability._secrets import SecretScanner, capture_everything

ESCAPES = [
    "../escaped.txt",
    "../../escaped.txt",
    "a/../../escaped.txt",
    "/tmp/escaped.txt",
    "//escaped.txt",
    "..\\..\\escaped.txt",
    "a\\..\\..\\escaped.txt",
    "%2e%2e/%2e%2e/escaped.txt",
    "%2e%2e%2fescaped.txt",
    "..%2f..%2fescaped.txt",
    "..%5c..%5cescaped.txt",
    "a/\x00/../../escaped.txt",
    "escaped\x00.txt",
    "..",
    ".",
    "./../escaped.txt",
    "~/escaped.txt",
]


def _admin(creds: AppCredentials) -> dict[str, str]:
    return {"app-id": creds.app_id, "authorization": f"Bearer {creds.admin_token}"}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(data_dir=tmp_path / "data") as running:
        yield running


def _raw_put(api_uri: str, headers: dict[str, bytes], body: bytes) -> int | None:
    """PUT /admin/storage/upload with header bytes as given (NUL and all)."""
    url = urlsplit(api_uri)
    head = b"PUT /admin/storage/upload HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
    for name, value in {**headers, "content-length": str(len(body)).encode()}.items():
        head += name.encode() + b": " + value + b"\r\n"
    assert url.hostname is not None
    assert url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=WAIT) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_storage_paths_never_escape_the_data_dir(own_server: LocalServer, tmp_path: Path) -> None:
    creds = own_server.credentials
    data_dir = (tmp_path / "data").resolve()
    outside_before = {p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(data_dir)}
    statuses: dict[str, int | None] = {}
    with Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri) as db:
        for path in ESCAPES:
            headers = {k: v.encode() for k, v in _admin(creds).items()}
            headers["path"] = path.encode("utf-8")
            statuses[path] = _raw_put(creds.api_uri, headers, b"escape attempt")
            status = statuses[path]
            assert status is not None, path
            assert status < 500, (path, status)
        stored = db.query({"$files": {}})["$files"]
    # Nothing was written outside the data dir, and no stored file is named after a path.
    outside_after = {p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(data_dir)}
    assert outside_after == outside_before
    assert not list(Path("/tmp").glob("escaped*.txt"))
    assert not any("escaped" in p.name for p in data_dir.rglob("*"))
    # What was accepted is a $files row whose path stayed a plain name inside the app.
    for row in stored:
        assert ".." not in row["path"].split("/"), row["path"]
        assert not row["path"].startswith("/"), row["path"]
        assert "\x00" not in row["path"]
    assert any(status == 400 for status in statuses.values())


@pytest.mark.parametrize(
    "location",
    [
        "..",
        "../instance.sqlite3",
        "../../instance.sqlite3",
        "%2e%2e%2f%2e%2e%2finstance.sqlite3",
        "..%2f..%2f..%2finstance.sqlite3",
        "..%5c..%5cinstance.sqlite3",
        "%00",
        "app.sqlite3",
    ],
)
def test_file_and_stream_part_urls_cannot_walk_out(own_server: LocalServer, location: str) -> None:
    creds = own_server.credentials
    app = creds.app_id
    urls = [
        f"/storage/files/{app}/{location}",
        f"/storage/files/{location}/{location}",
        f"/local/stream-files/{app}/{location}/{location}/0",
        f"/local/stream-files/{location}/k/{uuid.uuid4()}/0",
    ]
    for url in urls:
        response = httpx.get(creds.api_uri + url, timeout=WAIT)
        assert response.status_code in (400, 404), (url, response.status_code)
        assert b"SQLite format" not in response.content
        assert creds.admin_token not in response.text


def test_a_symlink_in_the_files_dir_is_not_followed_out(
    own_server: LocalServer, tmp_path: Path
) -> None:
    creds = own_server.credentials
    secret = tmp_path / "outside.txt"
    secret.write_text("outside the data dir")
    with Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri) as db:
        db.storage.upload_file("real.txt", b"inside")
        (row,) = db.query({"$files": {}})["$files"]
    files_dir = next((tmp_path / "data").rglob("files"))
    # A planted symlink, named like a location id: the URL must not serve what it
    # points at.
    planted = uuid.uuid4()
    for name in (str(planted), f"{planted}.bin"):
        os.symlink(secret, files_dir / name)
    response = httpx.get(f"{creds.api_uri}/storage/files/{creds.app_id}/{planted}", timeout=WAIT)
    assert b"outside the data dir" not in response.content
    assert response.status_code in (400, 404)
    assert httpx.get(row["url"], timeout=WAIT).content == b"inside"


# -- subscriptions as a user --------------------------------------------------------------

OWNER_ONLY = {
    "goals": {
        "allow": {
            "view": "auth.id == data.owner",
            "create": "auth.id == data.owner",
            "update": "auth.id == data.owner",
        }
    }
}


def test_an_impersonated_subscription_sees_only_what_the_rules_allow(server: LocalServer) -> None:
    creds = server.create_app(title="owner-only", rules=OWNER_ONLY)
    with Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri) as db:
        alice = db.auth.create_token(email="alice@b.co")
        bob = db.auth.create_token(email="bob@b.co")
        alice_id = db.auth.verify_token(alice)["id"]
        bob_id = db.auth.verify_token(bob)["id"]
        db.transact(db.tx.goals[str(uuid.uuid4())].update({"title": "bob's", "owner": bob_id}))
        as_alice = db.as_user(token=alice)
        query = {"goals": {}}
        with (
            Subscriber("sync", creds, query, as_user={"token": alice}) as alice_sees,
            Subscriber("async", creds, query, as_user={"guest": True}) as guest_sees,
        ):
            assert alice_sees.wait_for_data({"goals": []})
            assert guest_sees.wait_for_data({"goals": []})
            # Bob writes twice more; then Alice writes once.
            db.transact(db.tx.goals[str(uuid.uuid4())].update({"title": "b2", "owner": bob_id}))
            db.transact(db.tx.goals[str(uuid.uuid4())].update({"title": "b3", "owner": bob_id}))
            as_alice.transact(
                as_alice.tx.goals[str(uuid.uuid4())].update({"title": "alice's", "owner": alice_id})
            )
            expected = as_alice.query(query)
            assert [g["title"] for g in expected["goals"]] == ["alice's"]
            assert alice_sees.wait_for_data(expected)
        # At no point did Alice or the guest see a goal of Bob's.
        for payload in alice_sees.payloads + guest_sees.payloads:
            assert payload["type"] == "ok", payload
            assert all(g.get("owner") != bob_id for g in payload["data"]["goals"])
        assert all(p["data"] == {"goals": []} for p in guest_sees.payloads)


# -- sessions, pushes and streams are bound to their credentials ---------------------------


class _Session:
    def __init__(self, creds: AppCredentials) -> None:
        self.creds = creds
        self.client = httpx.Client(timeout=httpx.Timeout(WAIT, read=None))
        request = self.client.build_request(
            "POST", creds.api_uri + "/admin/sse", json={}, headers=_admin(creds)
        )
        self.response = self.client.send(request, stream=True)
        self.lines = self.response.iter_lines()
        init = self.next()
        self.ids = {
            "machine_id": init["machine-id"],
            "session_id": init["session-id"],
            "sse_token": init["sse-token"],
        }

    def next(self) -> dict[str, Any]:
        for line in self.lines:
            if line.startswith("data:"):
                message: dict[str, Any] = json.loads(line[5:])
                return message
        raise AssertionError("the session ended")

    def answer_to(self, event_id: str) -> dict[str, Any]:
        for _ in range(50):
            message = self.next()
            if message.get("client-event-id") == event_id:
                return message
        raise AssertionError(f"no answer to {event_id}")

    def push(self, *messages: dict[str, Any], app_id: str | None = None, **ids: Any) -> Any:
        return httpx.post(
            self.creds.api_uri + "/admin/sse/push",
            params={"app_id": app_id or self.creds.app_id},
            json={**self.ids, **ids, "messages": list(messages)},
            timeout=WAIT,
        )

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_pushes_are_bound_to_their_session_token_and_app(server: LocalServer) -> None:
    mine, theirs = server.create_app(title="mine"), server.create_app(title="theirs")
    session, other = _Session(mine), _Session(theirs)
    try:
        start = {
            "op": "start-stream",
            "client-event-id": "start",
            "client-id": "bound",
            "reconnect-token": str(uuid.uuid4()),
        }
        refused = [
            session.push(start, sse_token=str(uuid.uuid4())),  # a wrong token
            session.push(start, sse_token=other.ids["sse_token"]),  # another session's
            session.push(start, session_id=other.ids["session_id"]),  # token of the wrong id
            session.push(start, app_id=theirs.app_id),  # the right pair, another app
            other.push(start, app_id=mine.app_id),
        ]
        for response in refused:
            assert response.status_code == 400, response.text
            assert response.json()["type"] == "session-missing"
            for token in (session.ids["sse_token"], other.ids["sse_token"]):
                assert token not in response.text
        # Nothing of the refused pushes ran: no stream exists in either app.
        for creds in (mine, theirs):
            with Instant(
                app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri
            ) as db:
                assert db.query({"$streams": {}})["$streams"] == []
    finally:
        session.close()
        other.close()


def test_a_stream_is_bound_to_its_reconnect_token(server: LocalServer) -> None:
    creds = server.create_app(title="streams")
    writer, intruder = _Session(creds), _Session(creds)
    try:
        token = str(uuid.uuid4())
        start = {
            "op": "start-stream",
            "client-event-id": "s1",
            "client-id": "owned",
            "reconnect-token": token,
        }
        assert writer.push(start).status_code == 200
        started = writer.answer_to("s1")
        assert started["op"] == "start-stream-ok", started
        stream_id = started["stream-id"]
        append = {
            "op": "append-stream",
            "client-event-id": "a1",
            "stream-id": stream_id,
            "chunks": ["mine"],
            "offset": 0,
            "done": False,
        }
        assert writer.push(append).status_code == 200
        flushed = writer.next()  # stream-flushed names the stream, not the event
        assert (flushed["op"], flushed["stream-id"], flushed["offset"]) == (
            "stream-flushed",
            stream_id,
            4,
        )
        # Another session, with the stream id but not the reconnect token.
        hijack = {**start, "client-event-id": "h1", "reconnect-token": str(uuid.uuid4())}
        assert intruder.push(hijack).status_code == 200
        refused = intruder.answer_to("h1")
        assert refused["op"] == "error"
        assert token not in json.dumps(refused)  # echoed events show <redacted>
        foreign_append = {**append, "client-event-id": "h2", "chunks": ["theirs"], "offset": 4}
        assert intruder.push(foreign_append).status_code == 200
        assert intruder.answer_to("h2")["op"] == "error"
        # The writer's stream holds its own bytes only.
        end = {**append, "client-event-id": "a2", "chunks": [], "offset": 4, "done": True}
        assert writer.push(end).status_code == 200
        assert writer.next()["done"] is True
        with (
            Instant(
                app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri
            ) as db,
            db.streams.read(stream_id=stream_id) as reader,
        ):
            assert "".join(reader) == "mine"
    finally:
        writer.close()
        intruder.close()


# -- webhook payload tokens ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload_url",
    [
        "https://evil.test/webhooks/payload/a/b/0/0/1",
        "http://127.0.0.1.nip.io:{port}/webhooks/payload/a/b/0/0/1",
        "http://localhost.evil.test:{port}/webhooks/payload/a/b/0/0/1",
        "http://127.0.0.1:{other}/webhooks/payload/a/b/0/0/1",
        "http://127.0.0.2:{other}/webhooks/payload/a/b/0/0/1",
        "https://127.0.0.1:{port}/webhooks/payload/a/b/0/0/1",
        "http://127.0.0.1:{port}@evil.test/webhooks/payload/a/b/0/0/1",
        "//evil.test/webhooks/payload/a/b/0/0/1",
        "http://user:pw@127.0.0.1:{port}/webhooks/payload/a/b/0/0/1",
    ],
)
def test_a_payload_token_goes_only_to_the_api_host(payload_url: str) -> None:
    api_uri = "http://127.0.0.1:4321"
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"data": [], "idempotencyKey": "k"})

    body = {"payloadUrl": payload_url.format(port=4321, other=4322), "token": "t" * 40}
    with httpx.Client(transport=httpx.MockTransport(record)) as http:
        with pytest.raises(InstantValueError) as caught:
            receiving.fetch_payloads(body, api_uri=api_uri, http_client=http)
        db = Instant(
            app_id=str(uuid.uuid4()), admin_token="x" * 36, api_uri=api_uri, http_client=http
        )
        with pytest.raises(InstantValueError):
            db.webhooks.fetch_payloads(body)
    assert sent == []  # refused before any request
    assert "t" * 40 not in str(caught.value)


@pytest.mark.parametrize("alias", ["127.0.0.2", "localhost", "[::1]"])
def test_a_loopback_alias_in_payload_url_still_sends_the_token_to_api_uri(alias: str) -> None:
    # Loopback names of one port count as one origin (a local server writes 127.0.0.1
    # where the client may say localhost), but the token goes to the host api_uri names,
    # never to the one in the body: another process may hold 127.0.0.2:4321.
    api_uri = "http://127.0.0.1:4321"
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"data": [], "idempotencyKey": "k"})

    body = {"payloadUrl": f"http://{alias}:4321/webhooks/payload/a/b/0/0/1", "token": "t" * 40}
    with httpx.Client(transport=httpx.MockTransport(record)) as http:
        receiving.fetch_payloads(body, api_uri=api_uri, http_client=http)
    (request,) = sent
    assert str(request.url) == f"{api_uri}/webhooks/payload/a/b/0/0/1"
    assert request.headers["authorization"] == "Bearer " + "t" * 40


def test_the_payload_route_takes_only_its_own_token(server: LocalServer) -> None:
    creds = server.create_app(
        title="payload-tokens", schema={"attrs": {"goals": {"t": {"type": "string"}}}, "links": {}}
    )
    stranger = server.create_app(title="stranger")
    with (
        Receiver() as receiver,
        Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri) as db,
    ):
        hooks = [
            db.webhooks.manager.create(url=receiver.url, namespaces=["goals"], actions=actions)
            for actions in (["create"], ["create", "update"])
        ]
        db.transact(db.tx.goals[str(uuid.uuid4())].update({"t": "1"}))
        db.transact(db.tx.goals[str(uuid.uuid4())].update({"t": "2"}))
        deliveries = receiver.wait_for(4)
    bodies = [json.loads(d.body) for d in deliveries]
    first = bodies[0]
    # The real token works for its own URL.
    ok = httpx.get(first["payloadUrl"], headers={"authorization": f"Bearer {first['token']}"})
    assert ok.status_code == 200
    others = [b for b in bodies if b["payloadUrl"] != first["payloadUrl"]]
    forged = first["token"].rsplit(".", 1)[0] + ".AAAA"
    wrong = [
        None,
        "x",
        stranger.admin_token,  # another app's admin token (this app's own may read it)
        forged,
        *[b["token"] for b in others],  # another webhook's or another event's token
    ]
    for token in wrong:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        response = httpx.get(first["payloadUrl"], headers=headers, timeout=WAIT)
        assert 400 <= response.status_code < 500, (token, response.status_code)
        assert "goals" not in response.text
        assert creds.admin_token not in response.text
    assert {h["id"] for h in hooks} == {b["payloadUrl"].split("/")[6] for b in bodies}


# -- refresh tokens never logged by the server ----------------------------------------------


def _auth_flows(creds: AppCredentials) -> list[str]:
    """Every auth flow that carries a refresh token; returns the tokens it saw."""
    tokens = []
    with Instant(
        app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri, verbose=True
    ) as db:
        code = db.auth.generate_magic_code("flow@b.co")
        user, _ = db.auth.check_magic_code(email="flow@b.co", code=code)
        tokens.append(user["refresh_token"])
        tokens.append(db.auth.create_token(email="other@b.co"))
        for token in tokens:
            db.auth.verify_token(token)
            db.auth.get_user(refresh_token=token)
            scoped = db.as_user(token=token)
            scoped.query({"goals": {}})
            with scoped.subscribe_query({"goals": {}}) as subscription:
                next(iter(subscription))
        db.auth.sign_out(refresh_token=tokens[0])
        db.auth.delete_user(refresh_token=tokens[1])
        httpx.post(
            creds.api_uri + "/runtime/auth/verify_refresh_token",
            json={"app-id": creds.app_id, "refresh-token": tokens[0]},
            timeout=WAIT,
        )
    return tokens


def test_refresh_tokens_never_reach_the_in_process_servers_logs(server: LocalServer) -> None:
    creds = server.create_app(title="auth-logs")
    with capture_everything() as captured:
        tokens = _auth_flows(creds)
    scanner = SecretScanner({f"refresh token {i}": t for i, t in enumerate(tokens)})
    scanner.capture("auth flows", captured)
    assert scanner.leaks == []
    assert captured.records, "nothing was logged at DEBUG: the capture is not working"


def test_refresh_tokens_never_reach_the_cli_servers_stderr(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", log_level="debug")
    creds = server.start()
    try:
        tokens = _auth_flows(creds)
    finally:
        server.kill()
    log = server.log()
    assert log, "the server logged nothing at debug: the check would be empty"
    scanner = SecretScanner({f"refresh token {i}": t for i, t in enumerate(tokens)})
    scanner.text("serve --log-level debug stderr", log)
    assert scanner.leaks == []
