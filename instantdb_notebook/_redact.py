"""What the notebook layer may repeat of what a user typed.

A token pasted where the magic expects something else (an app id's neighbour, ``-o``,
``--use``) must not come back in the message that refuses it: the output would be saved
with the notebook. So every message that quotes user text takes it through `shown` (or
`redact` for longer text such as an exception's message), and every message leaving the
magic goes through `scrub`, which removes the secrets the notebook layer knows even from
text that is not the user's (a server's answer, a listing).

Two kinds of secret are looked for:

- known secrets: every admin or refresh token a `ClientSpec` was built with (`remember`),
  and the values of environment variables whose names say they hold one (``*TOKEN*``,
  ``*SECRET*``, ``*PASSWORD*``, ``*API_KEY*``), with their pieces of 8 or more
  characters (Python's messages quote a piece: ``name 'ab12cd34' is not defined``);
- token-shaped text in what the user typed: a UUID (Instant's admin and refresh tokens
  are UUIDs), a run of 32 or more hex digits, or a run of 24 or more letters, digits,
  ``_`` and ``-`` that switches between letters and digits at least 4 times (random
  tokens do, names such as ``goals_2024_archive`` do not).

App ids are UUIDs too, so shapes are only looked for in user text, never in the
magic's own messages, which name app ids on purpose.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

__all__ = [
    "PLACEHOLDER",
    "known_secrets",
    "looks_like_token",
    "redact",
    "remember",
    "scrub",
    "shown",
    "token_refused",
]

PLACEHOLDER = "<hidden>"

_UUID = re.compile(
    r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"
)
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{32,}")
_RUN = re.compile(r"[A-Za-z0-9_-]{24,}")
_LETTER_DIGIT_SWITCH = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_MIN_SWITCHES = 4
# A piece of a secret this long is still worth hiding (a UUID's first group is 8).
_MIN_PIECE = 8
_PIECE_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
_SECRET_VARIABLE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY", re.IGNORECASE)

_remembered: set[str] = set()
_remembered_lock = threading.Lock()


def remember(secret: str | None) -> None:
    """Treat ``secret`` as known from now on: `scrub` and `redact` hide it everywhere."""
    if secret and len(secret.strip()) >= _MIN_PIECE:
        with _remembered_lock:
            _remembered.add(secret.strip())


def known_secrets() -> set[str]:
    """The remembered secrets and those the environment holds."""
    with _remembered_lock:
        secrets = set(_remembered)
    for name, value in os.environ.items():
        if _SECRET_VARIABLE.search(name) and len(value.strip()) >= _MIN_PIECE:
            secrets.add(value.strip())
    return secrets


def _is_token_run(run: str) -> bool:
    return len(_LETTER_DIGIT_SWITCH.findall(run)) >= _MIN_SWITCHES


def _token_shaped(text: str) -> list[str]:
    """The token-shaped parts of ``text``."""
    found = [match.group() for match in _UUID.finditer(text)]
    found += [match.group() for match in _HEX_RUN.finditer(text)]
    found += [match.group() for match in _RUN.finditer(text) if _is_token_run(match.group())]
    return found


def looks_like_token(text: str) -> bool:
    """Whether ``text`` as a whole is shaped like a token (see the module docstring)."""
    text = text.strip()
    return bool(
        _UUID.fullmatch(text)
        or _HEX_RUN.fullmatch(text)
        or (_RUN.fullmatch(text) and _is_token_run(text))
    )


def _with_pieces(secrets: Iterable[str]) -> set[str]:
    needles: set[str] = set()
    for secret in secrets:
        needles.add(secret)
        needles.update(
            piece for piece in _PIECE_SEPARATORS.split(secret) if len(piece) >= _MIN_PIECE
        )
    return needles


def _hide(text: str, needles: Iterable[str]) -> str:
    # Longest first, so a whole token goes before its pieces; any case, as a secret may
    # come back upper-cased.
    for needle in sorted(needles, key=len, reverse=True):
        text = re.sub(re.escape(needle), PLACEHOLDER, text, flags=re.IGNORECASE)
    return text


def scrub(text: str) -> str:
    """``text`` without the secrets the notebook layer knows (and their pieces)."""
    return _hide(text, _with_pieces(known_secrets()))


def redact(text: str, *, typed: str = "") -> str:
    """User text (or text made from it, like its exception's message) fit to show.

    Hides known secrets, anything token-shaped in ``text``, and pieces of the
    token-shaped parts of ``typed``, the text the user typed that ``text`` came from.
    """
    shaped = _token_shaped(text) + _token_shaped(typed)
    return _hide(text, _with_pieces(known_secrets()) | _with_pieces(shaped))


def shown(text: str, limit: int = 60) -> str:
    """User text to quote in a message: redacted, then shortened, then quoted."""
    safe = redact(text.strip())
    if len(safe) > limit:
        safe = safe[: limit - 1] + "…"
    return repr(safe)


def token_refused(what: str) -> str:
    """The message refusing a token typed where ``what`` belongs."""
    return (
        f"{what} looks like a token (a UUID or a long random string), so it is not used or "
        "shown. Tokens are never typed into a cell, where they would be saved with the "
        "notebook: put an admin token in an environment variable and connect with "
        "%instant --connect APP_ID --admin-token-env VAR (or --prompt-token, or --keyring "
        "SERVICE), and give a user's refresh token with --token-env VAR."
    )
