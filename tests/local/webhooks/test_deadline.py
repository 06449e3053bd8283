"""One deadline per delivery attempt: a receiver that trickles its answer a byte at a
time cannot hold an attempt past `DeliverySettings.request_timeout`, whether it stalls in
the status line and headers or in the body. Each trickle would take about 10 s in full;
every read on its own is quick, so only a total deadline ends the attempt."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpcore
import pytest

from instantdb_local.instance import AppCredentials
from instantdb_local.webhooks import WebhookService
from instantdb_local.webhooks.delivery import AttemptDeadline, DeadlineBackend, send
from tests.local.webhooks.helpers import create, transact
from tests.local.webhooks.receiver import TricklingReceiver, wait_until

TIMEOUT = 0.5
# Generous: the deadline is TIMEOUT; this only has to tell it from the full trickle.
BOUND = 10 * TIMEOUT
HEADERS = {"Content-Type": "application/json; charset=utf-8"}


@pytest.fixture(params=["head", "body"])
def trickler(request: pytest.FixtureRequest) -> Iterator[TricklingReceiver]:
    with TricklingReceiver(request.param) as running:
        # Each byte comes well within TIMEOUT; the whole answer takes 20 * TIMEOUT.
        assert len(running.answer) * running.interval > 20 * TIMEOUT
        yield running


def test_a_trickled_answer_is_a_timeout_at_the_deadline(trickler: TricklingReceiver) -> None:
    began = time.monotonic()
    attempt = send(trickler.url, b'{"payloadUrl":"u","token":"t"}', HEADERS, TIMEOUT)
    elapsed = time.monotonic() - began
    assert attempt["error-type"] == "timeout"
    assert attempt["success?"] is False
    assert attempt["status-code"] is None
    assert f"within {TIMEOUT:g} s" in attempt["error-message"]
    assert TIMEOUT * 1000 * 0.9 <= attempt["duration-ms"] < BOUND * 1000
    assert elapsed < BOUND
    # The connection was cut: the receiver never got its whole answer out.
    assert trickler.hung_up.wait(BOUND)
    assert max(trickler.sent) < len(trickler.answer)


def test_an_answer_that_is_slow_but_within_the_deadline_succeeds() -> None:
    with TricklingReceiver("head", interval=0.005, padding=20) as quick:
        assert len(quick.answer) * quick.interval < 2.0
        attempt = send(quick.url, b"{}", HEADERS, 5.0)
    assert attempt["success?"] is True
    assert attempt["status-code"] == 200
    assert attempt["response-text"] == "ok"
    assert attempt["error-type"] is None


def test_the_deadline_bounds_each_step_by_what_is_left() -> None:
    deadline = AttemptDeadline(0.2)
    assert 0.1 < deadline.left(None, httpcore.ReadTimeout) <= 0.2
    assert deadline.left(0.05, httpcore.ReadTimeout) == 0.05
    time.sleep(0.25)
    with pytest.raises(httpcore.WriteTimeout, match=r"0\.2 s are up"):
        deadline.left(5.0, httpcore.WriteTimeout)


def test_each_address_of_a_host_gets_only_what_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    # socket.create_connection would give every address the whole timeout, so a host
    # with a blackholed IPv6 address could take twice the deadline.
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *args, **kwargs: [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 80, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 80)),
        ],
    )
    tried: list[tuple[str, float]] = []

    class Hanging(httpcore.NetworkBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            assert timeout is not None
            tried.append((host, timeout))
            time.sleep(timeout)
            raise httpcore.ConnectError("no answer")

    backend = DeadlineBackend(AttemptDeadline(0.3))
    monkeypatch.setattr(backend, "_sockets", Hanging())
    with pytest.raises(httpcore.ConnectTimeout):
        backend.connect_tcp("dual.example", 80, timeout=0.3)
    assert [host for host, _ in tried] == ["2001:db8::1"]
    assert tried[0][1] <= 0.3


def test_an_unresolvable_host_is_a_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    attempt = send("http://nowhere.invalid/hook", b"{}", HEADERS, TIMEOUT)
    assert attempt["error-type"] == "dns"
    assert attempt["success?"] is False


def test_the_server_records_the_timeout_and_retries_on_the_schedule(
    app: AppCredentials, service: WebhookService, trickler: TricklingReceiver
) -> None:
    service.configure(request_timeout=TIMEOUT, max_attempts=2)
    try:
        hook = create(app, url=trickler.url, actions=["create"])
        began = time.monotonic()
        tx = transact(app, ["update", "goals", str(uuid.uuid4()), {"title": "slow"}])

        def failed() -> object:
            event = service.store.event(hook["id"], tx)
            return event if event is not None and event.status == "failed" else None

        event = wait_until(failed, timeout=4 * BOUND)
        elapsed = time.monotonic() - began
    finally:
        service.configure(request_timeout=20.0, max_attempts=11)
    attempts = event.attempts or []
    assert [a["error-type"] for a in attempts] == ["timeout", "timeout"]
    assert all(a["status-code"] is None and a["success?"] is False for a in attempts)
    assert all(a["duration-ms"] < BOUND * 1000 for a in attempts)
    assert elapsed < 2 * BOUND + 2
    assert trickler.connections == 2
