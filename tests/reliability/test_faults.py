"""The SDK against the local server through a fault-injecting proxy: each fault meets the
documented retry behaviour (docs/api.md, Retries), a clear `InstantError` when retries
run out, and the data on the server shows that no write was applied twice.

Every test runs with both clients. Writes create one ``items`` entity; the test then
counts ``items`` on the server directly, so "the SDK did not retry" is checked against
what the server actually holds, not against what the SDK says.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instantdb import (
    InstantAPIError,
    InstantConnectionError,
    InstantError,
    InstantRateLimitError,
    InstantServerError,
    InstantTimeoutError,
    RetryPolicy,
    id,
)
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials
from tests.reliability._clients import ClientRunner, entity_ids
from tests.reliability._faults import (
    CutRequest,
    CutResponse,
    Delay,
    Fault,
    FaultProxy,
    ResetAfterForward,
    ResetBeforeForward,
    Respond,
    TruncateBody,
    rate_limited,
)

QUERY = "/admin/query"
TRANSACT = "/admin/transact"
# Short enough that a delayed answer costs the suite little, long enough that a normal
# loopback request never hits it.
SHORT_READ_TIMEOUT = httpx.Timeout(10.0, read=1.0)
LONG_DELAY = 30.0  # the proxy's wait is cut short when the test ends


def _write(db: Any) -> Any:
    return db.transact(db.tx.items[id()].update({"n": 1}))


def _read(db: Any) -> Any:
    return db.query({"items": {}})


def _faults_met(proxy: FaultProxy, path: str) -> list[str]:
    return [exchange.fault for exchange in proxy.to(path)]


def _retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the SDK logged before each retry."""
    found = []
    for record in caplog.records:
        match = re.search(r"retrying in ([0-9.]+)s", record.getMessage())
        if record.name == "instantdb" and match:
            found.append(float(match.group(1)))
    return found


# -- the request never reached the server ------------------------------------------------


