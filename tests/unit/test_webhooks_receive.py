"""Receiving webhooks: validate, fetch_payloads and process_payload, on both clients and
as the standalone functions of instantdb.webhooks."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from instantdb import InstantTypeError, InstantValidationError, InstantValueError, webhooks
from instantdb._protocol import webhooks as protocol
from instantdb.webhooks import InstantWebhookError, InstantWebhookSignatureError
from tests.unit.mock_api import ClientHarness, MockAPI

# The test vector of live-protocol §6.3 (a test key only).
SEED = bytes(range(32))
KID = "271828182"
X = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
ORIGIN = "http://localhost:8888"
T = 1760000000
JWT = (
    "eyJraWQiOiIyNzE4MjgxODIiLCJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9.eyJpc3MiOiJodHRwOi8vbG9jYWxob3N0"
    "Ojg4ODgiLCJzdWIiOiIxMTExMTExMS0xMTExLTQxMTEtODExMS0xMTExMTExMTExMTEiLCJhcHAtaWQiOiIxMTExMTEx"
    "MS0xMTExLTQxMTEtODExMS0xMTExMTExMTExMTEiLCJleHAiOjE3NjAwMDM2MDAsImlzbiI6IjAvMC8xQSIsIndlYmhv"
    "b2staWQiOiIyMjIyMjIyMi0yMjIyLTQyMjItODIyMi0yMjIyMjIyMjIyMjIifQ.eURTfpRBhlERJRdiaEzmkkW07RbuFJ"
    "g0O_P_FAGNSKlezApheSylB-wJz72EQqAMBxdjTH461JdKLl5SZUy2Dw"
)
PAYLOAD_URL = (
    f"{ORIGIN}/webhooks/payload/11111111-1111-4111-8111-111111111111/"
    "22222222-2222-4222-8222-222222222222/0/0/1A"
)
BODY = json.dumps({"payloadUrl": PAYLOAD_URL, "token": JWT}, separators=(",", ":")).encode()
V1 = (
    "a5fe47155854640809300158200f3d392b211aec7a601bfc8046d6e6ab44413388bdc107b2802b1b2a633981b7b2"
    "199ccccae6cdac3f2b6e503fb5727f745f09"
)
HEADER = f"t={T},kid={KID},v1={V1}"
JWKS = {
    "keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID, "x": X}]
}
PAYLOAD = {
    "data": [
        {
            "namespace": "goals",
            "id": "33333333-3333-4333-8333-333333333333",
            "action": "create",
            "before": None,
            "after": {"id": "33333333-3333-4333-8333-333333333333", "title": "first"},
            "idempotencyKey": "e75514ae-ad63-c1af-37e8-dd0069c8502b",
        }
    ],
    "idempotencyKey": "798ef562-0165-a0a3-74fc-e46c566f4479",
}


def sign(body: bytes, t: int = T, *, seed: bytes = SEED, kid: str = KID, t_text: str = "") -> str:
    """An Instant-Signature header for ``body``, signed with ``seed``."""
    stamp = t_text or str(t)
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(stamp.encode() + b"." + body)
    return f"t={stamp},kid={kid},v1={signature.hex()}"


def public_x(seed: bytes) -> str:
    raw = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    protocol.JWKS_CACHE.clear()
    yield
    protocol.JWKS_CACHE.clear()


def serve_jwks(api: MockAPI, jwks: Any = JWKS, payload: Any = PAYLOAD) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/webhooks/jwks.json":
            return httpx.Response(200, json=jwks)
        return httpx.Response(200, json=payload)

    api.default = answer


def validate(harness: ClientHarness, db: Any, header: str, body: Any, **kwargs: Any) -> Any:
    return harness.call(db.webhooks, "validate", signature_header=header, body=body, **kwargs)


def test_the_spec_vector_validates_with_one_jwks_fetch_then_from_the_cache(
    harness: ClientHarness,
) -> None:
    assert sign(BODY) == HEADER  # our test signer reproduces the vector
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    assert validate(harness, db, HEADER, BODY, received_at=T) == {
        "payloadUrl": PAYLOAD_URL,
        "token": JWT,
    }
    (fetch,) = harness.api.requests
    assert fetch.method == "GET"
    assert str(fetch.url) == f"{ORIGIN}/.well-known/webhooks/jwks.json"
    assert "authorization" not in fetch.headers
    assert "app-id" not in fetch.headers
    # A str body is its UTF-8 bytes; the key now comes from the process-wide cache.
    assert validate(harness, db, HEADER, BODY.decode(), received_at=T + 300)["token"] == JWT
    assert len(harness.api.requests) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace(b"0/0/1A", b"0/0/1B")),
        lambda h, b: (h, b + b" "),
        lambda h, b: (h.replace(f"t={T}", f"t={T + 1}"), b),
        lambda h, b: (h.replace(f"t={T}", f"t=0{T}"), b),
        lambda h, b: (h[:-1] + ("0" if h[-1] != "0" else "1"), b),
    ],
    ids=["body byte", "body appended", "timestamp", "timestamp text", "signature"],
)
def test_any_change_to_body_timestamp_or_signature_is_refused(
    harness: ClientHarness, tamper: Any
) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    header, body = tamper(HEADER, BODY)
    with pytest.raises(InstantWebhookSignatureError, match="did not validate"):
        validate(harness, db, header, body, received_at=T)


@pytest.mark.parametrize(
    ("received_at", "message"),
    [(T + 301, "too old"), (T - 301, "from the future")],
)
def test_the_time_window_applies_both_ways(
    harness: ClientHarness, received_at: int, message: str
) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    with pytest.raises(InstantWebhookSignatureError, match=message):
        validate(harness, db, HEADER, BODY, received_at=received_at)
    # Refused before any key was fetched.
    assert harness.api.requests == []
    assert validate(harness, db, HEADER, BODY, received_at=T - 300)["token"] == JWT


def test_a_replay_is_refused_with_the_default_window_against_the_real_clock(
    harness: ClientHarness,
) -> None:
    db = harness.make(api_uri=ORIGIN)
    with pytest.raises(InstantWebhookSignatureError, match="too old"):
        validate(harness, db, HEADER, BODY)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "header is empty"),
        ("t=1,kid=2", "missing v1"),
        ("v1=00", "missing t, kid"),
        (f"t=soon,kid={KID},v1={V1}", "t must be a unix time"),
        (f"t=-5,kid={KID},v1={V1}", "t must be a unix time"),
        (f"t={T},kid={KID},v1=abc", "v1 must be 128 hex"),
        (f"t={T},kid={KID},v1={V1},v1={V1}", "names v1= twice"),
        (b"\xff", "must be ASCII"),
        (None, "signature_header must be"),
    ],
)
def test_malformed_headers_are_signature_errors(
    harness: ClientHarness, header: Any, message: str
) -> None:
    db = harness.make(api_uri=ORIGIN)
    with pytest.raises(InstantWebhookSignatureError, match=message):
        validate(harness, db, header, BODY, received_at=T)
    assert harness.api.requests == []


def test_unknown_kids_cost_at_most_one_jwks_fetch_per_interval(harness: ClientHarness) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    other = sign(BODY, kid="999")
    for _ in range(3):
        with pytest.raises(InstantWebhookSignatureError, match="kid='999'"):
            validate(harness, db, other, BODY, received_at=T)
    assert len(harness.api.requests) == 1


def test_a_key_of_another_server_does_not_validate(harness: ClientHarness) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api, jwks={"keys": [{**JWKS["keys"][0], "x": public_x(b"\x07" * 32)}]})
    with pytest.raises(InstantWebhookSignatureError, match="did not validate"):
        validate(harness, db, HEADER, BODY, received_at=T)


@pytest.mark.parametrize(
    "jwks",
    [{"nokeys": []}, [], {"keys": "x"}],
)
def test_a_broken_jwks_answer_is_a_clear_error(harness: ClientHarness, jwks: Any) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api, jwks=jwks)
    with pytest.raises(InstantWebhookError):
        validate(harness, db, HEADER, BODY, received_at=T)


def test_production_deliveries_use_the_bundled_key_without_fetching(
    harness: ClientHarness,
) -> None:
    db = harness.make(api_uri="https://api.instantdb.com")
    forged = sign(BODY, kid="1034696293")
    with pytest.raises(InstantWebhookSignatureError, match="did not validate"):
        validate(harness, db, forged, BODY, received_at=T)
    assert harness.api.requests == []
    assert protocol.bundled_key("https://api.instantdb.com:443/", "1034696293") is not None
    assert protocol.bundled_key("http://localhost:8888", "1034696293") is None


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"payloadUrl":"","token":"t"}', b'{"payloadUrl":"u"}'],
)
def test_a_signed_body_of_the_wrong_shape_is_a_webhook_error(
    harness: ClientHarness, body: bytes
) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    with pytest.raises(InstantWebhookError):
        validate(harness, db, sign(body), body, received_at=T)


def test_bad_argument_types_are_type_errors(harness: ClientHarness) -> None:
    db = harness.make(api_uri=ORIGIN)
    with pytest.raises(InstantTypeError, match="raw request body"):
        validate(harness, db, HEADER, {"payloadUrl": "x"}, received_at=T)
    with pytest.raises(InstantValueError, match="max_age_seconds must be a positive"):
        validate(harness, db, HEADER, BODY, max_age_seconds=0)
    with pytest.raises(InstantValueError, match="aware datetime"):
        validate(harness, db, HEADER, BODY, received_at=datetime(2025, 1, 1))


# -- fetch_payloads ---------------------------------------------------------------------------


def test_fetch_payloads_sends_only_the_token_to_the_configured_host(
    harness: ClientHarness,
) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    body = {"payloadUrl": PAYLOAD_URL, "token": JWT}
    assert harness.call(db.webhooks, "fetch_payloads", body) == PAYLOAD
    request = harness.api.last
    assert str(request.url) == PAYLOAD_URL
    assert request.headers["authorization"] == f"Bearer {JWT}"
    assert request.headers["accept"] == "application/json"
    assert "app-id" not in request.headers


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/webhooks/payload/a/b/0/0/1",
        "https://localhost:8888/webhooks/payload/a/b/0/0/1",
        "http://localhost:8889/webhooks/payload/a/b/0/0/1",
        "http://localhost.evil.example:8888/webhooks/payload/a/b/0/0/1",
        "http://user:pw@localhost:8888/webhooks/payload/a/b/0/0/1",
        "file:///etc/passwd",
    ],
)
def test_fetch_payloads_refuses_other_hosts_before_sending(
    harness: ClientHarness, url: str
) -> None:
    db = harness.make(api_uri=ORIGIN)
    with pytest.raises(InstantValueError, match="payloadUrl"):
        harness.call(db.webhooks, "fetch_payloads", {"payloadUrl": url, "token": JWT})
    assert harness.api.requests == []


PAYLOAD_PATH = PAYLOAD_URL.removeprefix(ORIGIN)


@pytest.mark.parametrize(
    ("api_uri", "payload_origin"),
    [
        ("http://localhost:8888", "http://127.0.0.1:8888"),
        ("http://localhost:8888", "http://[::1]:8888"),
        ("http://localhost:8888", "http://127.45.6.7:8888"),
        ("http://127.0.0.1:8888", "http://localhost:8888"),
        ("http://127.0.0.1:8888", "http://LOCALHOST:8888"),
        ("http://[::1]:8888", "http://127.0.0.1:8888"),
        ("https://localhost:8443", "https://127.0.0.1:8443"),
        ("http://localhost", "http://127.0.0.1:80"),
        ("https://api.example.test", "https://API.example.test:443"),
    ],
)
def test_loopback_names_of_one_scheme_and_port_are_one_origin(
    api_uri: str, payload_origin: str
) -> None:
    assert protocol.same_payload_origin(payload_origin + PAYLOAD_PATH, api_uri)
    request = protocol.payload_request(
        api_uri, {"payloadUrl": payload_origin + PAYLOAD_PATH, "token": JWT}
    )
    # Sent under api_uri (to the name the client trusts), never to the name in the body.
    assert (request.url, request.path) == (None, PAYLOAD_PATH)


@pytest.mark.parametrize(
    "payload_origin",
    [
        "http://127.0.0.1:8889",  # another port
        "http://[::1]:8889",
        "https://127.0.0.1:8888",  # another scheme
        "https://localhost:8888",
        "http://localhost.evil.example:8888",  # names that only start like loopback
        "http://127.0.0.1.nip.io:8888",
        "http://localhost.:8888",
        "http://127.1:8888",  # non-canonical spellings of 127.0.0.1
        "http://2130706433:8888",
        "http://0.0.0.0:8888",  # not loopback
        "http://[::2]:8888",
        "http://10.0.0.1:8888",
        "http://evil.example:8888",
    ],
)
def test_other_loopback_ports_schemes_and_lookalike_hosts_are_other_origins(
    payload_origin: str,
) -> None:
    assert not protocol.same_payload_origin(payload_origin + PAYLOAD_PATH, ORIGIN)
    with pytest.raises(InstantValueError, match="refusing to send the webhook token"):
        protocol.payload_request(
            ORIGIN, {"payloadUrl": payload_origin + PAYLOAD_PATH, "token": JWT}
        )


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:8888@evil.example{PAYLOAD_PATH}",
        f"http://localhost:8888@evil.example:8888{PAYLOAD_PATH}",
        f"http://user@localhost:8888{PAYLOAD_PATH}",
    ],
)
def test_userinfo_in_payload_url_is_refused(url: str) -> None:
    with pytest.raises(InstantValueError, match="user name or password") as caught:
        protocol.payload_request(ORIGIN, {"payloadUrl": url, "token": JWT})
    assert JWT not in str(caught.value)


def test_a_loopback_alias_is_fetched_from_the_clients_own_host(harness: ClientHarness) -> None:
    db = harness.make(api_uri=ORIGIN)
    serve_jwks(harness.api)
    body = {"payloadUrl": "http://127.0.0.1:8888" + PAYLOAD_PATH, "token": JWT}
    assert harness.call(db.webhooks, "fetch_payloads", body) == PAYLOAD
    request = harness.api.last
    assert str(request.url) == PAYLOAD_URL
    assert request.headers["authorization"] == f"Bearer {JWT}"


def test_the_refusal_says_what_differs_and_what_to_do(harness: ClientHarness) -> None:
    db = harness.make(api_uri=ORIGIN)
    url = "http://127.0.0.1:8889" + PAYLOAD_PATH
    with pytest.raises(InstantValueError) as caught:
        harness.call(db.webhooks, "fetch_payloads", {"payloadUrl": url, "token": JWT})
    message = str(caught.value)
    assert "http://127.0.0.1:8889" in message
    assert f"api_uri ({ORIGIN})" in message
    assert "port (8889, not 8888)" in message
    assert "host" not in message.split(" in its ")[1].split(".")[0]  # loopback names agree
    assert "api_uri='http://127.0.0.1:8889'" in message
    assert "validate" not in message
    assert JWT not in message
    assert harness.api.requests == []


def test_the_refusal_names_every_part_that_differs() -> None:
    with pytest.raises(InstantValueError) as caught:
        protocol.payload_request(ORIGIN, {"payloadUrl": "https://evil.example/p", "token": JWT})
    assert (
        "scheme (https, not http), host (evil.example, not localhost) and port (443, not "
        "8888)" in str(caught.value)
    )


def test_fetch_payloads_accepts_the_default_port_written_out(harness: ClientHarness) -> None:
    db = harness.make(api_uri="https://api.example.test")
    harness.api.queue(httpx.Response(200, json={"data": None, "idempotencyKey": "k"}))
    url = "https://API.example.test:443/webhooks/payload/a/b/0/0/1"
    assert harness.call(db.webhooks, "fetch_payloads", {"payloadUrl": url, "token": "t"}) == {
        "data": [],
        "idempotencyKey": "k",
    }


def test_an_error_answer_never_shows_the_token(harness: ClientHarness) -> None:
    db = harness.make(api_uri=ORIGIN)
    harness.api.queue(
        httpx.Response(400, json={"type": "validation-failed", "message": f"bad token {JWT}"})
    )
    with pytest.raises(InstantValidationError) as caught:
        harness.call(db.webhooks, "fetch_payloads", {"payloadUrl": PAYLOAD_URL, "token": JWT})
    assert JWT not in str(caught.value)
    assert JWT not in json.dumps(caught.value.body)


# -- process_payload --------------------------------------------------------------------------


def records(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {
        "data": [
            {"namespace": ns, "action": action, "id": str(i), "before": None, "after": None}
            for i, (ns, action) in enumerate(pairs)
        ]
    }


def test_most_specific_handler_wins_in_record_order(harness: ClientHarness) -> None:
    db = harness.make()
    calls: list[str] = []
    handlers = {
        "goals": {
            "create": lambda r: calls.append(f"goals.create {r['id']}"),
            "update": None,
            "$default": lambda r: calls.append(f"goals.$default {r['id']}"),
        },
        "todos": lambda r: calls.append(f"todos {r['id']}"),
        "tags": {"create": lambda r: calls.append(f"tags.create {r['id']}")},
        "$default": lambda r: calls.append(f"$default {r['namespace']} {r['id']}"),
    }
    payload = records(
        ("goals", "create"),
        ("goals", "update"),
        ("todos", "delete"),
        ("tags", "delete"),
        ("users", "create"),
        ("goals", "create"),
    )
    harness.call(db.webhooks, "process_payload", handlers, payload)
    assert calls == [
        "goals.create 0",
        "goals.$default 1",
        "todos 2",
        "$default tags 3",
        "$default users 4",
        "goals.create 5",
    ]


def test_records_without_a_handler_are_skipped_and_empty_payloads_do_nothing(
    harness: ClientHarness,
) -> None:
    db = harness.make()
    calls: list[Any] = []
    harness.call(
        db.webhooks,
        "process_payload",
        {"goals": {"create": calls.append}},
        records(("todos", "create")),
    )
    harness.call(db.webhooks, "process_payload", {"$default": calls.append}, {"data": None})
    harness.call(db.webhooks, "process_payload", {"$default": calls.append}, {})
    assert calls == []


def test_a_handler_error_stops_the_rest(harness: ClientHarness) -> None:
    db = harness.make()
    calls: list[str] = []

    def fail(record: dict[str, Any]) -> None:
        raise RuntimeError("handler failed")

    handlers = {"goals": {"update": fail}, "$default": lambda r: calls.append(r["id"])}
    with pytest.raises(RuntimeError, match="handler failed"):
        harness.call(
            db.webhooks,
            "process_payload",
            handlers,
            records(("a", "create"), ("goals", "update"), ("b", "create")),
        )
    assert calls == ["0"]


@pytest.mark.parametrize(
    ("handlers", "payload", "error", "message"),
    [
        ("nope", records(), InstantTypeError, "handlers must be a dict"),
        ({"goals": {"create": 5}}, records(), InstantTypeError, r"handlers\['goals'\]\['create'\]"),
        ({"$default": {"create": print}}, records(), InstantTypeError, "must be a function"),
        ({}, [1], InstantTypeError, "payload must be"),
        ({}, {"data": [{"id": 1}]}, InstantWebhookError, r"payload\['data'\]\[0\]"),
        ({}, {"data": "x"}, InstantWebhookError, "must be a list"),
    ],
)
def test_bad_handlers_or_payloads_fail_before_any_handler_runs(
    harness: ClientHarness, handlers: Any, payload: Any, error: type[Exception], message: str
) -> None:
    db = harness.make()
    with pytest.raises(error, match=message):
        harness.call(db.webhooks, "process_payload", handlers, payload)


def test_the_blocking_client_refuses_async_handlers_before_running_any() -> None:
    harness = ClientHarness("sync")
    db = harness.make()
    calls: list[str] = []

    async def on_create(record: dict[str, Any]) -> None:
        calls.append("async")

    handlers = {"goals": {"update": calls.append, "create": on_create}}
    with pytest.raises(InstantTypeError, match="async function"):
        db.webhooks.process_payload(handlers, records(("goals", "update"), ("goals", "create")))
    assert calls == []
    # A plain function that returns a coroutine is caught when it returns one.
    with pytest.raises(InstantTypeError, match="returned an awaitable"):
        db.webhooks.process_payload(
            {"$default": lambda r: on_create(r)},
            records(("goals", "create")),
        )
    assert calls == []
    harness.shutdown()


def test_the_async_client_awaits_async_handlers_and_calls_plain_ones_in_order() -> None:
    harness = ClientHarness("async")
    db = harness.make()
    calls: list[str] = []

    async def later(record: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        calls.append(f"async {record['id']}")

    handlers = {"goals": {"create": later, "update": lambda r: calls.append(f"sync {r['id']}")}}
    payload = records(("goals", "create"), ("goals", "update"), ("goals", "create"))
    harness.call(db.webhooks, "process_payload", handlers, payload)
    assert calls == ["async 0", "sync 1", "async 2"]
    harness.shutdown()


# -- instantdb.webhooks without a client --------------------------------------------------------


def test_standalone_functions_take_api_uri_and_an_http_client() -> None:
    api = MockAPI()
    serve_jwks(api)
    with httpx.Client(transport=api.transport()) as http:
        body = webhooks.validate(
            signature_header=HEADER, body=BODY, received_at=T, api_uri=ORIGIN, http_client=http
        )
        assert webhooks.fetch_payloads(body, api_uri=ORIGIN, http_client=http) == PAYLOAD
        assert not http.is_closed  # lent, not closed
    seen: list[str] = []
    webhooks.process_payload({"goals": {"create": lambda r: seen.append(r["id"])}}, PAYLOAD)
    assert seen == ["33333333-3333-4333-8333-333333333333"]
    assert [r.url.path for r in api.requests] == [
        "/.well-known/webhooks/jwks.json",
        "/webhooks/payload/11111111-1111-4111-8111-111111111111/"
        "22222222-2222-4222-8222-222222222222/0/0/1A",
    ]


def test_standalone_async_functions() -> None:
    api = MockAPI()
    serve_jwks(api)
    seen: list[str] = []

    async def on_create(record: dict[str, Any]) -> None:
        seen.append(record["id"])

    async def run() -> None:
        async with httpx.AsyncClient(transport=api.transport()) as http:
            body = await webhooks.validate_async(
                signature_header=HEADER, body=BODY, received_at=T, api_uri=ORIGIN, http_client=http
            )
            payload = await webhooks.fetch_payloads_async(body, api_uri=ORIGIN, http_client=http)
        await webhooks.process_payload_async({"goals": {"create": on_create}}, payload)

    asyncio.run(run())
    assert seen == ["33333333-3333-4333-8333-333333333333"]


def test_standalone_fetch_refuses_a_foreign_host_by_default_api_uri() -> None:
    # Without api_uri (and no INSTANT_API_URI), only Instant's production API is trusted.
    with pytest.raises(InstantValueError, match=r"https://api\.instantdb\.com"):
        webhooks.fetch_payloads({"payloadUrl": PAYLOAD_URL, "token": JWT})


def test_the_key_cache_expires_keys_and_spaces_out_refetches() -> None:
    now = [1000.0]
    cache = protocol.JwksCache(ttl=60, refetch_after=10, clock=lambda: now[0])
    base = "http://localhost:8888/"
    assert cache.may_fetch(base)
    cache.store(base, {"1": b"k" * 32})
    assert cache.key("http://LOCALHOST:8888", "1") == b"k" * 32
    assert cache.key("http://localhost:8888/other", "1") is None  # another base URL
    assert cache.key(base, "2") is None
    assert not cache.may_fetch(base)
    now[0] += 10
    assert cache.may_fetch(base)
    now[0] += 50
    assert cache.key(base, "1") is None  # past its ttl: fetched again
