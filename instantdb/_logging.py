"""The `Logger` protocol and the realtime log of the live features (§15).

Subscriptions and streams log what they send and receive when a client is built with
``verbose=True``. When it is off, nothing is formatted at all: the templates are only
filled in once a message is really going to be written. Tokens never reach a log line:
the client's own secrets and every session token seen on the wire are masked first.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

__all__ = ["LiveLog", "Logger"]

REDACTED = "<redacted>"


@runtime_checkable
class Logger(Protocol):
    """Where realtime logs go. A stdlib `logging.Logger` satisfies it."""

    def debug(self, msg: str, /) -> object: ...

    def info(self, msg: str, /) -> object: ...

    def error(self, msg: str, /) -> object: ...


class LiveLog:
    """A `Logger` wrapper that formats lazily and masks secrets."""

    __slots__ = ("_logger", "_secrets", "enabled")

    def __init__(self, *, verbose: bool, logger: Logger | None, secrets: tuple[str, ...] = ()):
        self.enabled = verbose
        self._logger: Logger = logger if logger is not None else logging.getLogger("instantdb")
        self._secrets = {secret for secret in secrets if secret}

    def with_secrets(self, secrets: tuple[str, ...]) -> LiveLog:
        """The same destination, also masking ``secrets`` (an ``as_user`` token)."""
        log = LiveLog(verbose=self.enabled, logger=self._logger, secrets=secrets)
        log._secrets |= self._secrets
        return log

    def hide(self, secret: str) -> None:
        """Mask ``secret`` (a session token learnt from the wire) in every later line."""
        if secret:
            self._secrets.add(secret)

    def debug(self, template: str, *args: object) -> None:
        if self.enabled:
            self._logger.debug(self._render(template, args))

    def info(self, template: str, *args: object) -> None:
        if self.enabled:
            self._logger.info(self._render(template, args))

    def error(self, template: str, *args: object) -> None:
        if self.enabled:
            self._logger.error(self._render(template, args))

    def _render(self, template: str, args: tuple[object, ...]) -> str:
        text = template % args if args else template
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"LiveLog(verbose={self.enabled}, logger={self._logger!r})"
