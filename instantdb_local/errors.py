"""Errors of the local server, in two families.

Every failure a client can cause is a `ServerError`: the ASGI layer turns it into
`{"type", "message", "hint"}` with the status code the real server uses for that type
(see ``server-semantics.md`` section 2). Engine code raises these and never builds HTTP
responses itself. The constructors below produce the exact message formats clients and
tests compare against, so prefer them to building a `ServerError` by hand.

Failures of the server itself, raised to the code that runs it (`LocalServer`,
`Instance.open`, the CLI), are `LocalServerError`s: a data directory another server
holds, project files that cannot be applied, a missing optional dependency. Their
message says what is wrong and what to do; the CLI prints it as one line.

This module imports only the standard library: the pytest plugin and the CLI use it
before the server's own dependencies are known to be installed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# What installs the local server's dependencies (Starlette, uvicorn, cel-python).
LOCAL_EXTRA_INSTALL = "pip install 'instantdb[local]'"

# Types the real server answers with 400. Everything else that is typed answers 500,
# except the two 429 types.
_BAD_REQUEST_TYPES = frozenset(
    {
        "record-not-found",
        "record-expired",
        "record-not-unique",
        "record-foreign-key-invalid",
        "record-check-violation",
        "sql-raise",
        "permission-denied",
        "permission-evaluation-failed",
        "parameter-limit-exceeded",
        "app-read-only",
        "app-disabled",
        "app-creation-disabled",
        "signups-closed",
        "billing-closed",
        "param-missing",
        "param-malformed",
        "validation-failed",
        "session-missing",
        "member-missing",
        "connection-closed",
    }
)
_TOO_MANY_REQUESTS_TYPES = frozenset({"rate-limited", "timeout"})


def status_for_type(error_type: str | None) -> int:
    """The HTTP status the real server uses for an error type."""
    if error_type in _BAD_REQUEST_TYPES:
        return 400
    if error_type in _TOO_MANY_REQUESTS_TYPES:
        return 429
    return 500


class ServerError(Exception):
    """A typed error that becomes a ``{"type", "message", "hint"}`` response."""

    def __init__(
        self,
        error_type: str | None,
        message: str,
        hint: Mapping[str, Any] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.type = error_type
        self.message = message
        self.hint: dict[str, Any] | None = dict(hint) if hint is not None else None
        self.status = status if status is not None else status_for_type(error_type)

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"type": self.type, "message": self.message, "hint": self.hint}

    def __repr__(self) -> str:
        return f"ServerError({self.status}, {self.type!r}, {self.message!r})"


def _clojure_vector(path: Sequence[Any]) -> str:
    # The real server prints parameter paths as a Clojure vector of strings:
    # ["headers" "authorization"]
    return "[" + " ".join(json.dumps(str(p)) for p in path) + "]"


def param_missing(
    path: Sequence[str], *, possible_ins: Sequence[Sequence[str]] | None = None
) -> ServerError:
    hint: dict[str, Any] = {"in": list(path)}
    if possible_ins:
        hint["possible-ins"] = [list(p) for p in possible_ins]
    return ServerError("param-missing", f"Missing parameter: {_clojure_vector(path)}", hint)


def param_malformed(path: Sequence[str], original_input: Any) -> ServerError:
    return ServerError(
        "param-malformed",
        f"Malformed parameter: {_clojure_vector(path)}",
        {"in": list(path), "original-input": original_input},
    )


def record_not_found(record_type: str, *, args: Sequence[Any] = (), **hint: Any) -> ServerError:
    return ServerError(
        "record-not-found",
        f"Record not found: {record_type}",
        {"args": list(args), "record-type": record_type, **hint},
    )


def invalid_admin_token() -> ServerError:
    return record_not_found(
        "app-admin-token",
        message=(
            "This admin token may be expired or invalid. "
            "Or you may have provided an incorrect app ID."
        ),
    )


def record_expired(record_type: str) -> ServerError:
    return ServerError(
        "record-expired", f"Record expired: {record_type}", {"record-type": record_type}
    )


def validation_failed(
    data_type: str,
    input: Any,
    errors: Sequence[Mapping[str, Any]] = (),
    *,
    message: str | None = None,
) -> ServerError:
    """``Validation failed for <data-type>: <msg1>, <msg2>`` with the standard hint.

    Pass ``message`` only where the real server's message does not follow that pattern.
    """
    error_list = [dict(e) for e in errors]
    if message is None:
        messages = [str(e["message"]) for e in error_list if e.get("message")]
        message = f"Validation failed for {data_type}"
        if messages:
            message += ": " + ", ".join(messages)
    return ServerError(
        "validation-failed",
        message,
        {"data-type": data_type, "input": input, "errors": error_list},
    )


def record_not_unique(etype: str, label: str, value: Any, *, attr_id: str) -> ServerError:
    rendered = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return ServerError(
        "record-not-unique",
        f"`{label}` is a unique attribute on `{etype}` and an entity already exists with "
        f"`{etype}.{label}` = {rendered}",
        {
            "record-type": "triple",
            "attr-id": attr_id,
            "etype": etype,
            "label": label,
            "value": value,
        },
    )


def permission_denied(input: Sequence[Any], expected: str = "perms-pass?") -> ServerError:
    return ServerError(
        "permission-denied",
        f"Permission denied: not {expected}",
        {"input": list(input), "expected": expected},
    )


def permission_evaluation_failed(
    etype: str, action: str, cause: str, error: Mapping[str, Any] | None = None
) -> ServerError:
    return ServerError(
        "permission-evaluation-failed",
        f"Could not evaluate permission rule for `{etype}.{action}`. {cause}. "
        "Debug this in the sandbox and then update your permission rules.",
        {"rule": [etype, action], "error": dict(error) if error else None},
    )


def rate_limited(message: str, **hint: Any) -> ServerError:
    return ServerError("rate-limited", message, hint or None)


def unsupported(feature: str) -> ServerError:
    """A feature the local server deliberately does not implement (never a fake success)."""
    return ServerError(
        "unsupported",
        f"{feature} is not supported by the local Instant server. "
        "See docs/local-server.md for what it implements.",
        {"feature": feature},
        status=501,
    )


def malformed_json() -> ServerError:
    # The real server answers a plain-text 400 here; the ASGI layer special-cases it.
    return ServerError(None, "Malformed JSON in request body.", None, status=400)


def route_not_found() -> ServerError:
    return ServerError(None, "Oops! We couldn't match this route.", None, status=404)


def body_too_large(limit: int) -> ServerError:
    return ServerError(
        "validation-failed",
        f"Request body is larger than the local server's limit of {limit} bytes.",
        {"data-type": "body", "limit": limit},
        status=413,
    )


def body_too_deep(limit: int) -> ServerError:
    return ServerError(
        "validation-failed",
        f"Request body is nested more than {limit} levels deep, the local server's limit. "
        "Flatten the data, or store a deep structure as a JSON string.",
        {"data-type": "body", "limit": limit},
    )


def unknown(message: str = "Something went wrong. Sorry about this!") -> ServerError:
    return ServerError("unknown", message, {"debug-uri": None}, status=500)


def sql_raise(message: str, **hint: Any) -> ServerError:
    """An error the real server raises from inside its SQL (e.g. merging into a link)."""
    return ServerError("sql-raise", message, hint or None)


def attr_id_not_unique(attr_id: str) -> ServerError:
    """An ``add-attr`` step whose id another attribute already has."""
    return ServerError(
        "record-not-unique",
        f"An attribute with id {attr_id} already exists.",
        {"record-type": "attr", "id": attr_id},
    )


def ident_not_unique(etype: str, label: str) -> ServerError:
    """An attribute whose ``etype.label`` already exists."""
    return ServerError(
        "record-not-unique",
        f"`{label}` already exists on `{etype}`",
        {"record-type": "ident", "etype": etype, "label": label},
    )


def number_out_of_range(literal: str) -> ServerError:
    """A JSON number no double can hold (``1e400``): valid JSON, but it would become an
    infinity that nothing downstream can store or answer with."""
    shown = literal if len(literal) <= 40 else f"{literal[:24]}... ({len(literal)} characters)"
    return ServerError(
        "validation-failed",
        f"Request body holds the number {shown}, which is out of range: JSON numbers must be "
        "finite doubles (at most about 1.8e308 in magnitude). Send a smaller number, or a "
        "string for a value that does not fit.",
        {"data-type": "body", "number": shown},
    )


def json_safe(value: Any) -> Any:
    """``value`` with whatever JSON cannot carry made into text: NaN and the infinities as
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, keys as strings, unknown objects as their
    ``str``. For error bodies, which must always encode, whatever they echo."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Mapping):
        return {_json_key(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return str(value)


def _json_key(key: Any) -> str | int | float | bool | None:
    if key is None or isinstance(key, (str, int, bool)):
        return key
    if isinstance(key, float):
        return key if math.isfinite(key) else str(json_safe(key))
    return str(key)


# -- errors raised to the code that runs the server -----------------------------------------


class LocalServerError(Exception):
    """Base class of the errors the local server raises to the code that runs it (not
    HTTP answers, which are `ServerError`)."""


class DataDirInUseError(LocalServerError):
    """Another server (another process, or another `LocalServer` in this one) has the
    data directory open."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        if pid == os.getpid():
            holder = f"another local Instant server in this process (pid {pid})"
        elif pid:
            holder = f"another local Instant server (pid {pid})"
        else:
            holder = "another local Instant server"
        super().__init__(
            f"The data directory {data_dir} is in use by {holder}. Stop that server first, "
            "or give this one another data directory (--data DIR, or LocalServer(data_dir=...)); "
            "two servers on one directory would each keep their own live state."
        )
        self.data_dir = data_dir
        self.pid = pid


class ProjectFileError(LocalServerError):
    """A project file (``instant.schema.*`` / ``instant.perms.*``) that cannot be applied
    at start. The server does not start without the rules it was given, so a typo never
    leaves the data open to everyone."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"{problem.rstrip('.')}. Fix the project file and start the server again; it "
            "does not start with schema or rules it could not apply."
        )
        self.problem = problem


class MissingExtraError(LocalServerError, ModuleNotFoundError):
    """An optional dependency of the local server is not installed. Still a
    `ModuleNotFoundError`, so ``except ImportError`` keeps working."""

    def __init__(self, what: str, module: str | None, *, alternative: str = "") -> None:
        super().__init__(missing_extra_message(what, module, alternative=alternative), name=module)


def missing_extra_message(what: str, module: str | None, *, alternative: str = "") -> str:
    """One line: what needs the missing module, and the install command that brings it."""
    # The distribution is named by its top-level package (starlette, not starlette.routing).
    missing = f"the {module.split('.')[0]!r} package" if module else "a package"
    message = (
        f"{what} needs the local server's dependencies, and {missing} is not installed: "
        f"{LOCAL_EXTRA_INSTALL}"
    )
    return f"{message}, {alternative}." if alternative else f"{message}."
