"""``db.auth`` for both clients. Each method builds a `Call` and runs it.

Auth calls always run as admin (never with an ``as_user`` identity) and need an admin
token, except `verify_token`, which sends no credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._protocol import auth
from ._settings import Settings
from ._transport import AsyncTransport, SyncTransport

__all__ = ["AsyncAuth", "Auth"]

User = dict[str, Any]


class Auth:
    """Users, magic codes and refresh tokens (blocking)."""

    def __init__(self, settings: Settings, transport: SyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    def send_magic_code(self, email: str) -> str:
        """Email a sign-in code to ``email``; returns the code too."""
        return self._transport.run(auth.send_magic_code_call(self._settings, email))

    def generate_magic_code(self, email: str) -> str:
        """A sign-in code for ``email``, for you to deliver (nothing is emailed)."""
        return self._transport.run(auth.generate_magic_code_call(self._settings, email))

    def check_magic_code(
        self, *, email: str, code: str, extra_fields: Mapping[str, Any] | None = None
    ) -> tuple[User, bool]:
        """Sign in with a code: ``(user, created)``; ``user["refresh_token"]`` is theirs.

        ``extra_fields`` sets ``$users`` attributes when the user is created.
        """
        call = auth.check_magic_code_call(self._settings, email, code, extra_fields)
        return self._transport.run(call)

    def create_token(
        self,
        *,
        email: str | None = None,
        id: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
    ) -> str:
        """A refresh token for the user with this email or id (exactly one); creates the
        user if the email is new (``extra_fields`` then sets ``$users`` attributes)."""
        call = auth.create_token_call(self._settings, email=email, id=id, extra_fields=extra_fields)
        return self._transport.run(call)

    def verify_token(self, token: str) -> User:
        """The user a refresh token belongs to (an error if it is not valid)."""
        return self._transport.run(auth.verify_token_call(self._settings, token))

    def get_user(
        self, *, email: str | None = None, id: str | None = None, refresh_token: str | None = None
    ) -> User | None:
        """The user with this email, id or refresh token (exactly one), or None."""
        call = auth.get_user_call(self._settings, email=email, id=id, refresh_token=refresh_token)
        return self._transport.run(call)

    def delete_user(
        self, *, email: str | None = None, id: str | None = None, refresh_token: str | None = None
    ) -> User | None:
        """Delete the user (exactly one selector); returns them, or None if none matched."""
        call = auth.delete_user_call(
            self._settings, email=email, id=id, refresh_token=refresh_token
        )
        return self._transport.run(call)

    def sign_out(
        self, *, email: str | None = None, id: str | None = None, refresh_token: str | None = None
    ) -> None:
        """Revoke the user's refresh tokens (by email or id), or just the one given."""
        call = auth.sign_out_call(self._settings, email=email, id=id, refresh_token=refresh_token)
        return self._transport.run(call)


class AsyncAuth:
    """Users, magic codes and refresh tokens (asyncio): the methods of `Auth`, awaited."""

    def __init__(self, settings: Settings, transport: AsyncTransport) -> None:
        self._settings = settings
        self._transport = transport

    async def send_magic_code(self, email: str) -> str:
        """Email a sign-in code to ``email``; returns the code too."""
        return await self._transport.run(auth.send_magic_code_call(self._settings, email))

    async def generate_magic_code(self, email: str) -> str:
        """A sign-in code for ``email``, for you to deliver (nothing is emailed)."""
        return await self._transport.run(auth.generate_magic_code_call(self._settings, email))

    async def check_magic_code(
        self, *, email: str, code: str, extra_fields: Mapping[str, Any] | None = None
    ) -> tuple[User, bool]:
        """Sign in with a code: ``(user, created)``; ``user["refresh_token"]`` is theirs.

        ``extra_fields`` sets ``$users`` attributes when the user is created.
        """
        call = auth.check_magic_code_call(self._settings, email, code, extra_fields)
        return await self._transport.run(call)

    async def create_token(
        self,
        *,
        email: str | None = None,
        id: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
    ) -> str:
        """A refresh token for the user with this email or id (exactly one); creates the
        user if the email is new (``extra_fields`` then sets ``$users`` attributes)."""
        call = auth.create_token_call(self._settings, email=email, id=id, extra_fields=extra_fields)
        return await self._transport.run(call)

    async def verify_token(self, token: str) -> User:
        """The user a refresh token belongs to (an error if it is not valid)."""
        return await self._transport.run(auth.verify_token_call(self._settings, token))

    async def get_user(
        self, *, email: str | None = None, id: str | None = None, refresh_token: str | None = None
    ) -> User | None:
        """The user with this email, id or refresh token (exactly one), or None."""
        call = auth.get_user_call(self._settings, email=email, id=id, refresh_token=refresh_token)
        return await self._transport.run(call)

    async def delete_user(
        self, *, email: str | None = None, id: str | None = None, refresh_token: str | None = None
    ) -> User | None:
        """Delete the user (exactly one selector); returns them, or None if none matched."""
        call = auth.delete_user_call(
            self._settings, email=email, id=id, refresh_token=refresh_token
        )
        return await self._transport.run(call)

    async def sign_out(
        self, *, email: str | None = None, id: str | None = None, refresh_token: str | None = None
    ) -> None:
        """Revoke the user's refresh tokens (by email or id), or just the one given."""
        call = auth.sign_out_call(self._settings, email=email, id=id, refresh_token=refresh_token)
        return await self._transport.run(call)
