"""Reading answers: successful JSON bodies, and errors built from failed ones."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from instantdb._errors import (
    InstantAPIError,
    InstantPermissionError,
    InstantQueryTimeoutError,
    InstantRateLimitError,
    InstantServerError,
    InstantValidationError,
)

from ._call import Request, Response

__all__ = ["api_error", "json_body", "json_object", "redact"]

REDACTED = "<redacted>"

_PERMISSION_TYPES = frozenset({"permission-denied", "permission-evaluation-failed"})
_VALIDATION_TYPES = frozenset({"validation-failed", "param-missing", "param-malformed"})


def json_body(response: Response, request: Request) -> Any:
    """The parsed JSON of a successful answer; an `InstantAPIError` if there is none."""
    if not response.content.strip():
        raise InstantAPIError(
            f"{request.method} {request.target} answered {response.status} with an empty body, "
            "where JSON was expected. Is api_uri pointing at an Instant server?",
            status=response.status,
            body=None,
        )
    try:
        return json.loads(response.content)
    except RecursionError:
        # Python's parser recurses per level; no Instant answer comes near its limit.
        raise InstantAPIError(
            f"{request.method} {request.target} answered {response.status} with JSON nested "
            "too deeply to read. Is api_uri pointing at an Instant server?",
            status=response.status,
            body=None,
        ) from None
    except ValueError:
        # Whatever answered may be repeating the request back: scrub the tokens.
        text = redact(response.text, request.secrets)
        raise InstantAPIError(
            f"{request.method} {request.target} answered {response.status} with a body that is "
            f"not JSON ({_snippet(text)!r}). Is api_uri pointing at an Instant server?",
            status=response.status,
            body={"type": None, "message": text},
        ) from None


def json_object(response: Response, request: Request) -> dict[str, Any]:
    """Like `json_body`, and the body must be a JSON object."""
    body = json_body(response, request)
    if not isinstance(body, dict):
        body = redact(body, request.secrets)
        raise InstantAPIError(
            f"{request.method} {request.target} answered with JSON that is not an object "
            f"({_snippet(json.dumps(body))!r})",
            status=response.status,
            body=body,
        )
    return body


def api_error(response: Response, secrets: Iterable[str] = ()) -> InstantAPIError:
    """The error for a non-2xx answer, of the most specific class that applies.

    The message is the body's ``message``, else the raw body text, else
    ``API Error (<status>)``. ``secrets`` are scrubbed from message and body, in case
    the server echoes a token back.
    """
    text = response.text
    try:
        body: Any = json.loads(response.content) if response.content.strip() else None
    except (ValueError, RecursionError):
        body = None
    if body is None:
        body = {"type": None, "message": text}
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        message = text.strip() or _fallback_message(response)
    secrets = tuple(secret for secret in secrets if secret)
    message, body = redact(message, secrets), redact(body, secrets)
    status = response.status
    kind = body.get("type") if isinstance(body, dict) else None
    if status == 429 and kind == "timeout":
        return InstantQueryTimeoutError(message, status=status, body=body)
    if status == 429:
        retry_after = _retry_after(body, response.headers)
        return InstantRateLimitError(message, status=status, body=body, retry_after=retry_after)
    if status >= 500:
        return InstantServerError(message, status=status, body=body)
    if kind in _PERMISSION_TYPES:
        return InstantPermissionError(message, status=status, body=body)
    if kind in _VALIDATION_TYPES:
        return InstantValidationError(message, status=status, body=body)
    return InstantAPIError(message, status=status, body=body)


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every occurrence of each secret replaced, recursively."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {redact(key, secrets): redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    return value


def _fallback_message(response: Response) -> str:
    if 300 <= response.status < 400:
        location = response.headers.get("location")
        where = f" to {location}" if location else ""
        return (
            f"API Error ({response.status}): the server redirected{where}; requests are not "
            "followed across redirects, so set api_uri to the final address"
        )
    return f"API Error ({response.status})"


def _retry_after(body: Any, headers: Any) -> float | None:
    """Seconds to wait: the error hint's ``retry-after``, else an HTTP ``Retry-After``.

    Only the delta-seconds form of the header is read; an HTTP date is ignored (the
    policy's own backoff applies then).
    """
    hint = body.get("hint") if isinstance(body, dict) else None
    if isinstance(hint, dict):
        seconds = _seconds(hint.get("retry-after"))
        if seconds is not None:
            return seconds
    return _seconds(headers.get("retry-after"))


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _snippet(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
