"""Instant Sequence Numbers: the total order of an app's committed transactions.

The real server's ISN is (replication slot, Postgres LSN), written
``"<slot hex>/<LSN high 32 bits hex>/<LSN low 32 bits hex>"``. Here the slot is always
0 and the LSN is the transaction's ``tx-id``, so transaction 26 is ``0/0/1A`` and
``db.transact(...)["tx-id"]`` names the webhook event it produced. ISNs compare as
numbers, never as strings (``0/0/A`` comes after ``0/0/9``).
"""

from __future__ import annotations

import re

__all__ = ["MAX_ISN", "isn_bytes", "isn_text", "parse_isn"]

MAX_ISN = 2**63 - 1
_TEXT = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def isn_text(isn: int) -> str:
    """``0/0/1A`` for 26: uppercase hex, no padding."""
    return f"0/{isn >> 32:X}/{isn & 0xFFFFFFFF:X}"


def parse_isn(text: str) -> int | None:
    """The ISN ``text`` stands for, or None if it is not one this server issues."""
    match = _TEXT.fullmatch(text)
    if match is None:
        return None
    slot, high, low = (int(part, 16) for part in match.groups())
    if slot != 0:
        return None
    return (high << 32) | low


def isn_bytes(isn: int) -> bytes:
    """The 12-byte binary form: big-endian int32 slot (0) and int64 LSN."""
    return (0).to_bytes(4, "big") + isn.to_bytes(8, "big")
