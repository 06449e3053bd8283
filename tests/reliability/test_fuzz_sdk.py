"""Fuzz the SDK's inputs: the tx builder, the JSON encoder and every public method, with
the values a user might hand them (JSON-able or not: NaN, bytes, sets, datetimes, enums,
lone surrogates, nested containers). Each call ends in a result or an `InstantError`,
never another exception; what it sends is valid JSON; and nothing bad is sent at all
(bad input is refused before any I/O).

The server is a `httpx.MockTransport` answering ``{}``, which the parsers refuse for
most routes: that exercises their error path too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from instantdb import (
    AsyncInstant,
    Instant,
    InstantEncodeError,
    InstantError,
    InstantValueError,
    id,
    lookup,
)
from tests.reliability._strategies import ENTITY_IDS, python_values

APP_ID = "a0000000-0000-4000-8000-000000000001"
ADMIN_TOKEN = "ad000000-0000-4000-8000-0000000000fe"

_texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["a@b.co", "goals", "title", "", " ", "x\ny", "\x00", ENTITY_IDS[0]]),
)
_anything = st.one_of(_texts, python_values(6))
_maybe = st.one_of(st.none(), _anything)


class Recorder:
    """A fake API that checks every request body the SDK sends is valid JSON."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("content-type") == "application/json" and request.content:
            json.loads(request.content)  # a failure here is a bug in the SDK's encoder
        return httpx.Response(200, json={})


def _sync_client(recorder: Recorder) -> Instant:
    return Instant(
        app_id=APP_ID,
        admin_token=ADMIN_TOKEN,
        retry=False,
        _transport=httpx.MockTransport(recorder.handle),
    )


def _outcome(run: Callable[[], Any]) -> None:
    try:
        run()
    except InstantError as error:
        event(f"refused: {type(error).__name__}")
    else:
        event("sent")


# -- the tx builder and the encoder ------------------------------------------------------

_ops = st.sampled_from(["update", "merge", "create", "link", "unlink", "delete", "rule_params"])


@given(
    namespace=_anything,
    entity=st.one_of(st.sampled_from(ENTITY_IDS), _anything),
    ops=st.lists(st.tuples(_ops, _anything, _maybe), min_size=1, max_size=3),
)
def test_tx_builder_chains(namespace: Any, entity: Any, ops: list[tuple[str, Any, Any]]) -> None:
    recorder = Recorder()
    with _sync_client(recorder) as db:

        def build_and_send() -> None:
            chunk = db.tx[namespace][entity]
            for op, args, opts in ops:
                method = getattr(chunk, op)
                if op == "delete":
                    chunk = method()
                elif op in ("update", "merge") and opts is not None:
                    chunk = method(args, opts)
                else:
                    chunk = method(args)
            db.transact(chunk)

        _outcome(build_and_send)


@given(attribute=_anything, value=_anything)
def test_lookup(attribute: Any, value: Any) -> None:
    recorder = Recorder()
    with _sync_client(recorder) as db:
        _outcome(lambda: db.transact(db.tx.goals[lookup(attribute, value)].update({"a": 1})))


@given(chunks=st.one_of(_anything, st.lists(st.one_of(_anything, st.just("chunk")), max_size=3)))
def test_transact_takes_only_chunks(chunks: Any) -> None:
    recorder = Recorder()
    with _sync_client(recorder) as db:
        real = db.tx.goals[id()].update({"title": "t"})
        if isinstance(chunks, list):
            chunks = [real if item == "chunk" else item for item in chunks]
        _outcome(lambda: db.transact(chunks))


# -- every public method ------------------------------------------------------------------

