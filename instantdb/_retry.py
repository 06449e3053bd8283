"""The retry policy, as pure decisions: should this failure be retried, and after how long?

No sleeping and no clock reading of its own: the transports pass in the clock and the
random source, and do the waiting, so every rule here is tested without waiting.

What is retried (docs/api.md says the same):

* a connection that could not be opened, or no pooled connection free in time (the
  request never left): every call;
* 429 ``rate-limited`` (the server refused without running it): every call, after the
  wait the server asked for, or the backoff when it named none;
* 502/503/504 and connections that broke or timed out after sending: only calls that are
  safe to repeat (reads), never a transaction that may already have been applied.

A 429 of type ``timeout`` (the query itself ran too long) and every other error are not
retried.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ._errors import (
    InstantError,
    InstantNetworkError,
    InstantRateLimitError,
    InstantServerError,
    InstantTypeError,
    InstantValueError,
)

__all__ = ["RetryPolicy", "RetrySafety", "RetryState"]

RETRYABLE_STATUSES = frozenset({502, 503, 504})


class RetrySafety(Enum):
    """Whether a call may be sent again after it may have reached the server."""

    IDEMPOTENT = "idempotent"
    """Repeating it changes nothing (reads): retry whenever the failure is transient."""

    UNSENT_ONLY = "unsent-only"
    """It may have taken effect (writes): retry only when the server provably did not run it."""

    NEVER = "never"
    """It cannot be sent twice (an upload from a stream that cannot be read again)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    ``max_attempts`` counts the first try (1 = never retry). Waits grow exponentially
    from ``initial_backoff`` up to ``max_backoff`` seconds, each picked at random
    between 0 and that bound ("full jitter", so many clients do not retry in step). A
    server-requested wait (``retry-after``) is used as is. No retry starts once
    ``deadline`` seconds have passed since the first try began (None: no deadline).
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    deadline: float | None = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InstantTypeError(
                f"RetryPolicy.max_attempts must be an int, got {self.max_attempts!r}"
            )
        if self.max_attempts < 1:
            raise InstantValueError(
                f"RetryPolicy.max_attempts counts the first try, so it must be >= 1 "
                f"(1 = no retries), got {self.max_attempts}"
            )
        for name in ("initial_backoff", "max_backoff"):
            _check_seconds(name, getattr(self, name))
        if self.deadline is not None:
            _check_seconds("deadline", self.deadline)

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    @property
    def enabled(self) -> bool:
        return self.max_attempts > 1

    def start(
        self,
        safety: RetrySafety,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> RetryState:
        """The bookkeeping for one call, starting now."""
        return RetryState(self, safety, clock=clock, random=random)


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InstantTypeError(f"RetryPolicy.{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise InstantValueError(f"RetryPolicy.{name} must be >= 0 seconds, got {value!r}")


class RetryState:
    """Attempts and elapsed time of one call; decides each retry."""

    def __init__(
        self,
        policy: RetryPolicy,
        safety: RetrySafety,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        self._policy = policy
        self._safety = safety
        self._clock = clock
        self._random = random
        self._started = clock()
        self.attempt = 1

    def delay_after(self, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise ``error``."""
        if not self._is_retryable(error) or self.attempt >= self._policy.max_attempts:
            return None
        delay = self._server_requested_wait(error)
        if delay is None:
            bound = self._policy.initial_backoff * 2 ** (self.attempt - 1)
            delay = self._random() * min(self._policy.max_backoff, bound)
        deadline = self._policy.deadline
        if deadline is not None and self._clock() - self._started + delay > deadline:
            return None
        self.attempt += 1
        return delay

    def _is_retryable(self, error: BaseException) -> bool:
        if self._safety is RetrySafety.NEVER or not isinstance(error, InstantError):
            return False
        if isinstance(error, InstantRateLimitError):
            return True  # refused before it ran: safe even for writes
        if isinstance(error, InstantNetworkError) and not error.may_have_been_sent:
            return True
        if self._safety is not RetrySafety.IDEMPOTENT:
            return False
        if isinstance(error, InstantServerError):
            return error.status in RETRYABLE_STATUSES
        return isinstance(error, InstantNetworkError)

    @staticmethod
    def _server_requested_wait(error: BaseException) -> float | None:
        if isinstance(error, InstantRateLimitError) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        return None
