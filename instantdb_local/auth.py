"""Signing users in and out: magic codes, refresh tokens, guests, deleting users.

These are the flows behind the auth routes (server-semantics sections 1 and 8). Each
runs as one `AppEngine.trusted_write`, so a flow that fails leaves nothing behind; the
routes only parse parameters and apply the rate limits.

- A magic code is six digits, each drawn from 0-8 like the real server's. Only its
  sha-256 is stored, next to the email. It works once, expires after a day (an expired
  code is refused and *not* consumed: server-semantics Correction 1), and issuing a new
  one leaves older ones valid.
- A refresh token is a random UUID; only its sha-256 is stored, linked to the user with
  cascade delete. Tokens never expire on their own.
- Admin routes skip the ``$users`` signup rule, but ``extra-fields`` are still checked:
  each must be an attribute of the app's ``$users`` schema that is not a system column.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import errors, users
from .attrs import SYSTEM_COLUMNS, Catalog
from .ids import is_uuid, new_id
from .rate_limits import Rate, TokenBuckets

if TYPE_CHECKING:
    from .engine import AppEngine, TrustedWrite

__all__ = [
    "MagicCodeLimiter",
    "MagicCodePolicy",
    "create_magic_code",
    "create_token",
    "delete_user",
    "new_magic_code",
    "sign_in_guest",
    "sign_out",
    "verify_magic_code",
]

logger = logging.getLogger("instantdb_local")

User = dict[str, Any]

CODE_LIFETIME = timedelta(hours=24)
_CODE_DIGITS = 6
_MAGIC_CODE = "app-user-magic-code"


# -- magic codes ----------------------------------------------------------------------------


def new_magic_code() -> str:
    # The real server draws each digit from 0-8 (never a 9); clients may rely on the
    # format, so the same alphabet is used here.
    return "".join(str(secrets.randbelow(9)) for _ in range(_CODE_DIGITS))


def create_magic_code(engine: AppEngine, email: str) -> str:
    """Store a new code for ``email`` and return it. Older codes stay valid."""
    email = users.normalize_email(email, path=["body", "email"])
    code = new_magic_code()
    with engine.trusted_write() as write:
        write.transact(
            [
                [
                    "update",
                    "$magicCodes",
                    new_id(),
                    {"codeHash": users.hash_token(code), "email": email},
                ]
            ]
        )
    return code


def verify_magic_code(
    engine: AppEngine,
    *,
    email: str,
    code: str,
    extra_fields: Mapping[str, Any] | None = None,
    refresh_token: str | None = None,
    lifetime: timedelta = CODE_LIFETIME,
    now: float | None = None,
) -> tuple[User, bool]:
    """Spend a code: ``(user with a new refresh_token, created)``.

    A new email creates a user with ``type: "user"`` and ``extra_fields``. With the
    ``refresh_token`` of a guest, the guest becomes that user (a new email) or is linked
    to the existing one (``linkedPrimaryUser``).
    """
    email = users.normalize_email(email, path=["body", "email"])
    if not isinstance(code, str) or not code.strip():
        raise errors.param_malformed(["body", "code"], code)
    code_hash = users.hash_token(code.strip())
    extra = _extra_fields_map(extra_fields)
    token = _token_param(refresh_token, ["body", "refresh-token"])
    now_ms = (time.time() if now is None else now) * 1000
    with engine.trusted_write() as write:
        conn, catalog = write.conn, write.catalog
        user_id = users.find_user_id(conn, catalog, email=email)
        guest_id = _guest_of(write, token) if token is not None else None
        if user_id is None:
            check_extra_fields(catalog, extra)
        found = users.magic_code_ids(conn, catalog, email, code_hash)
        if not found:
            raise errors.record_not_found(_MAGIC_CODE, args=[{"email": email}])
        created_ms = users.created_ms(conn, "$magicCodes", found[0])
        if created_ms is None or created_ms + lifetime.total_seconds() * 1000 < now_ms:
            # Raised before anything is written: the code stays for the next attempt
            # to be told the same (Correction 1).
            raise errors.record_expired(_MAGIC_CODE)
        steps: list[Any] = [["delete", "$magicCodes", found[0]]]
        created = user_id is None
        if user_id is None:
            # A guest signing up keeps its id, so whatever it made stays its own.
            user_id = guest_id or new_id()
            steps.append(["update", "$users", user_id, {**extra, "email": email, "type": "user"}])
        elif guest_id is not None and guest_id != user_id:
            steps.append(["link", "$users", guest_id, {"linkedPrimaryUser": user_id}])
        return _signed_in(write, user_id, steps), created


# -- refresh tokens, guests ----------------------------------------------------------------


def create_token(
    engine: AppEngine,
    *,
    email: str | None = None,
    id: str | None = None,
    extra_fields: Mapping[str, Any] | None = None,
) -> tuple[User, bool]:
    """A new refresh token for the user with this email (preferred) or id:
    ``(user with refresh_token, created)``.

    An unknown user is created: with the given id (or a random one), the email (an
    explicit null without one), no ``type``, and ``extra_fields``. Older tokens stay
    valid.
    """
    if email is not None:
        email = users.normalize_email(email, path=["body", "email"])
    if id is not None:
        id = users.require_uuid(id, path=["body", "id"])
    if email is None and id is None:
        raise users.missing_identity()
    extra = _extra_fields_map(extra_fields)
    with engine.trusted_write() as write:
        if email is not None:
            user_id = users.find_user_id(write.conn, write.catalog, email=email)
        else:
            user_id = users.find_user_id(write.conn, write.catalog, id=id)
        created = user_id is None
        steps: list[Any] = []
        if user_id is None:
            check_extra_fields(write.catalog, extra)
            user_id = id or new_id()
            steps.append(["update", "$users", user_id, {**extra, "email": email}])
        return _signed_in(write, user_id, steps), created


def sign_in_guest(engine: AppEngine, *, extra_fields: Mapping[str, Any] | None = None) -> User:
    """A new guest user (``type: "guest"``, no email) with a refresh token."""
    extra = _extra_fields_map(extra_fields)
    with engine.trusted_write() as write:
        check_extra_fields(write.catalog, extra)
        user_id = new_id()
        return _signed_in(
            write, user_id, [["update", "$users", user_id, {**extra, "type": "guest"}]]
        )


def sign_out(
    engine: AppEngine,
    *,
    id: str | None = None,
    email: str | None = None,
    refresh_token: str | None = None,
) -> None:
    """Revoke refresh tokens: every token of a user id (existing or not) or of the
    user with an email (who must exist), or just the token given (unknown: no-op).

    The first of ``id``, ``email``, ``refresh_token`` that is given wins.
    """
    if id is not None:
        id = users.require_uuid(id, path=["body", "id"])
    elif email is not None:
        email = users.normalize_email(email, path=["body", "email"])
    elif refresh_token is not None:
        refresh_token = _token_param(refresh_token, ["body", "refresh_token"])
    else:
        raise errors.validation_failed(
            "body", {}, [{"message": "Please provide an `id`, `email`, or `refresh_token`"}]
        )
    with engine.trusted_write() as write:
        conn, catalog = write.conn, write.catalog
        tokens: list[str] = []
        if id is not None:
            tokens = users.refresh_token_ids_of(conn, catalog, id)
        elif email is not None:
            user_id = users.find_user_id(conn, catalog, email=email)
            if user_id is None:
                raise errors.record_not_found("app-user", args=[{"email": email}])
            tokens = users.refresh_token_ids_of(conn, catalog, user_id)
        else:
            assert refresh_token is not None
            token_id = users.refresh_token_id(conn, catalog, refresh_token)
            tokens = [token_id] if token_id is not None else []
        if tokens:
            write.transact([["delete", "$userRefreshTokens", t] for t in tokens])


def delete_user(
    engine: AppEngine,
    *,
    email: str | None = None,
    refresh_token: str | None = None,
    id: str | None = None,
) -> User | None:
    """Delete the user found by email, else refresh token, else id; return them as
    they were, or None. Deleting cascades: refresh tokens, linked guests, and the
    app's own ``onDelete: cascade`` links."""
    with engine.trusted_write() as write:
        user_id = users.find_user_id(
            write.conn, write.catalog, email=email, refresh_token=refresh_token, id=id
        )
        if user_id is None:
            return None
        user = write.user(user_id)
        write.transact([["delete", "$users", user_id]])
        return user


