"""Events-page cursors: base64url (unpadded) of int64 epoch seconds ‖ int32 nanoseconds
of the event's ``created_at`` ‖ its 12-byte ISN. Clients treat them as opaque."""

from __future__ import annotations

import base64
import binascii

from .isn import isn_bytes

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(created_ns: int, isn: int) -> str:
    seconds, nanos = divmod(created_ns, 1_000_000_000)
    raw = seconds.to_bytes(8, "big", signed=True) + nanos.to_bytes(4, "big") + isn_bytes(isn)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> tuple[int, int] | None:
    """``(created_ns, isn)``, or None for anything undecodable (the real server then
    returns the first page)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 24 or raw[12:16] != b"\0\0\0\0":
        return None
    seconds = int.from_bytes(raw[:8], "big", signed=True)
    nanos = int.from_bytes(raw[8:12], "big")
    if nanos >= 1_000_000_000:
        return None
    return seconds * 1_000_000_000 + nanos, int.from_bytes(raw[16:], "big")
