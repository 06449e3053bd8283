"""``python -m tests.reliability._crash_serve serve ...``: ``instantdb-local`` with a crash
point, for durability tests that need the process to die at one exact place.

``INSTANTDB_TEST_CRASH_BEFORE_EVENT=N``: the Nth transaction that matches a webhook
kills the server with SIGKILL after the app's commit and before the webhook service
records its events: the window a transactional outbox must cover. Without the variable
this is the plain CLI.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from instantdb_local.cli import main
from instantdb_local.webhooks.store import WebhookStore

CRASH_BEFORE_EVENT = "INSTANTDB_TEST_CRASH_BEFORE_EVENT"


def _install_crash_before_event(count: int) -> None:
    record = WebhookStore.record_transaction
    calls = 0

    def crash_on_the_nth(self: WebhookStore, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == count:
            os.kill(os.getpid(), signal.SIGKILL)
        record(self, *args, **kwargs)

    WebhookStore.record_transaction = crash_on_the_nth  # type: ignore[method-assign]


if __name__ == "__main__":
    if os.environ.get(CRASH_BEFORE_EVENT):
        _install_crash_before_event(int(os.environ[CRASH_BEFORE_EVENT]))
    sys.exit(main())
