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

Phase 2 extends it by adding `Operation`s (subscriptions, streams, webhooks, the notebook
layer) to `SDK_OPERATIONS`; `public_sdk_methods` makes the coverage test fail until
every public method of both clients has one.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import pickle
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import instantdb

__all__ = [
    "SDK_OPERATIONS",
    "Capture",
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
    Operation(
        "auth.delete_user", lambda db, w: db.auth.delete_user(refresh_token=w["refresh_token"])
    ),
    Operation("auth.sign_out", lambda db, w: db.auth.sign_out(refresh_token=w["refresh_token"])),
    Operation("storage.upload_file", lambda db, w: db.storage.upload_file("a/b.txt", b"hello")),
    Operation(
        "storage.download", lambda db, w: db.storage.download(w["api_uri"] + "/files/x?sig=1")
    ),
    Operation("rooms.get_presence", lambda db, w: db.rooms.get_presence("chat", "room-1")),
]

# Entry and exit are covered by the harness itself (it closes every client it makes).
_LIFECYCLE = {"close", "aclose"}


def public_sdk_methods() -> set[str]:
    """Every public method of both clients and of the objects their properties return
    (``db.auth``, ``db.storage``, ...), e.g. ``"query"``, ``"auth.verify_token"``."""
    found: set[str] = set()
    for client in (instantdb.Instant, instantdb.AsyncInstant):
        for name, member in inspect.getmembers(client):
            if name.startswith("_") or name in _LIFECYCLE:
                continue
            if not isinstance(member, property):
                found.add(name)
                continue
            returned = inspect.get_annotations(member.fget, eval_str=True).get("return")
            if isinstance(returned, type) and returned.__module__.startswith("instantdb"):
                found |= {
                    f"{name}.{method}"
                    for method, _ in inspect.getmembers(returned, inspect.isfunction)
                    if not method.startswith("_")
                }
    return found
