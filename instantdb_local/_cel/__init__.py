"""A small CEL engine: celpy's parser, our own checker and closure compiler.

Used by `instantdb_local.perms` for Instant's permission rules. The public surface:

- `parse(text)` -> tree, or `CelCompileError` for syntax errors.
- `Expression.compile(tree, declarations)` -> a checked, compiled expression, or
  `CelCompileError` (its ``issues`` list every problem found).
- `Expression.evaluate(env)` -> the raw CEL value, or `CelEvaluationError`. ``env`` maps
  every declared variable to its value; member hooks (``ref``) are callables stored
  under ``HOOK_PREFIX + name``. An exception raised by a hook propagates unchanged.
- `to_plain(value)` turns a result into JSON-ready Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from instantdb_local._cel._ast import Node, identifiers
from instantdb_local._cel._checker import Declarations, check
from instantdb_local._cel._compiler import HOOK_PREFIX, Evaluator, HostError, compile_tree
from instantdb_local._cel._dates import parse_date
from instantdb_local._cel._errors import CelCompileError, CelEvaluationError
from instantdb_local._cel._parser import parse
from instantdb_local._cel._values import Duration, Timestamp, to_plain

__all__ = [
    "HOOK_PREFIX",
    "CelCompileError",
    "CelEvaluationError",
    "Declarations",
    "Duration",
    "Expression",
    "Node",
    "Timestamp",
    "identifiers",
    "parse",
    "parse_date",
    "to_plain",
]

# Python errors that can only come from evaluating odd values (never from the host,
# whose exceptions arrive wrapped in HostError).
_EVALUATION_FAILURES = (
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    AttributeError,
    RecursionError,
)


@dataclass(frozen=True)
class Expression:
    """A checked, compiled CEL expression; safe to evaluate from many threads."""

    tree: Node
    free_variables: frozenset[str]
    _evaluator: Evaluator = field(repr=False, compare=False)

    @classmethod
    def compile(cls, tree: Node, declarations: Declarations) -> Expression:
        issues = check(tree, declarations)
        if issues:
            first = issues[0]
            error = CelCompileError(first.message, (first.line, first.column))
            error.issues = issues  # type: ignore[attr-defined]
            raise error
        variables = frozenset(declarations.variables)
        free = frozenset(identifiers(tree) & variables)
        try:
            evaluator = compile_tree(tree, variables)
        except RecursionError:
            raise CelCompileError("the expression is nested too deeply") from None
        return cls(tree, free, evaluator)

    def evaluate(self, env: dict[str, Any]) -> Any:
        try:
            return self._evaluator(env)
        except CelEvaluationError:
            raise
        except HostError as exc:
            raise exc.original from None
        except _EVALUATION_FAILURES as exc:
            raise CelEvaluationError(f"evaluation failed: {exc}", "INTERNAL_ERROR") from exc