# -- extra-fields ----------------------------------------------------------------------------


def check_extra_fields(catalog: Catalog, fields: Mapping[str, Any]) -> None:
    """Refuse fields the ``$users`` schema lacks, and system fields, in one error."""
    problems: list[dict[str, Any]] = []
    for name in fields:
        if name == "id" or name in SYSTEM_COLUMNS["$users"]:
            problems.append({"message": f"Cannot set system field: {name}", "in": [name]})
            continue
        attr = catalog.forward("$users", name)
        if attr is None or attr.is_ref:
            problems.append(
                {
                    "message": f"Unknown field: {name}. It must be defined in your $users schema.",
                    "in": [name],
                }
            )
    if problems:
        raise errors.validation_failed("extra-fields", dict(fields), problems)


def _extra_fields_map(extra_fields: Any) -> dict[str, Any]:
    if extra_fields is None:
        return {}
    if not isinstance(extra_fields, Mapping):
        raise errors.param_malformed(["body", "extra-fields"], extra_fields)
    return dict(extra_fields)


# -- helpers ---------------------------------------------------------------------------------


def _token_param(value: Any, path: list[str]) -> str | None:
    if value is None:
        return None
    if not is_uuid(value):
        # A malformed token is still a secret: never echoed back.
        raise errors.param_malformed(path, "<redacted>")
    return str(value).lower()


