"""The exceptions the SDK raises. Every one of them is an `InstantError`.

Client-side problems (bad arguments, missing credentials) are raised before any request
is sent. Network failures wrap the httpx exception (chained as ``__cause__``). Answers
the API refused become `InstantAPIError`, or one of its more specific subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "InstantAPIError",
    "InstantConnectionError",
    "InstantEncodeError",
    "InstantError",
    "InstantNetworkError",
    "InstantPermissionError",
    "InstantQueryTimeoutError",
    "InstantRateLimitError",
    "InstantServerError",
    "InstantTimeoutError",
    "InstantTypeError",
    "InstantValidationError",
    "InstantValueError",
]


class InstantError(Exception):
    """Base class of every error the SDK raises."""


class InstantValueError(InstantError, ValueError):
    """An argument has the right type but a value (or combination) the SDK cannot use."""


class InstantTypeError(InstantError, TypeError):
    """An argument has a type the SDK cannot use."""


class InstantEncodeError(InstantTypeError, InstantValueError):
    """A value in a payload cannot be sent as JSON (bytes, NaN, an unknown type, ...).

    ``path`` says where it sits in the payload, e.g. ``args["meta"]["when"]``.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_encode_error, (str(self), self.path))


def _rebuild_encode_error(message: str, path: str) -> InstantEncodeError:
    return InstantEncodeError(message, path=path)


class InstantNetworkError(InstantError, OSError):
    """The request could not be completed on the network.

    ``may_have_been_sent`` is False only when the request provably never reached the
    server (the connection was never established), which is when even a write is safe to
    send again.
    """

    def __init__(self, message: str, *, may_have_been_sent: bool = True) -> None:
        super().__init__(message)
        self.may_have_been_sent = may_have_been_sent

    def __str__(self) -> str:
        # OSError formats itself from errno/strerror when given several args; we never
        # pass those, so the message is the only thing to show.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_network_error, (type(self), str(self), self.may_have_been_sent))


def _rebuild_network_error(
    cls: type[InstantNetworkError], message: str, may_have_been_sent: bool
) -> InstantNetworkError:
    return cls(message, may_have_been_sent=may_have_been_sent)


class InstantConnectionError(InstantNetworkError, ConnectionError):
    """The connection could not be opened, or broke before the answer arrived."""


class InstantTimeoutError(InstantNetworkError, TimeoutError):
    """A network timeout (connect, read, write or waiting for a pooled connection)."""


class InstantAPIError(InstantError):
    """The API answered with an error (any status outside 2xx).

    Attributes: ``status`` (HTTP status), ``body`` (the parsed JSON body, or
    ``{"type": None, "message": <text>}`` when the body was not JSON), ``type`` (the
    server's error kind, e.g. ``"validation-failed"``), ``hint`` (the server's structured
    details) and ``trace_id``. ``str(err)`` is the server's message.
    """

    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body

    @property
    def hint(self) -> Any:
        return self.body.get("hint") if isinstance(self.body, Mapping) else None

    @property
    def type(self) -> str | None:
        kind = self.body.get("type") if isinstance(self.body, Mapping) else None
        return kind if isinstance(kind, str) else None

    @property
    def trace_id(self) -> str | None:
        if not isinstance(self.body, Mapping):
            return None
        trace = self.body.get("traceId") or self.body.get("trace-id")
        return trace if isinstance(trace, str) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, type={self.type!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_api_error, (type(self), self.message, self.status, self.body))


def _rebuild_api_error(
    cls: type[InstantAPIError], message: str, status: int, body: Any
) -> InstantAPIError:
    return cls(message, status=status, body=body)


class InstantRateLimitError(InstantAPIError):
    """429 ``rate-limited``: the server refused the request without running it.

    ``retry_after`` is the wait in seconds the server asked for (from the error hint's
    ``retry-after`` or an HTTP ``Retry-After`` header), or None when it named none.
    """

    def __init__(
        self, message: str, *, status: int, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_rate_limit_error, (self.message, self.status, self.body, self.retry_after))


def _rebuild_rate_limit_error(
    message: str, status: int, body: Any, retry_after: float | None
) -> InstantRateLimitError:
    return InstantRateLimitError(message, status=status, body=body, retry_after=retry_after)


class InstantQueryTimeoutError(InstantAPIError):
    """429 ``timeout``: the server gave up on a query or transaction that ran too long.

    Not retried: the same work would most likely time out again. Narrow the query
    (``where``, ``limit``) or split the transaction.
    """


class InstantPermissionError(InstantAPIError):
    """400 ``permission-denied`` or ``permission-evaluation-failed``."""


class InstantValidationError(InstantAPIError):
    """400 ``validation-failed``, ``param-missing`` or ``param-malformed``."""


class InstantServerError(InstantAPIError):
    """A 5xx answer: a failure on the server's side (or a proxy in front of it)."""
