"""Token buckets and the magic-code limits, on a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from instantdb_local.auth import MagicCodeLimiter, MagicCodePolicy
from instantdb_local.errors import ServerError
from instantdb_local.rate_limits import Rate, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_refills_over_the_period() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(3, period_seconds=60), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    wait = buckets.take("a")
    assert wait == pytest.approx(20.0)  # one token per 20 s
    assert buckets.take("b") is None  # keys are independent
    clock.now += 19
    assert buckets.take("a") == pytest.approx(1.0)
    clock.now += 1
    assert buckets.take("a") is None
    clock.now += 3600
    assert buckets.remaining("a") == 3  # never more than the capacity


def test_refused_attempts_do_not_use_tokens() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(1, period_seconds=10), clock=clock)
    assert buckets.take("k") is None
    for _ in range(5):
        assert buckets.take("k") is not None
    clock.now += 10
    assert buckets.take("k") is None


def test_full_buckets_are_forgotten_when_many_keys_are_held(monkeypatch) -> None:
    import instantdb_local.rate_limits as module

    monkeypatch.setattr(module, "_SWEEP_AT", 10)
    clock = Clock()
    buckets = TokenBuckets(Rate(1, period_seconds=1), clock=clock)
    for key in range(10):
        buckets.take(key)
    clock.now += 5  # all refilled
    buckets.take("fresh")
    assert "keys=1" in repr(buckets)


@pytest.mark.parametrize(
    ("capacity", "period"), [(0, 60.0), (-1, 60.0), (True, 60.0), (1.5, 60.0), (1, 0.0)]
)
def test_bad_rates_are_refused(capacity, period) -> None:
    with pytest.raises((ValueError, TypeError)):
        Rate(capacity, period_seconds=period)


def test_sends_and_verifies_are_limited_per_app_and_email() -> None:
    clock = Clock()
    limiter = MagicCodeLimiter(MagicCodePolicy(sends_per_hour=2, verifies_per_hour=1), clock=clock)
    limiter.spend_send("app", "a@b.co")
    limiter.spend_send("app", "a@b.co")
    with pytest.raises(ServerError) as refused:
        limiter.spend_send("app", "a@b.co")
    assert refused.value.status == 429
    assert refused.value.type == "rate-limited"
    assert refused.value.message == (
        "Too many verification codes requested for this email. Please try again later."
    )
    assert refused.value.hint == {"retry-after": 1800}
    limiter.spend_send("other-app", "a@b.co")
    limiter.spend_send("app", "c@d.co")
    # Verifying has its own bucket.
    limiter.spend_verify("app", "a@b.co")
    with pytest.raises(ServerError) as too_many:
        limiter.spend_verify("app", "a@b.co")
    assert too_many.value.status == 429
    clock.now += 3600
    limiter.spend_verify("app", "a@b.co")


def test_the_defaults_are_the_real_servers() -> None:
    policy = MagicCodePolicy()
    assert (policy.sends_per_hour, policy.verifies_per_hour) == (20, 20)
    assert policy.code_lifetime == timedelta(hours=24)
    with pytest.raises(ValueError, match="code_lifetime"):
        MagicCodePolicy(code_lifetime=timedelta(0))
    with pytest.raises(ValueError, match="capacity"):
        MagicCodePolicy(sends_per_hour=0)
