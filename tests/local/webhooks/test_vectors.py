"""The local server's webhook primitives against the vectors of live-protocol §6.3."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from instantdb_local.webhooks.cursor import decode_cursor, encode_cursor
from instantdb_local.webhooks.isn import isn_bytes, isn_text, parse_isn
from instantdb_local.webhooks.records import payload_key, payload_records, record_key
from instantdb_local.webhooks.signing import RESERVED_KIDS, SigningKey, new_kid
from tests.unit.test_webhooks_receive import BODY, HEADER, JWT, KID, SEED, T, X

APP = "11111111-1111-4111-8111-111111111111"
HOOK = "22222222-2222-4222-8222-222222222222"
ENTITY = "33333333-3333-4333-8333-333333333333"
ISN = 0x1A
CLAIMS = {
    "iss": "http://localhost:8888",
    "sub": APP,
    "app-id": APP,
    "exp": 1760003600,
    "isn": "0/0/1A",
    "webhook-id": HOOK,
}


def test_signature_jwt_and_jwks_match_the_vector() -> None:
    key = SigningKey(KID, SEED)
    assert key.jwk() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": KID,
        "x": X,
    }
    assert key.signature_header(T, BODY) == HEADER
    assert key.jwt(CLAIMS) == JWT
    assert key.verified_claims(JWT) == CLAIMS
    assert "seed" not in repr(key)
    assert SEED.hex() not in repr(key)


@pytest.mark.parametrize(
    "token",
    [
        JWT[:-2] + ("AA" if not JWT.endswith("AA") else "BB"),
        JWT.replace(".eyJpc3Mi", ".eyJpc3NJ", 1),
        "eyJ.not.a.jwt",
        "a.b",
        SigningKey("1", bytes(32)).jwt(CLAIMS),  # another key
        SigningKey(KID, bytes([1]) * 32).jwt(CLAIMS),  # another key, same kid
    ],
)
def test_tokens_not_signed_by_the_key_are_refused(token: str) -> None:
    assert SigningKey(KID, SEED).verified_claims(token) is None


def test_new_kids_are_never_instants_own() -> None:
    assert {"1034696293", "503090235"} == RESERVED_KIDS
    kids = {new_kid() for _ in range(200)}
    assert not kids & RESERVED_KIDS
    assert all(k.isdigit() for k in kids)


def test_idempotency_keys_match_the_vector() -> None:
    assert payload_key(HOOK, ISN) == "798ef562-0165-a0a3-74fc-e46c566f4479"
    assert record_key("goals", "create", ENTITY, ISN) == "e75514ae-ad63-c1af-37e8-dd0069c8502b"
    assert record_key("goals", "update", ENTITY, ISN) == "e650b429-edab-e82a-1e9f-303cf64dff7e"


def test_payload_records_follow_the_webhooks_current_namespaces_and_actions() -> None:
    changes = [
        {
            "namespace": "goals",
            "id": ENTITY,
            "action": "create",
            "before": None,
            "after": {"id": ENTITY, "title": "first"},
        },
        {
            "namespace": "todos",
            "id": ENTITY,
            "action": "delete",
            "before": {"id": ENTITY},
            "after": None,
        },
    ]
    assert payload_records(changes, ["goals"], ["create", "update"], ISN) == [
        {
            "namespace": "goals",
            "id": ENTITY,
            "action": "create",
            "before": None,
            "after": {"id": ENTITY, "title": "first"},
            "idempotencyKey": "e75514ae-ad63-c1af-37e8-dd0069c8502b",
        }
    ]
    assert payload_records(changes, ["goals"], ["delete"], ISN) == []


def test_isns_are_tx_ids_written_in_hex_and_compare_as_numbers() -> None:
    assert isn_text(ISN) == "0/0/1A"
    assert isn_bytes(ISN) == bytes.fromhex("00000000000000000000001a")
    assert isn_text(2**32 + 10) == "0/1/A"
    assert parse_isn("0/1/a") == 2**32 + 10
    assert parse_isn("0/0/A") > parse_isn("0/0/9")  # type: ignore[operator]
    for bad in ("1/0/0", "0/0", "0/0/G", "0/0/1/2", "", "0/0/123456789"):
        assert parse_isn(bad) is None


def test_cursor_matches_the_vector_and_round_trips() -> None:
    created = datetime(2025, 10, 9, 8, 53, 20, 123456, tzinfo=timezone.utc)
    ns = int(created.timestamp()) * 1_000_000_000 + 123456 * 1000
    assert encode_cursor(ns, ISN) == "AAAAAGjneAAHW8oAAAAAAAAAAAAAAAAa"
    assert decode_cursor("AAAAAGjneAAHW8oAAAAAAAAAAAAAAAAa") == (ns, ISN)
    for garbage in ("", "!!!", "AAAA", "Y3Vyc29yLTI"):
        assert decode_cursor(garbage) is None
