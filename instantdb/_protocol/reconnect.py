"""When a live connection is opened again, and when it is given up. Pure decisions.

Every live feature (subscriptions, stream sessions) holds one long-lived SSE connection.
A failure is either *terminal* (opening again cannot help: the credentials, the app id
or the request are wrong) or *transient* (the network, a restarting server, a 5xx, a
429). Transient failures are retried for as long as the feature is in use; terminal ones
end it with the error.

The schedule (documented in docs/api.md):

* the first attempt after a healthy connection is immediate (or after the server's
  ``retry:`` hint, 0.5 s on Instant);
* then the wait doubles from 0.5 s up to 15 s, each wait drawn at random between half
  and all of that bound, so that many clients do not reconnect in step;
* a 429 waits at least what the server asked for;
* a connection that stayed up for `STABLE_AFTER` seconds resets the schedule.
"""

from __future__ import annotations

from collections.abc import Callable

from instantdb._errors import InstantAPIError, InstantError, InstantRateLimitError

__all__ = ["STABLE_AFTER", "ReconnectSchedule", "TransientError", "is_terminal"]

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 15.0
STABLE_AFTER = 10.0
"""Seconds a connection must stay open before its failure counts as a fresh outage."""

# Client errors that a new attempt may cure: a request timeout and a rate limit.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})


def is_terminal(error: BaseException) -> bool:
    """Whether opening the connection again cannot help.

    Terminal: a 4xx answer (bad credentials, unknown app, invalid query, permission
    denied), a 2xx that is not an event stream or events that are not Instant messages
    (not an Instant server), and any other error that is not about the network (a
    closed client, a missing token). Transient: network failures, 5xx, 408/425/429, a
    missing ``sse-init``.
    """
    if isinstance(error, InstantAPIError):
        return not (error.status >= 500 or error.status in _RETRYABLE_CLIENT_STATUSES)
    return not isinstance(error, (OSError, TransientError))


class TransientError(InstantError):
    """A failure the protocol itself reports as worth retrying (e.g. no ``sse-init``)."""


class ReconnectSchedule:
    """Backoff with jitter for one live connection, reset by a stable connection."""

    def __init__(self, *, random: Callable[[], float]) -> None:
        self._random = random
        self.failures = 0
        """Failed attempts since the last stable connection."""
        self._opened_at: float | None = None
        self.retry_hint: float | None = None
        """The server's ``retry:`` hint in seconds, a floor for every wait."""

    def opened(self, now: float) -> None:
        """The connection is up (its ``sse-init`` arrived)."""
        self._opened_at = now

    def delay_after(self, error: BaseException, now: float) -> float:
        """Seconds to wait before the next attempt after a transient ``error``."""
        if self._opened_at is not None and now - self._opened_at >= STABLE_AFTER:
            self.failures = 0
        self._opened_at = None
        self.failures += 1
        if self.failures == 1:
            delay = 0.0
        else:
            bound = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (self.failures - 2))
            delay = bound * (0.5 + self._random() / 2)
        if self.retry_hint is not None:
            delay = max(delay, self.retry_hint)
        if isinstance(error, InstantRateLimitError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay
