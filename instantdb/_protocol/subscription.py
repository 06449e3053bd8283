"""``subscribe_query`` (wire protocol §6): the request and the state machine. No I/O.

The shells open ``POST /admin/subscribe-query`` and feed `SubscriptionMachine` what
happens: a connection attempt, each message, each failure. The machine decides what the
user sees (payloads, in order, in a bounded backlog), whether to reconnect and after how
long, and when the subscription is over.

Decisions (docs/api.md says the same):

* One ``local_connection_id`` per subscription, kept across reconnects (as JS), so the
  server's logs show one subscriber.
* A transient failure (network, server gone, 5xx, 429, no ``sse-init``) reconnects with
  `ReconnectSchedule`, before or after the first connection alike, re-sending the same
  body; the server answers with a fresh full result. If an outage lasts
  `OUTAGE_REPORT_AFTER` seconds, one error payload says so (the subscription goes on).
* A terminal failure (400/401/403/404 on any attempt, not an event stream, a client
  that cannot send) yields one error payload and then ends the iteration.
* An ``error`` message for the initial query (the query is invalid or not permitted)
  also ends the subscription: the server has dropped the query, so nothing more would
  come. Other ``error`` messages are yielded and the subscription goes on.
* An ``ok`` payload equal (data and page info) to the ``ok`` payload before it is not
  delivered: a reconnect brings the full result again, and an unchanged one is no news.
* At most `BACKLOG` undelivered payloads are kept; when a new one arrives the oldest is
  dropped (every ``ok`` payload is a full result, so the newest supersedes it). The
  final error payload is never dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Literal

from instantdb._errors import InstantError
from instantdb._json import dumps
from instantdb._settings import Settings

from ._call import Request
from .admin import _query as query_with_rule_params
from .live import error_from_message, sse_headers, versions
from .reconnect import ReconnectSchedule, is_terminal

__all__ = [
    "BACKLOG",
    "OUTAGE_REPORT_AFTER",
    "Next",
    "ReadyState",
    "SubscriptionMachine",
    "page_info_of",
    "subscribe_request",
]

BACKLOG = 100
OUTAGE_REPORT_AFTER = 5.0

ReadyState = Literal["connecting", "open", "closed"]
Payload = dict[str, Any]


def subscribe_request(
    settings: Settings,
    q: Mapping[str, Any],
    rule_params: Mapping[str, Any] | None,
    connection_id: str,
) -> Request:
    """``POST /admin/subscribe-query?local_connection_id=...`` (no ``app_id`` param)."""
    body = {
        "query": query_with_rule_params(q, rule_params, "subscribe_query"),
        "inference?": False,
        "versions": versions(),
    }
    return Request(
        method="POST",
        path="/admin/subscribe-query",
        params=(("local_connection_id", connection_id),),
        headers=sse_headers(settings),
        content=dumps(body),
        secrets=settings.secrets,
    )


def page_info_of(result_meta: object) -> dict[str, Any] | None:
    """``result-meta["page-info"]`` with snake_case keys, or None when there is none."""
    page_info = result_meta.get("page-info") if isinstance(result_meta, Mapping) else None
    if not isinstance(page_info, Mapping) or not page_info:
        return None
    return {
        namespace: {_PAGE_KEYS.get(key, key): value for key, value in info.items()}
        if isinstance(info, Mapping)
        else info
        for namespace, info in page_info.items()
    }


_PAGE_KEYS = {
    "start-cursor": "start_cursor",
    "end-cursor": "end_cursor",
    "has-next-page?": "has_next_page",
    "has-previous-page?": "has_previous_page",
}


class Next(Enum):
    """What the shell does after feeding a message."""

    READ = "read"
    """Keep reading this connection."""
    RECONNECT = "reconnect"
    """Drop this connection and call `SubscriptionMachine.failed` with `reconnect_reason`."""
    STOP = "stop"
    """The subscription is over: close the connection, deliver what is left."""


class SubscriptionMachine:
    """The state of one subscription, fed by a shell. Not thread-safe on its own."""

    def __init__(
        self,
        *,
        secrets: tuple[str, ...] = (),
        random: Callable[[], float],
        backlog: int = BACKLOG,
    ) -> None:
        self._secrets = secrets
        self._schedule = ReconnectSchedule(random=random)
        self._backlog: deque[Payload] = deque()
        self._last_ok: tuple[object, object] | None = None
        self._backlog_size = backlog
        self._final: Payload | None = None
        self.ready_state: ReadyState = "connecting"
        self.session_info: dict[str, Any] | None = None
        self.dropped = 0
        """Payloads dropped because the backlog was full."""
        self._has_result = False
        self._outage_since: float | None = None
        self._outage_reported = False
        self.reconnect_reason: InstantError | None = None

    # -- what the shell reads ------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.ready_state == "closed"

    @property
    def exhausted(self) -> bool:
        """True once closed and every payload has been handed out."""
        return self.is_closed and not self._backlog and self._final is None

    def pop(self) -> Payload | None:
        """The next payload to yield, or None when there is none yet."""
        if self._backlog:
            return self._backlog.popleft()
        final, self._final = self._final, None
        return final

    # -- events --------------------------------------------------------------------------

    def connecting(self, now: float) -> None:
        """A connection attempt starts."""
        if self.ready_state != "closed":
            self.ready_state = "connecting"
        if self._outage_since is None:
            self._outage_since = now
        self._has_result = False

    def on_message(self, message: Mapping[str, Any], now: float) -> Next:
        """Feed one message of the current connection."""
        if self.is_closed:
            return Next.STOP
        op = message.get("op")
        if op == "sse-init":
            self.session_info = {
                "machine_id": message.get("machine-id"),
                "session_id": message.get("session-id"),
            }
            self.ready_state = "open"
            self._schedule.opened(now)
            self._outage_since = None
            self._outage_reported = False
        elif op == "add-query-ok":
            self._has_result = True
            self._push(self._ok(message.get("result"), message.get("result-meta")))
        elif op == "refresh-ok":
            computations = message.get("computations")
            # An empty list means only attrs changed: nothing for the user.
            if isinstance(computations, list) and computations:
                first = computations[0] if isinstance(computations[0], Mapping) else {}
                self._push(self._ok(first.get("instaql-result"), first.get("result-meta")))
        elif op == "error":
            return self._on_error(message)
        return Next.READ

    def failed(self, error: InstantError, now: float) -> float | None:
        """The connection attempt or connection failed: seconds to wait, or None if over.

        On a terminal error the final error payload is queued and the machine closes.
        """
        if self.is_closed:
            return None
        if is_terminal(error):
            self._finish(error)
            return None
        self.ready_state = "connecting"
        if self._outage_since is None:
            self._outage_since = now
        elif not self._outage_reported and now - self._outage_since >= OUTAGE_REPORT_AFTER:
            self._outage_reported = True
            self._push(self._error_payload(error))
        return self._schedule.delay_after(error, now)

    def on_retry_hint(self, milliseconds: int | None) -> None:
        """The server's ``retry:`` hint, a floor for reconnect waits."""
        if milliseconds is not None:
            self._schedule.retry_hint = milliseconds / 1000

    def close(self) -> None:
        """The user closed the subscription: nothing more is delivered."""
        self.ready_state = "closed"
        self._backlog.clear()
        self._final = None

    # -- internals -----------------------------------------------------------------------

    def _on_error(self, message: Mapping[str, Any]) -> Next:
        error = error_from_message(message, self._secrets, default_message="subscribe-query error")
        original = message.get("original-event")
        original_op = original.get("op") if isinstance(original, Mapping) else None
        about_query = original_op == "add-query" or (original_op is None and not self._has_result)
        if about_query and not self._has_result:
            if is_terminal(error):
                # The server dropped the query: this connection will never send more.
                self._finish(error)
                return Next.STOP
            self.reconnect_reason = error
            return Next.RECONNECT
        self._push(self._error_payload(error))
        return Next.READ

    def _finish(self, error: InstantError) -> None:
        self.ready_state = "closed"
        self._final = self._error_payload(error)

    def _ok(self, result: object, result_meta: object) -> Payload:
        return {
            "type": "ok",
            "data": result,
            "page_info": page_info_of(result_meta),
            "session_info": self.session_info,
        }

    def _error_payload(self, error: InstantError) -> Payload:
        return {
            "type": "error",
            "error": error,
            "ready_state": self.ready_state,
            "is_closed": self.is_closed,
            "session_info": self.session_info,
        }

    def _push(self, payload: Payload) -> None:
        if payload["type"] == "ok":
            # After a reconnect the server sends the full result again; when nothing
            # changed meanwhile it is the one already delivered, which is no news.
            seen = (payload["data"], payload["page_info"])
            if seen == self._last_ok:
                return
            self._last_ok = seen
        else:
            self._last_ok = None  # after an error, the next result is news again
        if len(self._backlog) >= self._backlog_size:
            self._backlog.popleft()
            self.dropped += 1
        self._backlog.append(payload)