def _guest_of(write: TrustedWrite, token: str) -> str | None:
    """The guest a refresh token signs in, None for a non-guest; unknown is an error."""
    owner = users.find_user_id(write.conn, write.catalog, refresh_token=token)
    if owner is None:
        raise errors.record_not_found("app-user", args=[{"refresh-token": "<redacted>"}])
    record = write.user(owner)
    return owner if record is not None and record.get("isGuest") else None


def _signed_in(write: TrustedWrite, user_id: str, steps: list[Any]) -> User:
    """Run ``steps`` plus minting a token for ``user_id``; the user with the token."""
    token = new_id()
    token_id = new_id()
    write.transact(
        [
            *steps,
            ["update", "$userRefreshTokens", token_id, {"hashedToken": users.hash_token(token)}],
            ["link", "$userRefreshTokens", token_id, {"$user": user_id}],
        ]
    )
    user = write.user(user_id)
    if user is None:  # pragma: no cover - written just above
        raise RuntimeError(f"user {user_id} vanished inside its own transaction")
    return {**user, "refresh_token": token}


# -- rate limits -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MagicCodePolicy:
    """How many codes an email may be sent, and verify attempts it may make, per hour,
    and how long a code lives. The defaults are the real server's."""

    sends_per_hour: int = 20
    verifies_per_hour: int = 20
    code_lifetime: timedelta = CODE_LIFETIME

    def __post_init__(self) -> None:
        if self.code_lifetime <= timedelta(0):
            raise ValueError(f"code_lifetime must be positive, got {self.code_lifetime}")
        # Rate validates the two counts.
        Rate(self.sends_per_hour)
        Rate(self.verifies_per_hour)


class MagicCodeLimiter:
    """The per-(app, email) token buckets of one server. Thread-safe."""

    def __init__(
        self,
        policy: MagicCodePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or MagicCodePolicy()
        self._sends = TokenBuckets(Rate(self.policy.sends_per_hour), clock=clock)
        self._verifies = TokenBuckets(Rate(self.policy.verifies_per_hour), clock=clock)

    def __repr__(self) -> str:
        return f"MagicCodeLimiter({self.policy!r})"

    def spend_send(self, app_id: str, email: str) -> None:
        wait = self._sends.take((app_id, email))
        if wait is not None:
            raise errors.rate_limited(
                "Too many verification codes requested for this email. Please try again later.",
                **{"retry-after": _whole_seconds(wait)},
            )

    def spend_verify(self, app_id: str, email: str) -> None:
        wait = self._verifies.take((app_id, email))
        if wait is not None:
            raise errors.rate_limited(
                "Too many attempts to verify a code for this email. Please try again later.",
                **{"retry-after": _whole_seconds(wait)},
            )


def _whole_seconds(seconds: float) -> int:
    return max(1, int(seconds + 0.999))
