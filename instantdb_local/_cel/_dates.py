"""Date strings Instant accepts, read into `Timestamp`s.

The real server parses dates with a list of formats. We accept the ones an Instant app
meets in practice:

- ISO 8601 / RFC 3339: ``2025-01-02``, ``2025-01-02T03:04``, ``2025-01-02T03:04:05``,
  with optional fractional seconds (up to nanoseconds), ``T``/``t``/space between date
  and time, and an optional zone ``Z``, ``+01:00``, ``+0100`` or ``+01``. No zone means UTC.
- RFC 1123 / RFC 2822 (``Thu, 02 Jan 2025 03:04:05 GMT``), as sent in HTTP headers.
- JavaScript's ``Date.prototype.toString()`` (``Thu Jan 02 2025 03:04:05 GMT+0000
  (Coordinated Universal Time)``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

from instantdb_local._cel._values import Timestamp

_ISO = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:
        [Tt\ ]
        (?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
    )?
    \s*
    (?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?
    """,
    re.VERBOSE,
)

_JS_DATE = re.compile(
    r"""
    [A-Za-z]{3}\s+(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+(?P<year>\d{4})\s+
    (?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})\s+
    GMT(?P<zone>[+-]\d{4})
    (?:\s+\(.*\))?
    """,
    re.VERBOSE,
)
_MONTHS = {
    name: index
    for index, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}


def parse_date(text: str) -> Timestamp | None:
    """The instant a date string names, or None if no accepted format matches."""
    text = text.strip()
    return _parse_iso(text) or _parse_js(text) or _parse_rfc2822(text)


def _zone(text: str | None) -> dt.timezone:
    if not text or text in ("Z", "z"):
        return dt.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) > 2 else 0
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _parse_iso(text: str) -> Timestamp | None:
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    parts = match.groupdict()
    fraction = parts["fraction"] or ""
    try:
        moment = dt.datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            tzinfo=_zone(parts["zone"]),
        )
    except ValueError:
        return None
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    base = Timestamp.from_datetime(moment)
    return Timestamp.checked(base.nanos + nanos)


def _parse_js(text: str) -> Timestamp | None:
    match = _JS_DATE.fullmatch(text)
    if match is None:
        return None
    month = _MONTHS.get(match["month"].lower())
    if month is None:
        return None
    try:
        moment = dt.datetime(
            int(match["year"]),
            month,
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            tzinfo=_zone(match["zone"]),
        )
    except ValueError:
        return None
    return Timestamp.from_datetime(moment)


def _parse_rfc2822(text: str) -> Timestamp | None:
    if "," not in text and not text[:1].isdigit():
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return Timestamp.from_datetime(moment)
