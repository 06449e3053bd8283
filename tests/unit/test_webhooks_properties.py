"""Property: validate accepts exactly what was signed, and garbage headers only ever raise
the documented InstantWebhookError (InstantWebhookSignatureError for bad headers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from instantdb import webhooks
from instantdb._protocol import webhooks as protocol
from instantdb._protocol.webhooks import InstantWebhookError, InstantWebhookSignatureError
from tests.unit.test_webhooks_receive import KID, SEED, public_x, sign

API = "https://instant.example.test"
NOW = 1_800_000_000


@pytest.fixture(autouse=True, scope="module")
def _known_key() -> Iterator[None]:
    # The key is cached up front, so these checks never need the network.
    protocol.JWKS_CACHE.clear()
    protocol.JWKS_CACHE.store(API, {KID: protocol._b64url(public_x(SEED))})
    yield
    protocol.JWKS_CACHE.clear()


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"validate made a request: {request.url}")


_OFFLINE = httpx.Client(transport=httpx.MockTransport(_no_network))


def check(header: Any, body: Any, received_at: float = NOW) -> Any:
    """The public `instantdb.webhooks.validate`, with the key cached and no network."""
    return webhooks.validate(
        signature_header=header,
        body=body,
        received_at=received_at,
        api_uri=API,
        http_client=_OFFLINE,
    )


def body_of(url: str, token: str) -> bytes:
    import json

    return json.dumps({"payloadUrl": url, "token": token}).encode()


urls = st.text(min_size=1, max_size=40)
tokens = st.text(min_size=1, max_size=40)
times = st.integers(min_value=NOW - 300, max_value=NOW + 300)


@given(urls, tokens, times)
def test_what_was_signed_validates(url: str, token: str, t: int) -> None:
    body = body_of(url, token)
    assert check(sign(body, t), body) == {"payloadUrl": url, "token": token}


@given(urls, tokens, times, st.data())
def test_a_body_differing_in_any_byte_is_refused(url: str, token: str, t: int, data: Any) -> None:
    body = body_of(url, token)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(InstantWebhookSignatureError):
        check(sign(body, t), changed)


@given(urls, tokens, times, st.binary(min_size=1, max_size=4))
def test_a_longer_or_shorter_body_is_refused(url: str, token: str, t: int, extra: bytes) -> None:
    body = body_of(url, token)
    header = sign(body, t)
    with pytest.raises(InstantWebhookSignatureError):
        check(header, body + extra)
    with pytest.raises(InstantWebhookSignatureError):
        check(header, body[: -len(extra)])


@given(urls, tokens, times, times)
def test_another_timestamp_is_refused(url: str, token: str, t: int, other: int) -> None:
    assume(t != other)
    body = body_of(url, token)
    header = sign(body, t).replace(f"t={t},", f"t={other},")
    with pytest.raises(InstantWebhookSignatureError):
        check(header, body)


@given(urls, tokens, times, st.data())
def test_a_signature_differing_in_any_byte_is_refused(
    url: str, token: str, t: int, data: Any
) -> None:
    body = body_of(url, token)
    header = sign(body, t)
    signature = bytearray(bytes.fromhex(header.rpartition("v1=")[2]))
    index = data.draw(st.integers(min_value=0, max_value=63))
    signature[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    forged = header.rpartition("v1=")[0] + "v1=" + signature.hex()
    with pytest.raises(InstantWebhookSignatureError):
        check(forged, body)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)), st.binary(max_size=100))
def test_garbage_headers_raise_only_documented_errors(header: Any, body: bytes) -> None:
    with pytest.raises(InstantWebhookError):
        check(header, body)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["t", "kid", "v1", "x", "", " t", "v1 "]),
            st.text(alphabet="0123456789abcdef=, ", max_size=140),
        ),
        max_size=5,
    ),
    st.binary(max_size=50),
)
def test_header_shaped_garbage_raises_only_documented_errors(
    pieces: list[tuple[str, str]], body: bytes
) -> None:
    header = ",".join(f"{key}={value}" for key, value in pieces)
    with pytest.raises(InstantWebhookError):
        check(header, body)
