"""A harness that runs SDK operations and proves a set of secrets never shows up anywhere
a person or a log collector could read them.

Where it looks:

* every log record of every logger, at DEBUG, formatted with its traceback;
* every warning;
* anything written to ``sys.stdout`` / ``sys.stderr``;
* each operation's result (``repr`` and ``str``) and each error: message, ``repr``,
  ``args``, ``__notes__`` and traceback line of every exception in its ``__cause__`` /
  ``__context__`` chain, and for the SDK's own errors their attributes and pickled form;
* the objects a user can print: clients, their feature namespaces, ``as_user`` clones.

A secret is looked for as given, upper-cased, without dashes, and by its last 12
characters, so a token that was reformatted or cut is still found.

Every public method of both clients (and of the namespaces they hand out, down to
``db.webhooks.manager``) has an `Operation` in `SDK_OPERATIONS`; `public_sdk_methods`
makes the coverage test fail when a new one has none. The live operations (subscriptions,
streams) are bounded by `LIVE_DEADLINE`, so each ends in about a second even against a
server that never answers the way the SDK hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import logging
import pickle
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import instantdb
from instantdb._protocol.webhooks import JWKS_CACHE
from instantdb_local.webhooks.signing import SigningKey

__all__ = [
    "LIVE_DEADLINE",
    "SDK_OPERATIONS",
    "STREAM_CLIENT_ID",
    "Capture",
    "DeadlineReached",
    "Operation",
    "SecretScanner",
    "capture_everything",
    "public_sdk_methods",
]

_LOGGERS = ("", "instantdb", "httpx", "httpcore", "instantdb_local", "uvicorn", "asyncio")


class SecretScanner:
    """Looks for secrets (label -> value) in text and in objects."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.needles: list[tuple[str, str]] = []
        for label, value in secrets.items():
            assert len(value) >= 16, f"{label}: too short to scan for without false alarms"
            forms = {value, value.upper(), value.replace("-", ""), value[-12:]}
            self.needles += [(label, form) for form in sorted(forms)]
        self.leaks: list[str] = []

    def text(self, where: str, text: str, *, allowed: frozenset[str] = frozenset()) -> None:
        for label, needle in self.needles:
            if label not in allowed and needle in text:
                at = text.index(needle)
                context = text[max(0, at - 60) : at + len(needle) + 20]
                self.leaks.append(f"{label} in {where}: ...{context}...")

    def object(self, where: str, value: Any, *, allowed: frozenset[str] = frozenset()) -> None:
        """A result, client or any value: its repr and str."""
        self.text(f"repr({where})", _safe(repr, value), allowed=allowed)
        self.text(f"str({where})", _safe(str, value), allowed=allowed)

    def error(self, where: str, error: BaseException) -> None:
        """An exception and its whole chain, every way it can be shown or shipped."""
        seen: set[int] = set()
        current: BaseException | None = error
        depth = 0
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            name = f"{where}{'.__cause__' * depth}"
            self.object(name, current)
            self.text(f"{name}.args", _safe(repr, current.args))
            self.text(f"{name}.__notes__", repr(getattr(current, "__notes__", [])))
            self.text(
                f"traceback of {name}",
                "".join(traceback.format_exception_only(type(current), current)),
            )
            if isinstance(current, instantdb.InstantError):
                # The SDK's own errors are shipped whole (pickled to other processes,
                # their attributes read by error trackers). httpx's, further down the
                # chain, carry the request by design and are only shown, never shipped.
                self.text(f"vars({name})", _safe(repr, vars(current)))
                self.text(f"pickle({name})", repr(pickle.dumps(current)))
            current = current.__cause__ or current.__context__
            depth += 1

    def capture(self, where: str, capture: Capture) -> None:
        for record in capture.log_lines():
            self.text(f"log record ({where})", record)
        for message in capture.warnings:
            self.text(f"warning ({where})", str(message.message))
        self.text(f"stdout ({where})", capture.stdout.getvalue())
        self.text(f"stderr ({where})", capture.stderr.getvalue())


def _safe(render: Callable[[Any], str], value: Any) -> str:
    try:
        return render(value)
    except Exception as exc:  # a repr that fails is a bug too, but not a leak
        return f"<{render.__name__} failed: {exc!r}>"