CALLS: dict[str, Callable[[Any, st.DataObject], Any]] = {
    "query": lambda db, d: db.query(d.draw(_anything), rule_params=d.draw(_maybe)),
    "transact": lambda db, d: db.transact(
        db.tx.goals[id()].update({"v": d.draw(_anything)}), rule_params=d.draw(_maybe)
    ),
    "debug_query": lambda db, d: db.as_user(guest=True).debug_query(
        d.draw(_anything), rules=d.draw(_maybe), rule_params=d.draw(_maybe)
    ),
    "debug_transact": lambda db, d: db.as_user(email="a@b.co").debug_transact(
        db.tx.goals[id()].update({"v": 1}), rules=d.draw(_maybe)
    ),
    "schema": lambda db, d: db.schema(),
    "as_user": lambda db, d: db.as_user(
        email=d.draw(_maybe), token=d.draw(_maybe), guest=d.draw(st.one_of(st.booleans(), _maybe))
    ).query({"goals": {}}),
    "auth.send_magic_code": lambda db, d: db.auth.send_magic_code(d.draw(_anything)),
    "auth.generate_magic_code": lambda db, d: db.auth.generate_magic_code(d.draw(_anything)),
    "auth.check_magic_code": lambda db, d: db.auth.check_magic_code(
        email=d.draw(_anything), code=d.draw(_anything), extra_fields=d.draw(_maybe)
    ),
    "auth.create_token": lambda db, d: db.auth.create_token(
        email=d.draw(_maybe), id=d.draw(_maybe), extra_fields=d.draw(_maybe)
    ),
    "auth.verify_token": lambda db, d: db.auth.verify_token(d.draw(_anything)),
    "auth.get_user": lambda db, d: db.auth.get_user(
        email=d.draw(_maybe), id=d.draw(_maybe), refresh_token=d.draw(_maybe)
    ),
    "auth.delete_user": lambda db, d: db.auth.delete_user(
        email=d.draw(_maybe), id=d.draw(_maybe), refresh_token=d.draw(_maybe)
    ),
    "auth.sign_out": lambda db, d: db.auth.sign_out(
        email=d.draw(_maybe), id=d.draw(_maybe), refresh_token=d.draw(_maybe)
    ),
    "storage.upload_file": lambda db, d: db.storage.upload_file(
        d.draw(_anything),
        d.draw(st.one_of(st.binary(max_size=8), _anything)),
        content_type=d.draw(_maybe),
        content_disposition=d.draw(_maybe),
        file_size=d.draw(st.one_of(st.none(), st.integers(-2, 10), _anything)),
    ),
    "storage.download": lambda db, d: db.storage.download(
        d.draw(st.one_of(st.just("http://files.test/a?sig=1"), _anything))
    ),
    "rooms.get_presence": lambda db, d: db.rooms.get_presence(d.draw(_anything), d.draw(_anything)),
}


@pytest.mark.parametrize("kind", ["sync", "async"])
@given(name=st.sampled_from(sorted(CALLS)), data=st.data())
def test_every_public_method(kind: str, name: str, data: st.DataObject) -> None:
    recorder = Recorder()
    transport = httpx.MockTransport(recorder.handle)
    if kind == "sync":
        with Instant(
            app_id=APP_ID, admin_token=ADMIN_TOKEN, retry=False, _transport=transport
        ) as db:
            _outcome(lambda: CALLS[name](db, data))
        return

    async def run() -> None:
        async with AsyncInstant(
            app_id=APP_ID, admin_token=ADMIN_TOKEN, retry=False, _transport=transport
        ) as adb:
            try:
                await CALLS[name](adb, data)
            except InstantError as error:
                event(f"refused: {type(error).__name__}")

    asyncio.run(run())


# -- regressions the fuzzing found -----------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "where"),
    [
        (lambda db: db.transact(db.tx.goals[id()].update({"t": "a\ud800"})), '[3]["t"]'),
        (lambda db: db.query({"goals": {"$": {"where": {"t": "\udcff"}}}}), '["query"]'),
        (lambda db: db.transact(db.tx.goals[lookup("t", "\ud800")].update({})), "[2]"),
        (lambda db: db.auth.generate_magic_code("a\ud800@b.co"), '["email"]'),
        (lambda db: db.query({"goals\ud800": {}}), "(the key)"),
    ],
    ids=["tx-value", "where-value", "lookup", "auth-email", "key"],
)
def test_a_lone_surrogate_is_refused_before_sending(send: Any, where: str) -> None:
    # Was a bare UnicodeEncodeError from the JSON encoder.
    recorder = Recorder()
    with _sync_client(recorder) as db, pytest.raises(InstantEncodeError) as caught:
        send(db)
    assert "lone surrogate" in str(caught.value)
    assert where in caught.value.path
    assert recorder.requests == []


SECRET = "5ec12e75-0000-4000-8000-5ec12e75ec12"


@pytest.mark.parametrize(
    ("make", "what", "secret"),
    [
        (lambda: Instant(app_id="é", admin_token=ADMIN_TOKEN), "app_id", False),
        (lambda: Instant(app_id="a\r\nx: y", admin_token=ADMIN_TOKEN), "app_id", False),
        (lambda: Instant(app_id=APP_ID, admin_token=SECRET + "é"), "admin_token", True),
        (lambda: Instant(app_id=APP_ID, admin_token=SECRET + "\nx: y"), "admin_token", True),
        (
            lambda: Instant(app_id=APP_ID, admin_token=ADMIN_TOKEN).as_user(email="é@b.co"),
            "as_user(email=...)",
            False,
        ),
        (
            lambda: Instant(app_id=APP_ID, admin_token=ADMIN_TOKEN).as_user(token=SECRET + "\nx"),
            "as_user(token=...)",
            True,
        ),
    ],
    ids=["app-id-accent", "app-id-crlf", "token-accent", "token-newline", "email", "as-token"],
)
def test_header_values_are_checked_when_given(make: Any, what: str, secret: bool) -> None:
    # Were a bare UnicodeEncodeError at the first request (non-ASCII), or left to the
    # HTTP library to refuse (line breaks).
    with pytest.raises(InstantValueError) as caught:
        make()
    message = str(caught.value)
    assert message.startswith(f"{what} is sent as an HTTP header")
    if secret:
        assert SECRET not in message
        assert "5ec12e75" not in message
