"""Retries: the pure decisions, then the transports' loops with an injected sleep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from instantdb import (
    InstantAPIError,
    InstantConnectionError,
    InstantQueryTimeoutError,
    InstantRateLimitError,
    InstantServerError,
    InstantTimeoutError,
    InstantTypeError,
    InstantValueError,
    RetryPolicy,
)
from instantdb._protocol import admin
from instantdb._retry import RetrySafety, RetryState
from instantdb._settings import DEFAULT_TIMEOUT, resolve_settings
from instantdb._transport import AsyncTransport, SyncTransport
from instantdb._tx import TxBuilder
from tests.unit.mock_api import ADMIN_TOKEN, APP_ID, ClientHarness, MockAPI

IDEMPOTENT, UNSENT_ONLY = RetrySafety.IDEMPOTENT, RetrySafety.UNSENT_ONLY


class FakeTime:
    """A clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def state(
    policy: RetryPolicy, safety: RetrySafety, time: FakeTime, draw: float = 1.0
) -> RetryState:
    return policy.start(safety, clock=time.clock, random=lambda: draw)


def unavailable(status: int = 503) -> InstantServerError:
    return InstantServerError("down", status=status, body=None)


def rate_limited(retry_after: float | None = None) -> InstantRateLimitError:
    return InstantRateLimitError("slow down", status=429, body=None, retry_after=retry_after)


NOT_SENT = InstantConnectionError("refused", may_have_been_sent=False)
MAYBE_SENT = InstantTimeoutError("read timeout", may_have_been_sent=True)


# --- the policy ------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    time = FakeTime()
    retry = state(
        RetryPolicy(max_attempts=6, initial_backoff=0.5, max_backoff=3.0, deadline=None),
        IDEMPOTENT,
        time,
    )
    assert [retry.delay_after(unavailable()) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, None]
    half = state(RetryPolicy(initial_backoff=0.5), IDEMPOTENT, time, draw=0.5)
    assert half.delay_after(unavailable()) == 0.25
    assert half.delay_after(unavailable()) == 0.5
    assert state(RetryPolicy(), IDEMPOTENT, time, draw=0.0).delay_after(unavailable()) == 0.0


@pytest.mark.parametrize(
    ("error", "reads", "writes"),
    [
        (NOT_SENT, True, True),
        (InstantTimeoutError("pool", may_have_been_sent=False), True, True),
        (rate_limited(), True, True),
        (MAYBE_SENT, True, False),
        (InstantConnectionError("reset", may_have_been_sent=True), True, False),
        (unavailable(502), True, False),
        (unavailable(503), True, False),
        (unavailable(504), True, False),
        (unavailable(500), False, False),
        (InstantQueryTimeoutError("too long", status=429, body=None), False, False),
        (InstantAPIError("bad", status=400, body=None), False, False),
        (InstantAPIError("empty body", status=200, body=None), False, False),
        (ValueError("not ours"), False, False),
    ],
)
def test_what_is_retried(error: BaseException, reads: bool, writes: bool) -> None:
    time = FakeTime()
    assert (state(RetryPolicy(), IDEMPOTENT, time).delay_after(error) is not None) is reads
    assert (state(RetryPolicy(), UNSENT_ONLY, time).delay_after(error) is not None) is writes


def test_the_servers_wait_is_used_as_is() -> None:
    time = FakeTime()
    retry = state(RetryPolicy(max_backoff=1.0), UNSENT_ONLY, time, draw=0.1)
    assert retry.delay_after(rate_limited(retry_after=7.0)) == 7.0
    assert retry.delay_after(rate_limited(retry_after=None)) == pytest.approx(0.1)


