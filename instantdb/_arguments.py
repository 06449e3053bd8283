"""Checks of simple arguments, shared so that every method words its errors alike."""

from __future__ import annotations

from ._errors import InstantTypeError, InstantValueError

__all__ = ["header_text", "required_text", "short_repr"]


def required_text(value: object, what: str, *, strip: bool = True) -> str:
    """``value`` as a non-empty str (stripped unless ``strip=False``), else a clear error.

    ``what`` names the argument as the user wrote it, e.g. ``"get_user(): email"``.
    """
    if not isinstance(value, str):
        raise InstantTypeError(f"{what} must be a str, got {type(value).__name__}")
    text = value.strip() if strip else value
    if not text.strip():
        raise InstantValueError(f"{what} must not be empty")
    return text


def header_text(value: str, what: str, *, secret: bool = False) -> str:
    """``value`` if it can travel as an HTTP header value (printable ASCII), else a clear
    error, raised before any request is built. A ``secret`` is never shown."""
    if value.isascii() and value.isprintable():
        return value
    shown = "" if secret else f", got {short_repr(value)}"
    raise InstantValueError(
        f"{what} is sent as an HTTP header, so it must be printable ASCII "
        f"(no accents, control characters or line breaks){shown}"
    )


def short_repr(value: object, limit: int = 80) -> str:
    """A repr for error messages, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
