"""The one error the TypeScript subset reader raises, with where it happened."""

from __future__ import annotations


class SyntaxProblem(Exception):
    """Something in the file is outside the understood subset, at ``line``:``column``."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
