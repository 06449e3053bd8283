"""Errors and warnings raised while turning query results into frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FrameError(ValueError):
    """A query result could not be turned into a frame; the message says what to change."""


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
