"""Fuzz the inputs phase 1 left: ``/admin/subscribe-query`` bodies, ``/admin/sse/push``
messages (every op, with garbage fields, wrong types, huge offsets, bad UTF-8), the
webhook manager routes, storage upload headers and paths, and the SDK's webhook
``validate``. Every input ends in a result or a 4xx (an `InstantError` in the SDK),
never a 500, a hang, a crash or an error the server logs; after the junk, a live session
still answers a well-formed message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from instantdb import InstantTypeError, InstantValueError, InstantWebhookError
from instantdb import webhooks as receiving
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from instantdb_local.webhooks import service_for
from tests.reliability._strategies import (
    json_values,
    queries,
    request_bodies,
    with_numbers_out_of_range,
)

OPS = [
    "add-query",
    "remove-query",
    "transact",
    "start-stream",
    "append-stream",
    "subscribe-stream",
    "unsubscribe-stream",
    "join-room",
    "leave-room",
    "set-presence",
    "client-broadcast",
]
FIELDS = [
    "client-event-id",
    "q",
    "tx-steps",
    "client-id",
    "stream-id",
    "reconnect-token",
    "offset",
    "chunks",
    "done",
    "abort-reason",
    "subscribe-event-id",
    "room-id",
    "type",
    "data",
    "topic",
    "rule-params",
]
HUGE = [2**31, 2**53 + 1, 2**63, 2**64 + 7, -1, -(2**63) - 1, 1e308, float("1e400")]
# Text that is not valid UTF-8 once encoded (lone surrogates), and control characters.
BAD_TEXT = ["\ud800", "a\udfffb", "\x00", "\u202e", "é" * 300]

WAIT = 15.0


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logger = logging.getLogger("instantdb_local")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def live_app(server: LocalServer) -> AppCredentials:
    return server.create_app(
        title="fuzz-live",
        schema={"attrs": {"goals": {"title": {"type": "string"}}}, "links": {}},
        rules={"$streams": {"allow": {"$default": "true"}}},
    )


def _admin(creds: AppCredentials) -> dict[str, str]:
    return {"app-id": creds.app_id, "authorization": f"Bearer {creds.admin_token}"}


def _check_status(status: int, text: str) -> None:
    event(str(status))
    assert status < 500, (status, text[:300])


# -- subscribe-query bodies ---------------------------------------------------------------


def _subscribe_bodies() -> st.SearchStrategy[Any]:
    query_bodies = st.fixed_dictionaries(
        {"query": queries()},
        optional={"inference?": json_values(2), "rule-params": json_values(4)},
    )
    return st.one_of(query_bodies, request_bodies(), json_values())


@given(body=_subscribe_bodies(), raw=st.one_of(st.none(), st.binary(max_size=30)), data=st.data())
def test_any_subscribe_query_body(
    live_app: AppCredentials,
    server_errors: ErrorLog,
    body: Any,
    raw: bytes | None,
    data: st.DataObject,
) -> None:
    before = len(server_errors.records)
    if raw is not None:
        content = raw
    else:
        content = with_numbers_out_of_range(data.draw, json.dumps(body)).encode()
    with httpx.stream(
        "POST",
        live_app.api_uri + "/admin/subscribe-query",
        content=content,
        headers={"content-type": "application/json", **_admin(live_app)},
        timeout=WAIT,
    ) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            # Accepted: the first message after sse-init answers the query.
            ops = _first_ops(response, 2)
            event(f"stream: {ops}")
            assert ops[0] == "sse-init"
            assert ops[1] in ("add-query-ok", "error")
        else:
            _check_status(response.status_code, response.read().decode(errors="replace"))
    assert server_errors.records[before:] == []


def _first_ops(response: httpx.Response, count: int) -> list[str]:
    # Lines split on LF only, as SSE says: a U+0085 or U+2028 inside the JSON is no break
    # (str.splitlines, and so httpx's iter_lines, would cut there).
    ops: list[str] = []
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                ops.append(json.loads(line[5:])["op"])
                if len(ops) == count:
                    return ops
    return ops


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/query", {"query": {"goals": {"$": {"where": {"title": "\ud800"}}}}}),
        ("/admin/transact", {"steps": [["update", "goals", "x", {"title": "a\udfff"}]]}),
        ("/admin/subscribe-query", {"query": {"goals": {"\ud800": {}}}}),
        ("/dash/apps/{app}/webhooks", {"url": "http://127.0.0.1:9/", "namespaces": ["\ud800"]}),
        ("/admin/refresh_tokens", {"email": "\ud800@b.co"}),
    ],
)
def test_a_lone_surrogate_escape_is_malformed_json(
    live_app: AppCredentials, server_errors: ErrorLog, path: str, body: Any
) -> None:
    # Found by fuzzing the webhook manager: "\ud800" is valid JSON syntax but no text,
    # and failed later, wherever it was encoded (SQLite, an answer): a 500.
    before = len(server_errors.records)
    response = httpx.post(
        live_app.api_uri + path.replace("{app}", live_app.app_id),
        content=json.dumps(body).encode(),  # ASCII: the surrogate as a \u escape
        headers={"content-type": "application/json", **_admin(live_app)},
        timeout=WAIT,
    )
    assert response.status_code == 400
    assert response.text == "Malformed JSON in request body."
    assert server_errors.records[before:] == []


# -- sse/push messages ----------------------------------------------------------------------


class Session:
    """One live session on the server, its messages read in a thread."""

    def __init__(self, creds: AppCredentials) -> None:
        self.creds = creds
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(WAIT, read=None))
        self._response = self._client.send(
            self._client.build_request(
                "POST", creds.api_uri + "/admin/sse", json={}, headers=_admin(creds)
            ),
            stream=True,
        )
        assert self._response.status_code == 200
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        init = self.messages.get(timeout=WAIT)
        assert init["op"] == "sse-init"
        self.ids = {
            "machine_id": init["machine-id"],
            "session_id": init["session-id"],
            "sse_token": init["sse-token"],
        }

    def _read(self) -> None:
        # Lines split on LF only (see _first_ops): echoed junk may hold U+0085 or U+2028.
        buffer = b""
        try:
            for chunk in self._response.iter_bytes():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        self.messages.put(json.loads(line[5:]))
        except httpx.HTTPError:
            pass  # closed by the test

    def push(
        self, messages: Any, *, edit: Callable[[str], str] = str, **override: Any
    ) -> httpx.Response:
        """Push ``messages``; ``edit`` may change the body's JSON text before it is sent."""
        body = {**self.ids, "messages": messages, **override}
        return httpx.post(
            self.creds.api_uri + "/admin/sse/push",
            params={"app_id": self.creds.app_id},
            content=edit(json.dumps(body, allow_nan=True)).encode("utf-8", "surrogatepass"),
            headers={"content-type": "application/json"},
            timeout=WAIT,
        )

    def answers(self, event_id: str) -> dict[str, Any]:
        """The message that answers ``event_id`` (skipping others), bounded."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            message = self.messages.get(timeout=WAIT)
            if message.get("client-event-id") == event_id:
                return message
        raise AssertionError(f"no answer to {event_id}")

    def close(self) -> None:
        # Closing the response does not wake a read blocked in another thread; shutting
        # the socket down does.
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)
        self._response.close()
        self._client.close()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def session(live_app: AppCredentials) -> Iterator[Session]:
    opened = Session(live_app)
    yield opened
    opened.close()


def _garbage() -> st.SearchStrategy[Any]:
    return st.one_of(
        json_values(4),
        st.sampled_from(HUGE),
        st.sampled_from(BAD_TEXT),
        st.lists(st.sampled_from([*BAD_TEXT, "ok", ""]), max_size=3),
    )


def _messages() -> st.SearchStrategy[Any]:
    message = st.fixed_dictionaries(
        {"op": st.one_of(st.sampled_from(OPS), json_values(1))},
        optional={name: _garbage() for name in FIELDS},
    )
    return st.lists(st.one_of(message, json_values(2)), max_size=4)


@given(
    messages=_messages(),
    top=st.sampled_from(["ok", "types", "bytes", "numbers out of range"]),
    data=st.data(),
)
def test_any_push_message(
    session: Session, server_errors: ErrorLog, messages: Any, top: str, data: st.DataObject
) -> None:
    before = len(server_errors.records)
    if top == "bytes":
        response = httpx.post(
            session.creds.api_uri + "/admin/sse/push",
            params={"app_id": session.creds.app_id},
            content=b'{"messages": [{"op": "append-stream", "chunks": ["\xff\xfe\xc3"]}]}',
            headers={"content-type": "application/json"},
            timeout=WAIT,
        )
    elif top == "types":
        # The envelope's own fields with the wrong types.
        response = session.push(messages, session_id=[1], sse_token={"t": 1})
    elif top == "numbers out of range":
        # 1e400 and its kind are valid JSON, anywhere in the messages or the envelope.
        response = session.push(
            messages, edit=lambda text: with_numbers_out_of_range(data.draw, text)
        )
    else:
        response = session.push(messages)
    _check_status(response.status_code, response.text)
    assert server_errors.records[before:] == []


def test_the_session_still_answers_after_the_junk(session: Session) -> None:
    # Runs after the property above (same module session): a well-formed add-query
    # still gets its result, so the junk broke neither the session nor its queue.
    response = session.push([{"op": "add-query", "client-event-id": "after", "q": {"goals": {}}}])
    assert response.status_code == 200
    assert session.answers("after")["op"] == "add-query-ok"


# -- the webhook manager routes and storage uploads -------------------------------------------


def _webhook_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "sink": st.one_of(
                st.fixed_dictionaries({"url": st.one_of(st.text(max_size=30), json_values(2))}),
                json_values(2),
            ),
            "url": st.one_of(
                st.sampled_from(["http://127.0.0.1:9/x", "ftp://x", ""]), json_values(1)
            ),
            "namespaces": st.one_of(
                st.lists(st.sampled_from(["goals", "", "$users", "\ud800"])), json_values(2)
            ),
            "actions": st.one_of(
                st.lists(st.sampled_from(["create", "update", "x"])), json_values(2)
            ),
            "reason": _garbage(),
        },
    )


@given(
    route=st.sampled_from(["", "/{id}", "/{id}/enable", "/{id}/disable", "/{id}/events/{isn}"]),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    body=_webhook_fields(),
    webhook_id=st.one_of(st.just("real"), st.text(max_size=12)),
    isn=st.one_of(
        st.sampled_from(["0/0/1", "0/0/FFFFFFFFFFFFFFFFFFFF", "../x", "0/-1/1"]),
        st.text(max_size=10),
    ),
    data=st.data(),
)
def test_any_webhook_manager_request(
    live_app: AppCredentials,
    real_webhook: str,
    server_errors: ErrorLog,
    route: str,
    method: str,
    body: dict[str, Any],
    webhook_id: str,
    isn: str,
    data: st.DataObject,
) -> None:
    before = len(server_errors.records)
    target = real_webhook if webhook_id == "real" else webhook_id
    path = route.replace("{id}", quote(target, safe="") or "x").replace(
        "{isn}", quote(isn, safe="/") or "x"
    )
    text = with_numbers_out_of_range(data.draw, json.dumps(body))
    response = httpx.request(
        method,
        f"{live_app.api_uri}/dash/apps/{live_app.app_id}/webhooks{path}",
        content=text.encode("utf-8", "surrogatepass"),
        headers={"content-type": "application/json", **_admin(live_app)},
        timeout=WAIT,
    )
    assert response.status_code != 500
    _check_status(response.status_code, response.text)
    assert server_errors.records[before:] == []


@pytest.fixture(scope="module")
def real_webhook(live_app: AppCredentials, server: LocalServer) -> str:
    service_for(server.instance)  # the routes need the service
    response = httpx.post(
        f"{live_app.api_uri}/dash/apps/{live_app.app_id}/webhooks",
        json={"url": "http://127.0.0.1:9/x", "namespaces": ["goals"], "actions": ["create"]},
        headers=_admin(live_app),
        timeout=WAIT,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    return str(answer.get("webhook", answer)["id"])


_HEADER_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40),
    st.sampled_from(
        [
            "../../etc/passwd",
            "/abs/path",
            "a\\..\\..\\b",
            "%2e%2e/%2e%2e/x",
            "a/./b//c",
            "null",
            "undefined",
            "..",
            "a/..",
            "\u00e9t\u00e9.txt",
            "x" * 2000,
        ]
    ),
)


@given(
    path=st.one_of(st.none(), _HEADER_TEXT),
    content_type=st.one_of(st.none(), _HEADER_TEXT),
    disposition=st.one_of(st.none(), _HEADER_TEXT),
    length=st.one_of(st.none(), st.sampled_from(["", "-1", "abc", "99999999999999999999", "3"])),
    body=st.binary(max_size=20),
)
def test_any_upload_headers(
    live_app: AppCredentials,
    server_errors: ErrorLog,
    path: str | None,
    content_type: str | None,
    disposition: str | None,
    length: str | None,
    body: bytes,
) -> None:
    headers = _admin(live_app)
    for name, value in (
        ("path", path),
        ("content-type", content_type),
        ("content-disposition", disposition),
    ):
        if value is not None:
            headers[name] = value
    # Sent on a raw socket: header values as UTF-8 bytes, and content-lengths that do not
    # match the body, which an HTTP client would refuse to send.
    headers["content-length"] = str(len(body)) if length is None else length
    before = len(server_errors.records)
    status, text = _raw_request(live_app.api_uri, "PUT", "/admin/storage/upload", headers, body)
    if status is None:
        # A framing the server cannot read may end the connection: a refusal, not a
        # crash. The server must still answer.
        assert httpx.get(live_app.api_uri + "/health", timeout=WAIT).status_code == 200
        return
    _check_status(status, text)
    assert server_errors.records[before:] == []


def _raw_request(
    api_uri: str, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int | None, str]:
    """One HTTP/1.1 request on a fresh socket: (status, body text), or (None, "") when
    the server closed the connection without an answer."""
    url = urlsplit(api_uri)
    head = f"{method} {path} HTTP/1.1\r\nhost: {url.netloc}\r\nconnection: close\r\n".encode()
    for name, value in headers.items():
        head += name.encode() + b": " + value.encode("utf-8", "surrogatepass") + b"\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=WAIT) as sock:
        sock.sendall(head + b"\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 "):
        return None, ""
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2].decode(errors="replace")


# -- the SDK's validate ----------------------------------------------------------------------

_HEADERS = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda t, kid, v1, extra: f"t={t},kid={kid},v1={v1}{extra}",
        st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8)),
        st.text(max_size=12),
        st.one_of(st.text(max_size=12), st.binary(min_size=64, max_size=64).map(bytes.hex)),
        st.sampled_from(["", ",v1=00", ",t=1", ",,", ",x"]),
    ),
    json_values(2),
    st.binary(max_size=20),
)


@given(
    header=_HEADERS,
    body=st.one_of(st.binary(max_size=40), st.text(max_size=40), json_values(2)),
    max_age=st.one_of(st.just(300), st.floats(allow_nan=True), json_values(1)),
)
def test_validate_raises_only_documented_errors(
    live_app: AppCredentials, header: Any, body: Any, max_age: Any
) -> None:
    # InstantWebhookError (signature or body), InstantTypeError (a header or body of the
    # wrong type) and InstantValueError (max_age_seconds) are the documented outcomes.
    with pytest.raises((InstantWebhookError, InstantTypeError, InstantValueError)) as caught:
        receiving.validate(
            signature_header=header, body=body, max_age_seconds=max_age, api_uri=live_app.api_uri
        )
    event(type(caught.value).__name__)
    if type(caught.value) is InstantValueError:
        assert "max_age" in str(caught.value), str(caught.value)
