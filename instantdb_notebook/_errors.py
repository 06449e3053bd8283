"""Errors and warnings raised while turning query results into frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from instantdb import InstantValueError


class FrameError(InstantValueError):
    """A query result could not be turned into a frame; the message says what to change."""


class ColumnNameClashError(FrameError):
    """Two columns would get the same name; another ``keyword`` (e.g. ``sep``) avoids it.

    ``problem`` says which names clash and ``example`` is a value of ``keyword`` to try,
    so a caller other than Python (the ``%instant`` magic) can word its own remedy.
    """

    def __init__(self, problem: str, *, keyword: str, example: str) -> None:
        super().__init__(f"{problem}; pass another {keyword}=, e.g. {keyword}={example!r}")
        self.problem = problem
        self.keyword = keyword
        self.example = example

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_clash, (self.problem, self.keyword, self.example))


def _rebuild_clash(problem: str, keyword: str, example: str) -> ColumnNameClashError:
    return ColumnNameClashError(problem, keyword=keyword, example=example)


class NamespaceError(FrameError):
    """The namespace to convert is missing, unknown or ambiguous."""


class ErrorPayloadError(FrameError):
    """A subscription payload of ``type: "error"`` was given where data was expected.

    ``payload`` is the payload itself; when it carries an exception under ``"error"``,
    that exception is chained as ``__cause__``.
    """

    def __init__(self, message: str, payload: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.payload = payload


class SchemaMismatchWarning(UserWarning):
    """A column's values do not fit the type the schema declares for it.

    The column is then typed as if there were no schema (which may mean ``object``),
    so no value is lost; the warning names the column and an offending value.
    """
