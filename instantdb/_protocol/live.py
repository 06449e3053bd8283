"""What the live routes share: the SSE request headers, the ``versions`` body, and how
an answer to an SSE request is judged before its events are read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from instantdb._errors import InstantAPIError
from instantdb._settings import Settings
from instantdb._version import __version__

from ._call import Response, standard_headers
from ._responses import api_error

__all__ = ["error_from_message", "open_failure", "sse_headers", "versions"]

EVENT_STREAM = "text/event-stream"


def sse_headers(settings: Settings) -> dict[str, str]:
    """The standard header set (auth, impersonation) plus what an event stream needs."""
    headers = standard_headers(settings)
    headers["accept"] = EVENT_STREAM
    headers["cache-control"] = "no-store"
    return headers


def versions() -> dict[str, str]:
    """The ``versions`` field the server records for each session."""
    return {"@instantdb/admin": __version__, "@instantdb/core": __version__}


def open_failure(response: Response, secrets: Iterable[str]) -> InstantAPIError | None:
    """The error an SSE request's answer stands for, or None when events may be read.

    ``response`` needs only its status and headers, plus the body when not 2xx.
    """
    if not response.is_success:
        return api_error(response, secrets)
    content_type = response.headers.get("content-type", "")
    if not content_type.lower().startswith(EVENT_STREAM):
        return InstantAPIError(
            f"the server answered {response.status} with content-type {content_type or 'none'!r} "
            f"instead of an event stream ({EVENT_STREAM}). Is api_uri pointing at an Instant "
            "server?",
            status=response.status,
            body={"type": None, "message": f"unexpected content-type {content_type!r}"},
        )
    return None


def error_from_message(
    message: Mapping[str, Any], secrets: Iterable[str], *, default_message: str
) -> InstantAPIError:
    """An ``error`` op as an exception of the same class an HTTP answer would give.

    Its ``status`` is the message's (400 or 500), its ``body`` the whole message.
    """
    body = dict(message)
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        status = 500
    text = body.get("message")
    if not isinstance(text, str) or not text.strip():
        body["message"] = default_message
    return api_error(Response(status=status, content=json.dumps(body).encode()), secrets)