def test_reset_before_forwarding_a_read_is_retried(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    proxy.plan(ResetBeforeForward(), path=QUERY)
    db = clients.make(app, api_uri=proxy.url)
    assert clients.run(_read(db)) == {"items": []}
    assert _faults_met(proxy, QUERY) == ["ResetBeforeForward", "Pass"]


def test_reset_before_forwarding_a_write_is_not_retried(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    # The SDK cannot tell this from a reset after the server ran it, so it must not
    # retry, and must say the outcome is unknown.
    proxy.plan(ResetBeforeForward(), path=TRANSACT)
    db = clients.make(app, api_uri=proxy.url)
    with pytest.raises(InstantConnectionError) as caught:
        clients.run(_write(db))
    assert caught.value.may_have_been_sent is True
    assert "may have been processed" in str(caught.value)
    assert _faults_met(proxy, TRANSACT) == ["ResetBeforeForward"]
    assert entity_ids(app, "items") == []
    # The pool recovers: the same client works at once.
    assert clients.run(_write(db))["tx-id"] > 0


def test_request_cut_mid_body_is_not_applied_and_the_server_carries_on(
    app: AppCredentials,
    proxy: FaultProxy,
    clients: ClientRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.plan(CutRequest(body_bytes=10), path=TRANSACT)
    db = clients.make(app, api_uri=proxy.url)
    with caplog.at_level(logging.WARNING, logger="instantdb_local"):
        with pytest.raises(InstantConnectionError) as caught:
            clients.run(_write(db))
        assert caught.value.may_have_been_sent is True
        assert entity_ids(app, "items") == []  # half a body is never half a transaction
        clients.run(_write(db))
    assert len(entity_ids(app, "items")) == 1
    # The vanished client is not a server fault: nothing logged as an error.
    assert [r.getMessage() for r in caplog.records if r.name == "instantdb_local"] == []


# -- the server ran it, the answer was lost ------------------------------------------------

LOST_ANSWERS: list[tuple[Fault, type[InstantError], bool]] = [
    # (fault, what a write raises, whether a read is retried)
    (ResetAfterForward(), InstantConnectionError, True),
    (CutResponse(body_bytes=4), InstantConnectionError, True),
    (CutResponse(body_bytes=4, reset=False), InstantConnectionError, True),
    (Delay(LONG_DELAY), InstantTimeoutError, True),
    # A well-framed 200 whose JSON is cut short: a bad 2xx body is never retried.
    (TruncateBody(keep=5), InstantAPIError, False),
]


def _lost_id(case: tuple[Fault, type[InstantError], bool]) -> str:
    fault = case[0]
    if isinstance(fault, CutResponse):
        return f"CutResponse-{'reset' if fault.reset else 'close'}"
    return fault.name


@pytest.mark.parametrize("case", LOST_ANSWERS, ids=_lost_id)
def test_a_write_whose_answer_is_lost_is_applied_exactly_once(
    case: tuple[Fault, type[InstantError], bool],
    app: AppCredentials,
    proxy: FaultProxy,
    clients: ClientRunner,
) -> None:
    fault, error_class, _ = case
    proxy.plan(fault, path=TRANSACT)
    db = clients.make(app, api_uri=proxy.url, timeout=SHORT_READ_TIMEOUT)
    with pytest.raises(error_class) as caught:
        clients.run(_write(db))
    error = caught.value
    if isinstance(error, InstantConnectionError | InstantTimeoutError):
        assert error.may_have_been_sent is True
        assert "may have been processed" in str(error)
    else:
        assert error.status == 200
        assert "not JSON" in str(error)
    assert _faults_met(proxy, TRANSACT) == [fault.name]  # no retry
    assert proxy.forwarded(TRANSACT) == 1
    assert len(entity_ids(app, "items")) == 1  # applied once, never twice
    clients.run(_write(db))
    assert len(entity_ids(app, "items")) == 2


@pytest.mark.parametrize("case", LOST_ANSWERS, ids=_lost_id)
def test_a_read_whose_answer_is_lost(
    case: tuple[Fault, type[InstantError], bool],
    app: AppCredentials,
    proxy: FaultProxy,
    clients: ClientRunner,
) -> None:
    fault, _, retried = case
    proxy.plan(fault, path=QUERY)
    db = clients.make(app, api_uri=proxy.url, timeout=SHORT_READ_TIMEOUT)
    if retried:
        assert clients.run(_read(db)) == {"items": []}
        assert _faults_met(proxy, QUERY) == [fault.name, "Pass"]
    else:
        with pytest.raises(InstantAPIError, match="not JSON"):
            clients.run(_read(db))
        assert _faults_met(proxy, QUERY) == [fault.name]


# -- rate limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected_wait"),
    [
        (rate_limited(retry_after_header="0.05"), 0.05),
        (rate_limited(hint_retry_after=0.07), 0.07),
        # The real server's hint wins over the header.
        (rate_limited(retry_after_header="0.5", hint_retry_after=0.03), 0.03),
    ],
    ids=["retry-after-header", "hint-retry-after", "hint-over-header"],
)
def test_429_is_retried_after_the_wait_the_server_asked_for(
    answer: Respond,
    expected_wait: float,
    app: AppCredentials,
    proxy: FaultProxy,
    clients: ClientRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 429 was refused before it ran: even a write is retried.
    proxy.plan(answer, path=TRANSACT)
    db = clients.make(app, api_uri=proxy.url)
    with caplog.at_level(logging.INFO, logger="instantdb"):
        clients.run(_write(db))
    assert _retry_delays(caplog) == [expected_wait]
    assert _faults_met(proxy, TRANSACT) == ["Respond", "Pass"]
    assert len(entity_ids(app, "items")) == 1


@pytest.mark.parametrize(
    "answer",
    [rate_limited(), rate_limited(retry_after_header="Wed, 21 Oct 2037 07:28:00 GMT")],
    ids=["no-wait-named", "http-date-ignored"],
)
def test_429_without_a_usable_wait_backs_off(
    answer: Respond,
    app: AppCredentials,
    proxy: FaultProxy,
    clients: ClientRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.plan(answer, answer, path=TRANSACT)
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.02, max_backoff=0.03)
    db = clients.make(app, api_uri=proxy.url, retry=policy)
    with caplog.at_level(logging.INFO, logger="instantdb"):
        clients.run(_write(db))
    first, second = _retry_delays(caplog)
    # Full jitter under the doubling bound, capped by max_backoff.
    assert 0 <= first <= 0.02
    assert 0 <= second <= 0.03
    assert len(entity_ids(app, "items")) == 1


def test_429_until_retries_run_out(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    proxy.plan(*[rate_limited(retry_after_header="0.01")] * 3, path=TRANSACT)
    db = clients.make(app, api_uri=proxy.url)
    with pytest.raises(InstantRateLimitError) as caught:
        clients.run(_write(db))
    assert caught.value.retry_after == 0.01
    assert caught.value.type == "rate-limited"
    assert str(caught.value) == "Your request exceeded the rate limit."
    assert _faults_met(proxy, TRANSACT) == ["Respond"] * 3
    assert proxy.forwarded(TRANSACT) == 0
    assert entity_ids(app, "items") == []


def test_a_wait_past_the_deadline_is_not_taken(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    proxy.plan(rate_limited(retry_after_header="60"), path=QUERY)
    db = clients.make(app, api_uri=proxy.url, retry=RetryPolicy(deadline=5))
    with pytest.raises(InstantRateLimitError) as caught:
        clients.run(_read(db))
    assert caught.value.retry_after == 60  # kept, so the caller can decide
    assert _faults_met(proxy, QUERY) == ["Respond"]


# -- 5xx bursts -----------------------------------------------------------------------------


def _status(code: int) -> Respond:
    return Respond.json(code, {"type": None, "message": f"gateway says {code}"})


def test_a_502_503_burst_on_a_read_is_ridden_out(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    proxy.plan(_status(502), _status(503), path=QUERY)
    db = clients.make(app, api_uri=proxy.url)
    assert clients.run(_read(db)) == {"items": []}
    assert _faults_met(proxy, QUERY) == ["Respond", "Respond", "Pass"]


def test_a_503_burst_longer_than_the_retries(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    proxy.plan(_status(503), _status(504), _status(503), path=QUERY)
    db = clients.make(app, api_uri=proxy.url)
    with pytest.raises(InstantServerError) as caught:
        clients.run(_read(db))
    assert caught.value.status == 503
    assert str(caught.value) == "gateway says 503"
    assert len(proxy.to(QUERY)) == 3


@pytest.mark.parametrize("code", [502, 503, 504])
def test_a_5xx_on_a_write_is_not_retried(
    code: int, app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    # A gateway's 5xx says nothing about whether the server behind it ran the write.
    proxy.plan(_status(code), path=TRANSACT)
    db = clients.make(app, api_uri=proxy.url)
    with pytest.raises(InstantServerError) as caught:
        clients.run(_write(db))
    assert caught.value.status == code
    assert _faults_met(proxy, TRANSACT) == ["Respond"]
    assert entity_ids(app, "items") == []


def test_a_500_is_never_retried(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    proxy.plan(_status(500), path=QUERY)
    db = clients.make(app, api_uri=proxy.url)
    with pytest.raises(InstantServerError):
        clients.run(_read(db))
    assert _faults_met(proxy, QUERY) == ["Respond"]


# -- the server killed and restarted ---------------------------------------------------------


class _RetrySeen(logging.Handler):
    """Sets an event when the SDK logs its first retry."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying in" in record.getMessage():
            self.seen.set()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalServer]:
    server = LocalServer(data_dir=tmp_path / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_write_sent_while_the_server_is_down_lands_once_it_is_back(
    own_server: LocalServer, clients: ClientRunner
) -> None:
    creds = own_server.credentials
    # Same data dir, same port: the server comes back where the client expects it.
    restarted = LocalServer(data_dir=own_server.instance.data_dir, port=own_server.port)
    own_server.stop()
    patient = RetryPolicy(max_attempts=200, initial_backoff=0.02, max_backoff=0.05, deadline=30)
    db = clients.make(creds, retry=patient)
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            outcome["result"] = clients.run(_write(db))
        except Exception as exc:  # reported below
            outcome["error"] = exc

    watcher = _RetrySeen()
    sdk_logger = logging.getLogger("instantdb")
    previous_level = sdk_logger.level
    sdk_logger.addHandler(watcher)
    sdk_logger.setLevel(logging.INFO)
    writer = threading.Thread(target=write)
    try:
        writer.start()
        # Connection refused means never sent: the SDK retries even a write.
        assert watcher.seen.wait(30), "the SDK never retried the refused connection"
        restarted.start()
        writer.join(30)
        assert not writer.is_alive()
        assert "error" not in outcome, outcome
        assert outcome["result"]["tx-id"] > 0
        assert len(entity_ids(creds, "items")) == 1
    finally:
        sdk_logger.removeHandler(watcher)
        sdk_logger.setLevel(previous_level)
        restarted.stop()


def test_a_server_that_stays_down(own_server: LocalServer, clients: ClientRunner) -> None:
    creds = own_server.credentials
    own_server.stop()
    db = clients.make(creds)
    with pytest.raises(InstantConnectionError) as caught:
        clients.run(_write(db))
    assert caught.value.may_have_been_sent is False
    message = str(caught.value)
    assert "could not connect" in message
    assert creds.api_uri in message
    assert "Check api_uri" in message
