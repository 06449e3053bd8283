"""Token buckets keyed by anything hashable, for the magic-code limits.

The real server limits magic-code sends and verify attempts to 20 an hour per (app,
email), with buckets that refill over the hour (server-semantics section 2). A bucket
starts full, each attempt takes one token, and tokens come back continuously at
``capacity / period`` per second, so a burst of ``capacity`` is allowed and then one
attempt every ``period / capacity`` seconds.

State lives in memory: restarting the server refills every bucket, which is fine for a
development server.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Rate", "TokenBuckets"]

# Full buckets carry no information; they are dropped once this many keys are held so
# the table stays as small as the set of keys that were recently limited.
_SWEEP_AT = 10_000


@dataclass(frozen=True)
class Rate:
    """``capacity`` attempts per ``period_seconds``, refilled continuously."""

    capacity: int
    period_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError(f"capacity must be an int, got {self.capacity!r}")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        if not self.period_seconds > 0:
            raise ValueError(f"period_seconds must be positive, got {self.period_seconds}")

    @property
    def tokens_per_second(self) -> float:
        return self.capacity / self.period_seconds


class TokenBuckets:
    """One token bucket per key. Thread-safe."""

    def __init__(self, rate: Rate, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, when they were counted)
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def __repr__(self) -> str:
        return f"TokenBuckets({self.rate!r}, keys={len(self._buckets)})"

    def take(self, key: Hashable) -> float | None:
        """Take one token for ``key``: None if it was there, else the seconds until one is."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > _SWEEP_AT:
                    self._drop_full(now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate.tokens_per_second

    def remaining(self, key: Hashable) -> int:
        """Whole tokens ``key`` has now (for tests and hints)."""
        with self._lock:
            return math.floor(self._tokens(key, self._clock()))

    def _tokens(self, key: Hashable, now: float) -> float:
        held = self._buckets.get(key)
        if held is None:
            return float(self.rate.capacity)
        tokens, counted_at = held
        refilled = tokens + max(0.0, now - counted_at) * self.rate.tokens_per_second
        return min(float(self.rate.capacity), refilled)

    def _drop_full(self, now: float) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self.rate.capacity]
        for key in full:
            del self._buckets[key]
