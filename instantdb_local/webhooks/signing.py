"""The server's Ed25519 signing key: delivery signatures, payload tokens (JWTs), JWKS.

One key per data directory, made on first use and kept in the webhooks database (a
0600 file). Its ``kid`` is a fresh decimal number that is never one of Instant's
published kids (``1034696293`` production, ``503090235`` dev): SDKs carry those keys
built in and would check our signatures against them instead of fetching our JWKS.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["RESERVED_KIDS", "SigningKey", "b64url", "new_kid"]

RESERVED_KIDS = frozenset({"1034696293", "503090235"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def new_kid() -> str:
    while True:
        kid = str(secrets.randbelow(2**31 - 10**8) + 10**8)
        if kid not in RESERVED_KIDS:
            return kid


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key and its ``kid``. ``repr`` never shows the private seed."""

    kid: str
    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(new_kid(), secrets.token_bytes(32))

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_bytes(self) -> bytes:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": b64url(self.public_bytes),
        }

    def signature_header(self, timestamp: int, body: bytes) -> str:
        """``Instant-Signature``: Ed25519 over ``<t>.<body>``, hex, with our kid."""
        signature = self._private.sign(f"{timestamp}.".encode("ascii") + body)
        return f"t={timestamp},kid={self.kid},v1={signature.hex()}"

    def jwt(self, claims: dict[str, Any]) -> str:
        """A compact JWS (EdDSA) of ``claims``, in the key order given."""
        header = {"kid": self.kid, "typ": "JWT", "alg": "EdDSA"}
        signing_input = f"{b64url(_compact(header))}.{b64url(_compact(claims))}"
        signature = self._private.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{b64url(signature)}"

    def verified_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a JWT this key signed, or None (unsigned, forged, malformed).

        Expiry and claim values are the caller's to check.
        """
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            signature = _unb64url(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        if header.get("alg") != "EdDSA" or not hmac.compare_digest(
            str(header.get("kid", "")).encode(), self.kid.encode()
        ):
            return None
        try:
            public = Ed25519PublicKey.from_public_bytes(self.public_bytes)
            public.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
        except (InvalidSignature, ValueError):
            return None
        return claims
