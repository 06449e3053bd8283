"""Server-sent events: bytes off the wire -> events -> protocol messages. No I/O.

The server frames every event as one ``data:`` line holding compact JSON; a ``retry:``
line carries its reconnect hint and a bare ``:`` line is a keep-alive comment. The
decoder follows the SSE rules that matter for that (``\\n`` and ``\\r\\n`` line ends,
an optional space after the colon, multi-line data joined with ``\\n``, comments
ignored), keeps partial lines across network chunks, and never loses bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from instantdb._errors import InstantError

__all__ = ["SSEDecoder", "SSEEvent", "SSEProtocolError", "messages_of"]


class SSEProtocolError(InstantError):
    """The event stream carried something that is not an Instant message.

    Terminal: a server that does not speak the protocol will not start to on a retry.
    """


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its ``data`` (may be empty) and the last ``retry`` hint."""

    data: str
    retry_ms: int | None = None


class SSEDecoder:
    """Incremental decoder: `feed` network chunks, get whole events back."""

    def __init__(self) -> None:
        self._partial = b""
        self._data: list[str] = []
        self._has_data = False
        self._retry_ms: int | None = None
        self._first_line = True

    @property
    def retry_ms(self) -> int | None:
        """The server's last ``retry:`` hint, in milliseconds."""
        return self._retry_ms

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk`` (a partial line waits for the next chunk)."""
        buffer = self._partial + chunk
        lines = buffer.split(b"\n")
        self._partial = lines.pop()
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw.removesuffix(b"\r"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if self._first_line:
            self._first_line = False
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if not raw:
            return self._dispatch()
        if raw.startswith(b":"):
            return None  # a comment: the server's keep-alive
        name, _, value = raw.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            try:
                self._data.append(value.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise SSEProtocolError(f"an event's data is not UTF-8 text ({exc})") from None
            self._has_data = True
        elif name == b"retry" and value.isdigit():
            self._retry_ms = int(value)
        return None  # `event:` and `id:` carry nothing Instant uses

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_data:
            return None
        event = SSEEvent("\n".join(self._data), self._retry_ms)
        self._data = []
        self._has_data = False
        return event


def messages_of(event: SSEEvent) -> list[dict[str, Any]]:
    """The protocol messages in one event: a JSON object, or an array of objects."""
    try:
        value = json.loads(event.data)
    except ValueError:
        raise SSEProtocolError(
            f"an event's data is not JSON: {_snippet(event.data)!r}. Is api_uri pointing at "
            "an Instant server?"
        ) from None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise SSEProtocolError(
            f"an event carried JSON that is not a message object: {_snippet(event.data)!r}"
        )
    return items


def _snippet(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