def test_no_retry_would_start_after_the_deadline() -> None:
    time = FakeTime()
    retry = state(RetryPolicy(max_attempts=10, deadline=30.0), IDEMPOTENT, time)
    assert retry.delay_after(rate_limited(retry_after=31.0)) is None  # would start too late
    assert retry.delay_after(rate_limited(retry_after=20.0)) == 20.0
    time.now += 20.0 + 9.5  # the retried request took 9.5 s
    assert retry.delay_after(rate_limited(retry_after=0.4)) == 0.4
    time.now += 0.4
    assert retry.delay_after(rate_limited(retry_after=0.2)) is None


def test_disabled_policy_never_retries() -> None:
    policy = RetryPolicy.disabled()
    assert not policy.enabled
    assert state(policy, IDEMPOTENT, FakeTime()).delay_after(NOT_SENT) is None
    assert RetryPolicy().enabled


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, InstantValueError),
        ({"max_attempts": 2.5}, InstantTypeError),
        ({"max_attempts": True}, InstantTypeError),
        ({"initial_backoff": -1}, InstantValueError),
        ({"max_backoff": float("nan")}, InstantValueError),
        ({"deadline": "30"}, InstantTypeError),
    ],
)
def test_policy_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="RetryPolicy"):
        RetryPolicy(**kwargs)


# --- the transports --------------------------------------------------------------------


class TransportRunner:
    """Runs calls through a SyncTransport or AsyncTransport on a MockAPI, on fake time."""

    def __init__(self, kind: str, policy: RetryPolicy) -> None:
        self.kind = kind
        self.api = MockAPI()
        self.time = FakeTime()
        self.settings = resolve_settings(
            app_id=APP_ID,
            admin_token=ADMIN_TOKEN,
            api_uri="https://h.test",
            timeout=DEFAULT_TIMEOUT,
            retry=policy,
        )
        common: dict[str, Any] = {
            "transport": self.api.transport(),
            "clock": self.time.clock,
            "random": lambda: 1.0,
        }
        self.transport: Any
        if kind == "sync":
            self.transport = SyncTransport(self.settings, sleep=self.time.sleep, **common)
        else:
            self.transport = AsyncTransport(self.settings, sleep=self.time.async_sleep, **common)

    def run(self, call: Any) -> Any:
        if self.kind == "sync":
            return self.transport.run(call)
        return asyncio.run(self.transport.run(call))

    def query(self) -> Any:
        return self.run(admin.query_call(self.settings, {"goals": {}}, None))

    def transact(self) -> Any:
        return self.run(admin.transact_call(self.settings, TxBuilder().goals["g"].delete(), None))

    def close(self) -> None:
        if self.kind == "sync":
            self.transport.close()
        else:
            asyncio.run(self.transport.aclose())


@pytest.fixture(params=["sync", "async"])
def make_runner(request: pytest.FixtureRequest) -> Iterator[Any]:
    runners: list[TransportRunner] = []

    def make(policy: RetryPolicy | None = None) -> TransportRunner:
        runner = TransportRunner(request.param, policy or RetryPolicy(deadline=None))
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()


def ok(body: Any = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {"goals": []})


def status(code: int, **headers: str) -> httpx.Response:
    kind = "rate-limited" if code == 429 else None
    return httpx.Response(code, json={"type": kind, "message": f"status {code}"}, headers=headers)


@pytest.mark.parametrize("code", [502, 503, 504])
def test_reads_retry_unavailable_servers(make_runner: Any, code: int) -> None:
    runner = make_runner()
    runner.api.queue(status(code), status(code), ok())
    assert runner.query() == {"goals": []}
    assert len(runner.api.requests) == 3
    assert runner.time.sleeps == [0.5, 1.0]


def test_reads_give_up_after_max_attempts(make_runner: Any) -> None:
    runner = make_runner(RetryPolicy(max_attempts=2, deadline=None))
    runner.api.queue(status(503), status(503), ok())
    with pytest.raises(InstantServerError, match="status 503"):
        runner.query()
    assert len(runner.api.requests) == 2


