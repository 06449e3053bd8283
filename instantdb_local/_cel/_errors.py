"""The two ways a CEL expression fails: at compile time or while evaluating."""

from __future__ import annotations


class CelCompileError(Exception):
    """The expression is not valid: syntax, an unknown name, or a type that cannot fit.

    ``message`` is phrased like cel-java's issues (``undeclared reference to 'x' (in
    container '')``) because users compare it with what the real server says.
    """

    def __init__(self, message: str, position: tuple[int, int] = (1, 1)) -> None:
        super().__init__(message)
        self.message = message
        self.line, self.column = position


class CelEvaluationError(Exception):
    """A runtime failure; ``code`` is the cel-java error code the real server reports."""

    def __init__(self, message: str, code: str = "NO_MATCHING_OVERLOAD") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def no_overload(function: str, *args: object) -> CelEvaluationError:
    from instantdb_local._cel._values import type_name

    types = ", ".join(type_name(arg) for arg in args)
    return CelEvaluationError(f"no matching overload for '{function}' applied to '({types})'")
