"""The admin token and a refresh token never show: every public SDK method of both
clients is run on success and failure paths with logging at DEBUG, warnings and output
captured, and `SecretScanner` looks everywhere (see ``_secrets.py``).

Three servers give the paths: the local server (real answers and the 501s of features
not there yet), a hostile fake that echoes both tokens back in every error it can (a
body, a hint, a header, a redirect, a network error's text) and the fault proxy
(connections cut and answers too late, as httpx reports them).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from itertools import cycle
from typing import Any

import httpx
import pytest

import instantdb
from instantdb import AsyncInstant, Instant, InstantError, RetryPolicy
from instantdb_local import LocalServer
from tests.local.webhooks.receiver import Receiver
from tests.reliability._faults import CutResponse, Delay, FaultProxy, ResetAfterForward
from tests.reliability._secrets import (
    SDK_OPERATIONS,
    STREAM_CLIENT_ID,
    DeadlineReached,
    Operation,
    SecretScanner,
    capture_everything,
    public_sdk_methods,
)

ADMIN_TOKEN = "5ec12e75-adad-4dad-8dad-5ec12e75ad01"
REFRESH_TOKEN = "5ec12e75-7e7e-4e7e-8e7e-5ec12e75e7e7"
APP_ID = "a0000000-0000-4000-8000-000000000001"
NO_WAITING = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0)
KINDS = ("sync", "async")


def test_every_public_method_has_an_operation() -> None:
    covered = {operation.name for operation in SDK_OPERATIONS}
    missing = public_sdk_methods() - covered
    assert not missing, (
        f"public SDK methods without a secrets check: {sorted(missing)}; add an Operation "
        "for each to SDK_OPERATIONS in tests/reliability/_secrets.py"
    )


class Session:
    """Runs operations with one client kind, scanning everything they produce."""

    def __init__(self, kind: str, scanner: SecretScanner, world: dict[str, str]) -> None:
        self.kind = kind
        self.scanner = scanner
        self.world = world
        self.outcomes: list[str] = []

    def client(self, **kwargs: Any) -> Any:
        cls = AsyncInstant if self.kind == "async" else Instant
        # verbose: the live features log every message they send and receive.
        db = cls(app_id=self.world.get("app_id", APP_ID), verbose=True, **kwargs)
        self.scanner.object("the client", db)
        for feature in ("auth", "storage", "rooms", "tx", "streams", "webhooks"):
            self.scanner.object(f"db.{feature}", getattr(db, feature))
        self.scanner.object("db.webhooks.manager", db.webhooks.manager)
        scoped = db.as_user(token=self.world["refresh_token"])
        self.scanner.object("db.as_user(token=...)", scoped)
        self.scanner.object("db.as_user(email=...)", db.as_user(email="a@b.co"))
        return db

    async def _run_async(self, db: Any, operation: Operation) -> Any:
        result = operation.run(db, self.world)
        return await result if inspect.isawaitable(result) else result

    def run(self, db: Any, operation: Operation) -> None:
        try:
            if self.kind == "async":
                result = asyncio.run(self._run_async(db, operation))
            else:
                result = operation.run(db, self.world)
        except InstantError as error:
            self.outcomes.append(f"{operation.name}: {type(error).__name__}")
            self.scanner.error(f"{operation.name} error", error)
        except DeadlineReached:
            self.outcomes.append(f"{operation.name}: deadline")
        else:
            self.outcomes.append(f"{operation.name}: ok")
            self.scanner.object(f"{operation.name} result", result, allowed=operation.returns)

    def close(self, db: Any) -> None:
        if self.kind == "async":
            asyncio.run(db.aclose())
        else:
            db.close()


def _scanner(admin_token: str, refresh_token: str) -> SecretScanner:
    return SecretScanner({"admin token": admin_token, "refresh token": refresh_token})


# -- the local server ---------------------------------------------------------------------


# Users may read and write streams, so the live operations succeed as the user too.
OPEN_STREAMS = {"$streams": {"allow": {"$default": "true"}}}


@pytest.fixture
def local_world(server: LocalServer) -> dict[str, str]:
    """An app with a user, a finished stream, and a webhook with one real delivery, so
    that every operation has a path that succeeds."""
    app = server.create_app(title="secrets", rules=OPEN_STREAMS)
    with (
        Instant(app_id=app.app_id, admin_token=app.admin_token, api_uri=app.api_uri) as db,
        Receiver() as receiver,
    ):
        refresh = db.auth.create_token(email="someone@b.co")
        with db.streams.write(client_id=STREAM_CLIENT_ID, timeout=10) as writer:
            writer.write("a finished stream \u2713")
        db.transact(db.tx.goals[instantdb.id()].update({"title": "first"}))
        hook = db.webhooks.manager.create(
            url=receiver.url, namespaces=["goals"], actions=["create"]
        )
        tx_id = db.transact(db.tx.goals[instantdb.id()].update({"title": "second"}))["tx-id"]
        (delivery,) = receiver.wait_for(1)
    return {
        "app_id": app.app_id,
        "admin_token": app.admin_token,
        "refresh_token": refresh,
        "api_uri": app.api_uri,
        "webhook_id": hook["id"],
        "webhook_isn": f"0/0/{tx_id:X}",
        "webhook_header": delivery.headers["instant-signature"],
        "webhook_body": delivery.body.decode(),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_against_the_local_server(kind: str, local_world: dict[str, str]) -> None:
    scanner = _scanner(local_world["admin_token"], local_world["refresh_token"])
    session = Session(kind, scanner, local_world)
    with capture_everything() as captured:
        # Each async operation runs in its own event loop: no pooled connection is kept.
        limits = httpx.Limits(max_keepalive_connections=0)
        http: Any = httpx.AsyncClient(limits=limits) if kind == "async" else None
        db = session.client(
            admin_token=local_world["admin_token"],
            api_uri=local_world["api_uri"],
            retry=NO_WAITING,
            **({"http_client": http} if http else {}),
        )
        for operation in SDK_OPERATIONS:
            session.run(db, operation)
        session.close(db)
        if http is not None:
            asyncio.run(http.aclose())
    scanner.capture("local server", captured)
    assert scanner.leaks == []
    # Both paths ran: real answers, and refusals of what the local server lacks.
    assert any(outcome.endswith(": ok") for outcome in session.outcomes)
    assert any(not outcome.endswith(": ok") for outcome in session.outcomes)
    assert captured.records, "nothing was logged at DEBUG: the capture is not working"


# -- a hostile server ---------------------------------------------------------------------


def _echo(request: httpx.Request) -> str:
    """Everything the request carried, as a careless server would repeat it."""
    return f"{request.headers!r} {request.url} {request.content[:500]!r}"


def _hostile_answers() -> list[Callable[[httpx.Request], httpx.Response]]:
    def body(request: httpx.Request, kind: str | None = "param-malformed") -> dict[str, Any]:
        echo = _echo(request)
        return {
            "type": kind,
            "message": f"Malformed: {echo}",
            "hint": {"original-input": [echo, {"headers": dict(request.headers)}]},
        }

    def headers(request: httpx.Request) -> dict[str, str]:
        sent = request.headers.get("authorization", "") + request.headers.get("as-token", "")
        return {"x-echo": sent or "none", "www-authenticate": sent or "none"}

    def fail(error: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
        def raise_it(request: httpx.Request) -> httpx.Response:
            # As httpx raises them: its error wraps httpcore's, which may wrap h11's,
            # each with the same text.
            text = f"failed sending {_echo(request)}"
            try:
                raise ValueError(text)
            except ValueError as inner:
                raise error(text, request=request) from inner

        return raise_it

    return [
        lambda r: httpx.Response(400, json=body(r), headers=headers(r)),
        lambda r: httpx.Response(401, text=f"no: {_echo(r)}", headers=headers(r)),
        lambda r: httpx.Response(429, json=body(r, "rate-limited"), headers={"retry-after": "0"}),
        lambda r: httpx.Response(503, json=body(r, None)),
        lambda r: httpx.Response(500, text=_echo(r)),
        lambda r: httpx.Response(302, headers={"location": f"https://x.test/?e={_echo(r)}"}),
        lambda r: httpx.Response(200, text=f"<html>{_echo(r)}</html>"),
        fail(httpx.ConnectError),
        fail(httpx.ReadTimeout),
        fail(httpx.RemoteProtocolError),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_against_a_server_that_echoes_the_tokens(kind: str) -> None:
    scanner = _scanner(ADMIN_TOKEN, REFRESH_TOKEN)
    world = {"refresh_token": REFRESH_TOKEN, "api_uri": "https://files.test"}
    session = Session(kind, scanner, world)
    answers = _hostile_answers()
    for start in range(len(answers)):
        # Each round starts at a different answer, so every operation meets each one.
        script = cycle(answers[start:] + answers[:start])

        def answer(request: httpx.Request, script: Iterator[Any] = script) -> httpx.Response:
            return next(script)(request)

        with capture_everything() as captured:
            db = session.client(
                admin_token=ADMIN_TOKEN,
                api_uri="https://api.test",
                retry=NO_WAITING,
                _transport=httpx.MockTransport(answer),
            )
            for operation in SDK_OPERATIONS:
                session.run(db, operation)
            session.close(db)
        scanner.capture(f"hostile server, round {start}", captured)
    assert scanner.leaks == []
    # Only downloads (which ignore the API's answers) and dispatching a payload (no I/O)
    # may come through.
    succeeded = {o.split(":")[0] for o in session.outcomes if o.endswith(": ok")}
    assert succeeded <= {"storage.download", "webhooks.process_payload"}


# -- faults on the wire ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_network_failures_as_httpx_reports_them(
    kind: str, local_world: dict[str, str], proxy: FaultProxy
) -> None:
    scanner = _scanner(local_world["admin_token"], local_world["refresh_token"])
    session = Session(kind, scanner, {**local_world, "api_uri": proxy.url})
    operations = [o for o in SDK_OPERATIONS if o.name != "storage.download"]
    # Timeouts cost their wait: a few operations meet them, those with tokens in the
    # headers (as_user) and in the URL (auth.get_user).
    slow = [o for o in operations if o.name in ("query", "as_user", "auth.get_user")]
    rounds = [(ResetAfterForward(), operations), (CutResponse(body_bytes=2), operations)]
    rounds.append((Delay(30.0), slow))
    with capture_everything() as captured:
        db = session.client(
            admin_token=local_world["admin_token"],
            api_uri=proxy.url,
            retry=NO_WAITING,
            timeout=httpx.Timeout(10.0, read=0.3),
        )
        for fault, chosen in rounds:
            for operation in chosen:
                # Every attempt meets the fault, so retries run out too; what an
                # operation refused before sending leaves unused is dropped.
                proxy.plan(*[fault] * NO_WAITING.max_attempts)
                session.run(db, operation)
                proxy.clear()
        session.close(db)
    scanner.capture("network faults", captured)
    assert scanner.leaks == []
    assert sum(": InstantTimeoutError" in o for o in session.outcomes) > 0
    assert sum(": InstantConnectionError" in o for o in session.outcomes) > 0


# -- errors raised before any request ----------------------------------------------------------


BAD_CALLS = {
    "bad api_uri": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN, api_uri="ftp://x"),
    "bad timeout": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN, timeout=-1),
    "bad retry": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN, retry=None),
    "no app id": lambda cls: cls(app_id="", admin_token=ADMIN_TOKEN),
    "token with a line break": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN + "\nx"),
    "as_user two identities": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN).as_user(
        token=REFRESH_TOKEN, email="a@b.co"
    ),
    "as_user bad token": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN).as_user(
        token=REFRESH_TOKEN + "\u00e9"
    ),
    "debug without as_user": lambda cls: cls(app_id=APP_ID, admin_token=ADMIN_TOKEN).debug_query(
        {"goals": {}}
    ),
    "no admin token": lambda cls: cls(app_id=APP_ID, admin_token="").query({"goals": {}}),
    "closed client": lambda cls: _query_after_close(cls),
}


def _query_after_close(cls: type) -> Any:
    """A query from an ``as_user`` clone of a root client that has been closed."""
    root = cls(app_id=APP_ID, admin_token=ADMIN_TOKEN)
    if isinstance(root, AsyncInstant):

        async def closed_then_query() -> Any:
            await root.aclose()
            return await root.as_user(token=REFRESH_TOKEN).query({"goals": {}})

        return closed_then_query()
    root.close()
    return root.as_user(token=REFRESH_TOKEN).query({"goals": {}})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_argument_errors(kind: str, name: str) -> None:
    scanner = _scanner(ADMIN_TOKEN, REFRESH_TOKEN)
    cls = AsyncInstant if kind == "async" else Instant

    async def call() -> Any:
        result = BAD_CALLS[name](cls)
        return await result if inspect.isawaitable(result) else result

    with capture_everything() as captured:
        with pytest.raises(InstantError) as caught:
            asyncio.run(call())
        scanner.error(name, caught.value)
    scanner.capture(name, captured)
    assert scanner.leaks == []


def test_the_scanner_finds_what_it_looks_for() -> None:
    # The harness itself: a leak in any of the places above is reported.
    scanner = _scanner(ADMIN_TOKEN, REFRESH_TOKEN)
    error = InstantError(f"token {ADMIN_TOKEN.replace('-', '')}")
    error.add_note(f"note {REFRESH_TOKEN.upper()}")
    scanner.error("made up", error)
    with capture_everything() as captured:
        import logging
        import warnings

        logging.getLogger("instantdb").debug("end %s", REFRESH_TOKEN[-12:])
        warnings.warn(f"w {ADMIN_TOKEN}", stacklevel=1)
        print(REFRESH_TOKEN)
    scanner.capture("made up", captured)
    places = " ".join(scanner.leaks)
    for where in ("str(made up)", "__notes__", "log record", "warning", "stdout"):
        assert where in places, where
