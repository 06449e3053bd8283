"""Errors and retries, observed for real over HTTP.

The first part checks that the server's refusals arrive as the right `InstantAPIError`
subclasses, with the server's message and hint, and without the tokens. The second puts
a `FaultProxy` between the SDK and the server and checks the documented retry rules
(docs/api.md, "Retries"): reads are retried after transient failures; a transaction only
when the server provably did not run it, so it is never applied twice. Retry policies
here wait zero seconds, so nothing sleeps.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from instantdb import (
    InstantAPIError,
    InstantConnectionError,
    InstantError,
    InstantPermissionError,
    InstantQueryTimeoutError,
    InstantRateLimitError,
    InstantServerError,
    InstantTimeoutError,
    InstantValidationError,
    RetryPolicy,
    id,
)
from instantdb_local.instance import AppCredentials
from tests.integration.conftest import Clients, Driven, Fault, FaultProxy

NO_WAIT = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0, deadline=None)


def secrets_absent(error: BaseException, *secrets: str) -> bool:
    shown = str(error) + repr(error) + json.dumps(getattr(error, "body", None))
    return not any(secret in shown for secret in secrets)


# -- API errors from the server ----------------------------------------------------------


def test_wrong_admin_token(clients: Clients, instant_app: AppCredentials) -> None:
    wrong = id()
    db = clients.make(instant_app, admin_token=wrong)
    with pytest.raises(InstantAPIError) as caught:
        db.query({"goals": {}})
    error = caught.value
    assert type(error) is InstantAPIError  # record-not-found has no narrower class
    assert (error.status, error.type) == (400, "record-not-found")
    assert str(error) == "Record not found: app-admin-token"
    assert error.hint["record-type"] == "app-admin-token"
    assert "incorrect app ID" in error.hint["message"]
    assert secrets_absent(error, wrong, instant_app.admin_token)


def test_malformed_credentials(clients: Clients, instant_app: AppCredentials) -> None:
    bad_token = "not-a-uuid-" + id()
    with pytest.raises(InstantValidationError) as caught:
        clients.make(instant_app, admin_token=bad_token).query({"goals": {}})
    assert (caught.value.type, caught.value.hint["in"]) == (
        "param-malformed",
        ["headers", "authorization"],
    )
    assert secrets_absent(caught.value, bad_token)

    with pytest.raises(InstantValidationError) as caught:
        clients.make(instant_app, app_id="no-such-app").query({"goals": {}})
    assert caught.value.hint["in"] == ["headers", "app-id"]

    bad_refresh = "garbage-" + id()
    with pytest.raises(InstantValidationError) as caught:
        clients.make(instant_app).as_user(token=bad_refresh).query({"goals": {}})
    assert caught.value.hint["in"] == ["asUser", "token"]
    assert secrets_absent(caught.value, bad_refresh, instant_app.admin_token)


def test_unknown_users(db: Driven) -> None:
    with pytest.raises(InstantAPIError) as caught:
        db.as_user(email="nobody@example.com").query({"goals": {}})
    assert (caught.value.type, caught.value.hint["record-type"]) == ("record-not-found", "app-user")
    unknown_token = id()
    with pytest.raises(InstantAPIError, match="app-user") as caught:
        db.as_user(token=unknown_token).query({"goals": {}})
    assert secrets_absent(caught.value, unknown_token)


@pytest.mark.instant_app(rules={"docs": {"allow": {"create": "newData.n > 'x'"}}})
def test_a_rule_that_fails_to_evaluate(db: Driven) -> None:
    guest = db.as_user(guest=True)
    with pytest.raises(InstantPermissionError) as caught:
        guest.transact(guest.tx.docs[id()].update({"n": 1}))
    assert caught.value.type == "permission-evaluation-failed"
    assert "docs.create" in str(caught.value)
    assert caught.value.hint["rule"] == ["docs", "create"]
    assert db.query({"docs": {}})["docs"] == []


def test_echoed_tokens_are_redacted(clients: Clients, fault_proxy: FaultProxy) -> None:
    # The real server echoes a malformed token back in hint.original-input.
    token = "not-a-uuid-" + id()
    fault_proxy.plan.append(
        Fault.answer(
            400,
            {
                "type": "param-malformed",
                "message": f"Malformed parameter: {token}",
                "hint": {"in": ["headers", "authorization"], "original-input": token},
            },
        )
    )
    db = clients.make(app_id=id(), admin_token=token, api_uri=fault_proxy.api_uri)
    with pytest.raises(InstantValidationError) as caught:
        db.query({"goals": {}})
    assert secrets_absent(caught.value, token)
    assert caught.value.hint["original-input"] == "<redacted>"


# -- retries -----------------------------------------------------------------------------


def through(clients: Clients, app: AppCredentials, proxy: FaultProxy, **kwargs: Any) -> Driven:
    kwargs.setdefault("retry", NO_WAIT)
    return clients.make(app, api_uri=proxy.api_uri, **kwargs)


def goal_titles(db: Driven) -> list[str]:
    return sorted(goal["title"] for goal in db.query({"goals": {}})["goals"])


RATE_LIMITED = {
    "type": "rate-limited",
    "message": "Your request exceeded the rate limit.",
    "hint": {"retry-after": 0.01},
}


def test_rate_limits_are_retried_after_the_servers_wait(
    clients: Clients,
    instant_app: AppCredentials,
    fault_proxy: FaultProxy,
    db: Driven,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="instantdb")
    proxied = through(clients, instant_app, fault_proxy)
    fault_proxy.plan.append(Fault.answer(429, RATE_LIMITED))
    # A 429 means the server did not run the request: a transaction is retried too...
    proxied.transact(proxied.tx.goals[id()].update({"title": "once"}))
    fault_proxy.plan.append(Fault.answer(429, RATE_LIMITED))
    assert goal_titles(proxied) == ["once"]
    assert fault_proxy.requests == ["POST /admin/transact"] * 2 + ["POST /admin/query"] * 2
    # ...and applied exactly once.
    assert goal_titles(db) == ["once"]
    waits = [r.getMessage() for r in caplog.records if r.name == "instantdb"]
    assert len(waits) == 2
    assert all("(429 InstantRateLimitError); retrying in 0.01s" in w for w in waits)
    assert not any(instant_app.admin_token in r.getMessage() for r in caplog.records)


def test_rate_limit_errors_after_the_last_attempt(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy
) -> None:
    proxied = through(clients, instant_app, fault_proxy)
    fault_proxy.plan.extend(
        Fault.answer(429, RATE_LIMITED, headers={"retry-after": "0"}) for _ in range(3)
    )
    with pytest.raises(InstantRateLimitError) as caught:
        proxied.query({"goals": {}})
    assert caught.value.retry_after == 0.01  # the hint wins over the header
    assert str(caught.value) == "Your request exceeded the rate limit."
    assert len(fault_proxy.requests) == 3


def test_a_query_that_timed_out_is_not_retried(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy
) -> None:
    proxied = through(clients, instant_app, fault_proxy)
    fault_proxy.plan.append(
        Fault.answer(429, {"type": "timeout", "message": "The query took too long."})
    )
    with pytest.raises(InstantQueryTimeoutError, match="took too long"):
        proxied.query({"goals": {}})
    assert len(fault_proxy.requests) == 1


def test_server_errors_retry_reads_but_not_writes(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy, db: Driven
) -> None:
    proxied = through(clients, instant_app, fault_proxy)
    unavailable = {"type": None, "message": "Service Unavailable"}
    fault_proxy.plan.extend([Fault.answer(503, unavailable), Fault.answer(502, b"Bad Gateway")])
    assert goal_titles(proxied) == []
    assert len(fault_proxy.requests) == 3

    # The server ran the transaction, but its answer was lost behind a 503: retrying
    # would apply it twice, so the SDK raises instead.
    fault_proxy.plan.append(Fault.answer(503, unavailable, forward=True))
    with pytest.raises(InstantServerError) as caught:
        proxied.transact(proxied.tx.goals[id()].update({"title": "applied"}))
    assert caught.value.status == 503
    assert str(caught.value) == "Service Unavailable"
    assert fault_proxy.requests[3:] == ["POST /admin/transact"]
    assert goal_titles(db) == ["applied"]

    # A non-JSON error body keeps its text as the message.
    fault_proxy.plan.extend(Fault.answer(502, b"Bad Gateway") for _ in range(3))
    with pytest.raises(InstantServerError) as caught:
        proxied.query({"goals": {}})
    assert str(caught.value) == "Bad Gateway"
    assert caught.value.body == {"type": None, "message": "Bad Gateway"}


def test_retry_false_sends_once(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy
) -> None:
    proxied = through(clients, instant_app, fault_proxy, retry=False)
    fault_proxy.plan.append(Fault.answer(503, {"message": "down"}))
    with pytest.raises(InstantServerError):
        proxied.query({"goals": {}})
    fault_proxy.plan.append(Fault.answer(429, RATE_LIMITED))
    with pytest.raises(InstantRateLimitError):
        proxied.query({"goals": {}})
    assert len(fault_proxy.requests) == 2


def test_a_dropped_connection_retries_reads_but_not_writes(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy, db: Driven
) -> None:
    proxied = through(clients, instant_app, fault_proxy)
    fault_proxy.plan.append(Fault.drop_connection(forward=False))
    assert goal_titles(proxied) == []
    assert len(fault_proxy.requests) == 2

    fault_proxy.plan.append(Fault.drop_connection(forward=True))
    with pytest.raises(InstantConnectionError) as caught:
        proxied.transact(proxied.tx.goals[id()].update({"title": "applied"}))
    assert caught.value.may_have_been_sent is True
    assert "may have been processed" in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)
    assert fault_proxy.requests[2:] == ["POST /admin/transact"]
    assert goal_titles(db) == ["applied"]


def test_a_read_timeout_retries_reads_but_not_writes(
    clients: Clients, instant_app: AppCredentials, fault_proxy: FaultProxy, db: Driven
) -> None:
    proxied = through(clients, instant_app, fault_proxy, timeout=0.5)
    fault_proxy.plan.append(Fault.stall_then_drop(forward=False))
    assert goal_titles(proxied) == []
    assert len(fault_proxy.requests) == 2

    fault_proxy.plan.append(Fault.stall_then_drop(forward=True))
    with pytest.raises(InstantTimeoutError) as caught:
        proxied.transact(proxied.tx.goals[id()].update({"title": "applied"}))
    assert caught.value.may_have_been_sent is True
    assert fault_proxy.requests[2:] == ["POST /admin/transact"]
    fault_proxy.wait_until_forwarded(2)  # the retried query, then the transaction
    assert goal_titles(db) == ["applied"]


def test_connection_refused_is_retried_for_every_call(
    clients: Clients, instant_app: AppCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="instantdb")
    proxy = FaultProxy(instant_app.api_uri, listening=False)
    try:
        proxied = through(clients, instant_app, proxy)
        for call in (
            lambda: proxied.query({"goals": {}}),
            lambda: proxied.transact(proxied.tx.goals[id()].update({"title": "x"})),
        ):
            caplog.clear()
            with pytest.raises(InstantConnectionError) as caught:
                call()
            assert caught.value.may_have_been_sent is False
            assert "could not connect" in str(caught.value)
            retries = [r.getMessage() for r in caplog.records if r.name == "instantdb"]
            assert [line.rsplit("(", 1)[1] for line in retries] == ["attempt 2)", "attempt 3)"]
        assert proxy.requests == []
    finally:
        proxy.stop()


class _ListenOnFirstRetry(logging.Handler):
    """Starts the proxy listening when the SDK logs its first retry."""

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(logging.INFO)
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        self.proxy.listen()


def test_a_transaction_refused_a_connection_is_sent_again_and_applied_once(
    clients: Clients, instant_app: AppCredentials, db: Driven, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="instantdb")
    proxy = FaultProxy(instant_app.api_uri, listening=False)
    handler = _ListenOnFirstRetry(proxy)
    logging.getLogger("instantdb").addHandler(handler)
    try:
        proxied = through(clients, instant_app, proxy)
        proxied.transact(proxied.tx.goals[id()].update({"title": "once"}))
        assert proxy.requests == ["POST /admin/transact"]
        assert goal_titles(db) == ["once"]
    finally:
        logging.getLogger("instantdb").removeHandler(handler)
        proxy.stop()


def test_network_errors_are_instant_errors_and_oserrors(
    clients: Clients, instant_app: AppCredentials
) -> None:
    proxy = FaultProxy(instant_app.api_uri, listening=False)
    try:
        with pytest.raises(InstantError) as caught:
            through(clients, instant_app, proxy, retry=False).query({"goals": {}})
        assert isinstance(caught.value, ConnectionError)
        assert isinstance(caught.value, OSError)
        assert secrets_absent(caught.value, instant_app.admin_token)
    finally:
        proxy.stop()