@dataclass
class Capture:
    records: list[logging.LogRecord] = field(default_factory=list)
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)

    def log_lines(self) -> list[str]:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(record) for record in self.records]


class _Collect(logging.Handler):
    def __init__(self, capture: Capture) -> None:
        super().__init__(logging.DEBUG)
        self.capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        self.capture.records.append(record)


@contextlib.contextmanager
def capture_everything() -> Iterator[Capture]:
    """Every logger at DEBUG, every warning, and sys.stdout / sys.stderr, collected."""
    capture = Capture()
    handler = _Collect(capture)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    propagate = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        logger.propagate = False  # each record is collected once, by its own logger
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(capture.stdout),
            contextlib.redirect_stderr(capture.stderr),
        ):
            warnings.simplefilter("always")
            yield capture
            capture.warnings = list(caught)
    finally:
        for logger, level, flag in zip(loggers, levels, propagate, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = flag


# -- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One public SDK call. ``run(db, world)`` returns the result or an awaitable.

    ``returns`` names the secrets the result carries on purpose (``verify_token``
    answers the user with their refresh token): the result is not scanned for those.
    """

    name: str  # the public method it covers, e.g. "auth.verify_token"
    run: Callable[[Any, Mapping[str, str]], Any]
    returns: frozenset[str] = frozenset()


def _user(db: Any, world: Mapping[str, str]) -> Any:
    return db.as_user(token=world["refresh_token"])


# -- the live features: every operation ends within about this many seconds ---------------

LIVE_DEADLINE = 0.4
# The stream `local_world` writes before the operations run, for `streams.read` to find.
STREAM_CLIENT_ID = "secrets-stream"


class DeadlineReached(Exception):
    """A live operation saw nothing to report before `LIVE_DEADLINE` (a server that only
    ever fails transiently): an outcome of its own, neither a result nor an error."""


def _is_async(db: Any) -> bool:
    return isinstance(db, instantdb.AsyncInstant)


def _first_payload(db: Any, world: Mapping[str, str]) -> Any:
    """Subscribe as the user, take the first payload, close. An ``error`` payload is
    raised, so its exception is scanned like any other error."""
    subscription = _user(db, world).subscribe_query({"goals": {}}, rule_params={"k": 1})
    if _is_async(db):
        return _first_payload_async(subscription)
    payloads: list[Any] = []
    # close() from another thread wakes a blocked read: the deadline for a server that
    # keeps failing transiently (the subscription would reconnect for ever).
    timer = threading.Timer(LIVE_DEADLINE, subscription.close)
    timer.start()
    try:
        for payload in subscription:
            payloads.append(payload)
            break
    finally:
        timer.cancel()
        subscription.close()
    return _payload_result(subscription, payloads)


async def _first_payload_async(subscription: Any) -> Any:
    payloads: list[Any] = []

    async def first() -> None:
        async for payload in subscription:
            payloads.append(payload)
            return

    try:
        await asyncio.wait_for(first(), LIVE_DEADLINE)
    except asyncio.TimeoutError:
        pass
    finally:
        await subscription.aclose()
    return _payload_result(subscription, payloads)


def _payload_result(subscription: Any, payloads: list[Any]) -> Any:
    if not payloads:
        raise DeadlineReached
    if payloads[0]["type"] == "error":
        raise payloads[0]["error"]
    return {"subscription": subscription, "payloads": payloads}


def _write_stream(db: Any, world: Mapping[str, str]) -> Any:
    """A whole stream (multi-byte text included) written as the user, with short waits."""
    client_id = f"secrets-{uuid.uuid4()}"
    writer = _user(db, world).streams.write(client_id=client_id, timeout=LIVE_DEADLINE)
    if _is_async(db):
        return _write_stream_async(writer)
    with writer:
        stream_id = writer.stream_id
        writer.write("hello, \u00e9t\u00e9 \u2713")
        writer.write(b" world")
        writer.flush()
    return {"writer": writer, "stream_id": stream_id}


async def _write_stream_async(writer: Any) -> Any:
    async with writer:
        stream_id = await writer.stream_id
        await writer.write("hello, \u00e9t\u00e9 \u2713")
        await writer.write(b" world")
        await writer.flush()
    return {"writer": writer, "stream_id": stream_id}


def _read_stream(db: Any, world: Mapping[str, str]) -> Any:
    """The stream `local_world` wrote, read to its end (or to the deadline)."""
    reader = _user(db, world).streams.read(client_id=STREAM_CLIENT_ID)
    if _is_async(db):
        return _read_stream_async(reader)
    chunks: list[str] = []
    timer = threading.Timer(LIVE_DEADLINE, reader.close)
    timer.start()
    try:
        with reader:
            chunks.extend(reader)
    finally:
        timer.cancel()
    if timer.finished.is_set() and not reader.done:
        raise DeadlineReached
    return {"reader": reader, "text": "".join(chunks)}


async def _read_stream_async(reader: Any) -> Any:
    chunks: list[str] = []

    async def read_all() -> None:
        async with reader:
            async for chunk in reader:
                chunks.append(chunk)

    try:
        await asyncio.wait_for(read_all(), LIVE_DEADLINE)
    except asyncio.TimeoutError:
        raise DeadlineReached from None
    return {"reader": reader, "text": "".join(chunks)}


# -- webhooks ---------------------------------------------------------------------------------

# A key no server knows: its deliveries make the SDK fetch the JWKS, then refuse them.
_FORGER = SigningKey.generate()


def _delivery(world: Mapping[str, str]) -> tuple[str, str]:
    """A real delivery (header, body) when the world has one, else a forged one."""
    if "webhook_header" in world:
        return world["webhook_header"], world["webhook_body"]
    # The payload token wraps the refresh token's text: a payload token the SDK failed to
    # hide (it is a credential too) shows up in the scan as the refresh token.
    body = (
        f'{{"payloadUrl":"{world["api_uri"]}/webhooks/payload/{world.get("app_id", "x")}/'
        f'{uuid.uuid4()}/0/0/1","token":"t.{world["refresh_token"]}.s"}}'
    )
    return _FORGER.signature_header(int(time.time()), body.encode()), body


def _validate(db: Any, world: Mapping[str, str]) -> Any:
    # Forget fetched keys, so that every run fetches the JWKS (a request to scan).
    JWKS_CACHE.clear()
    header, body = _delivery(world)
    return db.webhooks.validate(signature_header=header, body=body)


def _fetch_payloads(db: Any, world: Mapping[str, str]) -> Any:
    _, body = _delivery(world)
    return db.webhooks.fetch_payloads(json.loads(body))


def _process_payload(db: Any, world: Mapping[str, str]) -> Any:
    seen: list[Any] = []

    def handle(record: Any) -> None:
        seen.append(record["id"])
        print("handled", record["namespace"], record["action"])

    payload = {
        "data": [
            {
                "namespace": "goals",
                "id": str(uuid.uuid4()),
                "action": "create",
                "before": None,
                "after": {"title": "t"},
                "idempotencyKey": "k1",
            },
        ],
        "idempotencyKey": "k",
    }
    result = db.webhooks.process_payload({"goals": {"create": handle}}, payload)
    if inspect.isawaitable(result):
        return _awaited_then(result, seen)
    return seen


async def _awaited_then(result: Any, value: Any) -> Any:
    await result
    return value


# A sink no one listens on: the local server's deliveries fail on loopback and go no
# further.
_SINK = "http://127.0.0.1:9/secrets"


SDK_OPERATIONS: list[Operation] = [
    Operation("query", lambda db, w: db.query({"goals": {}}, rule_params={"k": 1})),
    Operation(
        "transact",
        lambda db, w: db.transact(db.tx.goals[instantdb.id()].update({"title": "t"})),
    ),
    Operation("debug_query", lambda db, w: _user(db, w).debug_query({"goals": {}})),
    Operation(
        "debug_transact",
        lambda db, w: _user(db, w).debug_transact(db.tx.goals[instantdb.id()].update({"n": 1})),
    ),
    Operation("schema", lambda db, w: db.schema()),
    Operation("as_user", lambda db, w: _user(db, w).query({"goals": {}})),
    Operation("auth.send_magic_code", lambda db, w: db.auth.send_magic_code("a@b.co")),
    Operation("auth.generate_magic_code", lambda db, w: db.auth.generate_magic_code("a@b.co")),
    Operation(
        "auth.check_magic_code",
        lambda db, w: db.auth.check_magic_code(email="a@b.co", code="123456"),
    ),
    # The result is a new refresh token (not one the scanner looks for).
    Operation("auth.create_token", lambda db, w: db.auth.create_token(email="new@b.co")),
    Operation(
        "auth.verify_token",
        lambda db, w: db.auth.verify_token(w["refresh_token"]),
        returns=frozenset({"refresh token"}),
    ),
    Operation("auth.get_user", lambda db, w: db.auth.get_user(refresh_token=w["refresh_token"])),
    Operation("storage.upload_file", lambda db, w: db.storage.upload_file("a/b.txt", b"hello")),
    Operation(
        "storage.download", lambda db, w: db.storage.download(w["api_uri"] + "/files/x?sig=1")
    ),
    Operation("rooms.get_presence", lambda db, w: db.rooms.get_presence("chat", "room-1")),
    Operation("subscribe_query", _first_payload),
    Operation("streams.write", _write_stream),
    Operation("streams.read", _read_stream),
    Operation("webhooks.validate", _validate),
    Operation("webhooks.fetch_payloads", _fetch_payloads),
    Operation("webhooks.process_payload", _process_payload),
    Operation(
        "webhooks.manager.create",
        lambda db, w: db.webhooks.manager.create(
            url=_SINK, namespaces=["goals"], actions=["create", "update"]
        ),
    ),
    Operation("webhooks.manager.list", lambda db, w: db.webhooks.manager.list()),
    Operation(
        "webhooks.manager.update",
        lambda db, w: db.webhooks.manager.update(_hook(w), actions=["delete"]),
    ),
    Operation("webhooks.manager.disable", lambda db, w: db.webhooks.manager.disable(_hook(w))),
    Operation("webhooks.manager.enable", lambda db, w: db.webhooks.manager.enable(_hook(w))),
    Operation(
        "webhooks.manager.list_events", lambda db, w: db.webhooks.manager.list_events(_hook(w))
    ),
    Operation(
        "webhooks.manager.get_event",
        lambda db, w: db.webhooks.manager.get_event(_hook(w), isn=_isn(w)),
    ),
    Operation(
        "webhooks.manager.get_payload",
        lambda db, w: db.webhooks.manager.get_payload(_hook(w), isn=_isn(w)),
    ),
    Operation(
        "webhooks.manager.resend_event",
        lambda db, w: db.webhooks.manager.resend_event(_hook(w), isn=_isn(w)),
    ),
    Operation("webhooks.manager.delete", lambda db, w: db.webhooks.manager.delete(_hook(w))),
    # Last: these end the user's session, which the operations above act as.
    Operation(
        "auth.delete_user", lambda db, w: db.auth.delete_user(refresh_token=w["refresh_token"])
    ),
    Operation("auth.sign_out", lambda db, w: db.auth.sign_out(refresh_token=w["refresh_token"])),
]


def _hook(world: Mapping[str, str]) -> str:
    """The webhook `local_world` made, or any id (the server then says it is unknown)."""
    return world.get("webhook_id", "00000000-0000-4000-8000-00000000e000")


def _isn(world: Mapping[str, str]) -> str:
    return world.get("webhook_isn", "0/0/1")


# Entry and exit are covered by the harness itself (it closes every client it makes).
_LIFECYCLE = {"close", "aclose"}


def public_sdk_methods() -> set[str]:
    """Every public method of both clients and of the objects their properties return,
    at any depth (``db.auth``, ``db.webhooks.manager``, ...), e.g. ``"query"``,
    ``"auth.verify_token"``, ``"webhooks.manager.create"``."""
    found: set[str] = set()
    for client in (instantdb.Instant, instantdb.AsyncInstant):
        found |= _public_methods(client, "")
    return found


def _public_methods(owner: type, prefix: str) -> set[str]:
    found: set[str] = set()
    for name, member in inspect.getmembers(owner):
        if name.startswith("_") or name in _LIFECYCLE:
            continue
        if isinstance(member, property):
            returned = inspect.get_annotations(member.fget, eval_str=True).get("return")
            if isinstance(returned, type) and returned.__module__.startswith("instantdb"):
                found |= _public_methods(returned, f"{prefix}{name}.")
        elif callable(member):
            found.add(f"{prefix}{name}")
    return found
