"""Reading what the caller passed: a query result or a subscription payload.

A query result is ``{namespace: [entity, ...]}``. A subscription yields
``{"type": "ok", "data": <result>, "page_info": ..., "session_info": ...}`` or
``{"type": "error", "error": ..., ...}``. A result never has a string under ``"type"``
(its values are lists), so the two cannot be confused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ErrorPayloadError, FrameError, NamespaceError


@dataclass(frozen=True)
class Unwrapped:
    """The result tree inside whatever was passed, and what came with it."""

    tree: Mapping[str, Any]
    page_info: Mapping[str, Any] | None
    payload: Mapping[str, Any]


def unwrap(result: object) -> Unwrapped:
    """The result tree of a query result or an ``ok`` subscription payload.

    Raises ``ErrorPayloadError`` for an error payload and ``FrameError`` for anything
    that is neither.
    """
    if not isinstance(result, Mapping):
        raise FrameError(
            f"expected a query result ({{namespace: [entities]}}) or a subscription payload, "
            f"got {type(result).__name__}"
        )
    kind = result.get("type")
    if not isinstance(kind, str):
        return Unwrapped(tree=result, page_info=None, payload=result)
    if kind == "error":
        raise _error_payload(result)
    if kind != "ok":
        raise FrameError(
            f"this subscription payload has type {kind!r}; only 'ok' payloads hold data"
        )
    data = result.get("data")
    if not isinstance(data, Mapping):
        raise FrameError(
            "this 'ok' subscription payload has no result under 'data' "
            f"(found {type(data).__name__})"
        )
    page_info = result.get("page_info")
    return Unwrapped(
        tree=data,
        page_info=page_info if isinstance(page_info, Mapping) else None,
        payload=result,
    )


def _error_payload(payload: Mapping[str, Any]) -> ErrorPayloadError:
    error = payload.get("error")
    if isinstance(error, Mapping):
        detail = str(error.get("message") or error.get("type") or "no message")
    elif error is not None:
        detail = str(error) or type(error).__name__
    else:
        detail = "no error details"
    exc = ErrorPayloadError(
        f"the subscription reported an error, so there is no data to convert: {detail}. "
        "Check payload['type'] == 'ok' before converting.",
        payload,
    )
    if isinstance(error, BaseException):
        exc.__cause__ = error
    return exc


def pick_namespace(tree: Mapping[str, Any], namespace: str | None) -> str:
    """The namespace to convert: the one asked for, or the only one there is."""
    names = list(tree)
    if namespace is None:
        if len(names) == 1:
            return str(names[0])
        if not names:
            raise NamespaceError("the result holds no namespaces, so there is nothing to convert")
        raise NamespaceError(
            f"the result holds several namespaces ({_listing(names)}); pass "
            f"namespace={names[0]!r} (or another) to pick one, or use to_dataframes(result) "
            "for one frame per namespace"
        )
    if not isinstance(namespace, str):
        raise NamespaceError(f"namespace must be a string, got {type(namespace).__name__}")
    if namespace not in tree:
        raise NamespaceError(
            f"the result has no namespace {namespace!r}; it holds {_listing(names) or 'none'}"
        )
    return namespace


def entities(tree: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The entities of a top-level namespace, checked to be a list of objects."""
    rows = tree[namespace]
    if not isinstance(rows, list):
        raise FrameError(
            f"result[{namespace!r}] should be a list of entities, got {type(rows).__name__}"
        )
    return as_entities(rows, namespace)


def as_entities(rows: list[Any], where: str) -> list[dict[str, Any]]:
    """The items as dicts (what JSON decoding gives), or ``FrameError`` naming a non-object."""
    if set(map(type, rows)) <= {dict}:
        return rows
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise FrameError(
                f"{where}[{position}] should be an entity object, got {type(row).__name__}: "
                f"{_preview(row)}"
            )
    return [row if type(row) is dict else dict(row) for row in rows]


def _listing(names: list[Any]) -> str:
    return ", ".join(repr(name) for name in names)


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