@pytest.mark.parametrize("code", [500, 400, 404])
def test_other_statuses_are_not_retried(make_runner: Any, code: int) -> None:
    runner = make_runner()
    runner.api.queue(status(code), ok())
    with pytest.raises(InstantAPIError):
        runner.query()
    assert len(runner.api.requests) == 1
    assert runner.time.sleeps == []


def test_rate_limits_wait_as_told_by_hint_or_header(make_runner: Any) -> None:
    runner = make_runner()
    hinted = httpx.Response(
        429, json={"type": "rate-limited", "message": "m", "hint": {"retry-after": 4}}
    )
    runner.api.queue(hinted, status(429, **{"retry-after": "2"}), ok())
    assert runner.query() == {"goals": []}
    assert runner.time.sleeps == [4.0, 2.0]


def test_a_query_timeout_is_not_retried(make_runner: Any) -> None:
    runner = make_runner()
    runner.api.queue(
        httpx.Response(429, json={"type": "timeout", "message": "Query timed out"}), ok()
    )
    with pytest.raises(InstantQueryTimeoutError, match="Query timed out"):
        runner.query()
    assert len(runner.api.requests) == 1


def test_the_deadline_stops_retries(make_runner: Any) -> None:
    runner = make_runner(RetryPolicy(max_attempts=10, deadline=5.0))
    runner.api.default = lambda request: status(429, **{"retry-after": "2"})
    with pytest.raises(InstantRateLimitError) as caught:
        runner.query()
    assert runner.time.sleeps == [2.0, 2.0]  # a third wait would end after 6 s
    assert caught.value.retry_after == 2.0
    assert len(runner.api.requests) == 3


def test_disabled_retries_send_once(make_runner: Any) -> None:
    runner = make_runner(RetryPolicy.disabled())
    runner.api.queue(httpx.ConnectError("refused"), ok())
    with pytest.raises(InstantConnectionError):
        runner.query()
    assert len(runner.api.requests) == 1


def test_transactions_retry_only_what_never_ran(make_runner: Any) -> None:
    runner = make_runner()
    runner.api.queue(
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        ok({"tx-id": 5}),
    )
    assert runner.transact() == {"tx-id": 5}
    runner.api.queue(status(429), ok({"tx-id": 6}))
    assert runner.transact() == {"tx-id": 6}
    assert len(runner.api.requests) == 5


@pytest.mark.parametrize(
    "failure",
    [
        lambda: httpx.ReadTimeout("slow"),
        lambda: httpx.RemoteProtocolError("dropped"),
        lambda: status(502),
        lambda: status(503),
        lambda: status(504),
    ],
)
def test_transactions_that_may_have_run_are_not_retried(make_runner: Any, failure: Any) -> None:
    runner = make_runner()
    runner.api.queue(failure(), ok({"tx-id": 1}))
    with pytest.raises((InstantServerError, InstantConnectionError, InstantTimeoutError)):
        runner.transact()
    assert len(runner.api.requests) == 1


def test_reads_retry_connections_that_broke_after_sending(make_runner: Any) -> None:
    runner = make_runner()
    runner.api.queue(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), ok())
    assert runner.query() == {"goals": []}
    assert len(runner.api.requests) == 3


def test_retries_are_logged_without_secrets(
    make_runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner()
    runner.api.queue(status(503), ok())
    with caplog.at_level(logging.INFO, logger="instantdb"):
        runner.query()
    assert [record.getMessage() for record in caplog.records] == [
        "instantdb: POST /admin/query failed (503 InstantServerError); "
        "retrying in 0.50s (attempt 2)"
    ]


def test_clients_pass_their_retry_setting_to_the_transport(harness: ClientHarness) -> None:
    harness.api.queue(status(503))
    with pytest.raises(InstantServerError):
        harness.call(harness.make(retry=False), "query", {"goals": {}})
    # zero backoff: the retries happen without any real waiting
    harness.api.queue(status(503), status(503), ok())
    fast = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0)
    assert harness.call(harness.make(retry=fast), "query", {"goals": {}}) == {"goals": []}
    assert len(harness.api.requests) == 4
