"""Compile-time checks: names, fields and calls that can never succeed.

The real server type-checks rules with cel-java before saving them. Its variables are
all ``map(string, dyn)``, so most mistakes only show at run time; what it does catch is
an unknown name, an unknown function, a field that a message type does not have
(``request.foo``) and an operator applied to types that are known not to fit
(``'a' + 1``). This pass catches the same things, with cel-java's wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from instantdb_local._cel import _ast as ast
from instantdb_local._cel._errors import CelCompileError
from instantdb_local._cel._functions import (
    GLOBAL_FUNCTIONS,
    MEMBER_FUNCTIONS,
    TYPE_IDENTIFIERS,
    Signature,
)

DYN = "dyn"
# The type of an expression that already produced an issue: anything built on it is
# accepted silently, so one mistake is reported once.
ERROR = "error"
_NUMERIC = frozenset({"int", "uint", "double"})
_ORDERED = frozenset({"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"})

_OPERATORS: dict[str, tuple[Signature, ...]] = {
    "_+_": (
        (("int", "int"), "int"),
        (("uint", "uint"), "uint"),
        (("double", "double"), "double"),
        (("string", "string"), "string"),
        (("bytes", "bytes"), "bytes"),
        (("list", "list"), "list"),
        (("timestamp", "duration"), "timestamp"),
        (("duration", "timestamp"), "timestamp"),
        (("duration", "duration"), "duration"),
    ),
    "_-_": (
        (("int", "int"), "int"),
        (("uint", "uint"), "uint"),
        (("double", "double"), "double"),
        (("timestamp", "timestamp"), "duration"),
        (("timestamp", "duration"), "timestamp"),
        (("duration", "duration"), "duration"),
    ),
    "_*_": ((("int", "int"), "int"), (("uint", "uint"), "uint"), (("double", "double"), "double")),
    "_/_": ((("int", "int"), "int"), (("uint", "uint"), "uint"), (("double", "double"), "double")),
    "_%_": ((("int", "int"), "int"), (("uint", "uint"), "uint")),
    "-_": ((("int",), "int"), (("double",), "double")),
    "!_": ((("bool",), "bool"),),
    "_in_": (((DYN, "list"), "bool"), ((DYN, "map"), "bool")),
}


@dataclass(frozen=True)
class Declarations:
    """What an expression may refer to, besides the built-in functions.

    ``variables`` maps each variable to its type (``map`` for Instant's data maps).
    ``message_fields`` lists the fields of variables that are messages: selecting any
    other field is an error. ``member_hooks`` are methods the host implements (Instant's
    ``ref``). ``forbidden`` names get a specific message instead of "undeclared".
    """

    variables: Mapping[str, str]
    message_fields: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    member_hooks: Mapping[str, tuple[Signature, ...]] = field(default_factory=dict)
    forbidden: Mapping[str, str] = field(default_factory=dict)


def check(node: ast.Node, declarations: Declarations) -> list[CelCompileError]:
    """Every problem found, in source order; empty if the expression is valid."""
    checker = _Checker(declarations)
    checker.infer(node, {})
    return sorted(checker.issues, key=lambda issue: (issue.line, issue.column))


def _format_args(types: list[str], *, member: bool) -> str:
    if member:
        return f"{types[0]}.({', '.join(types[1:])})"
    return f"({', '.join(types)})"


class _Checker:
    def __init__(self, declarations: Declarations) -> None:
        self.declarations = declarations
        self.issues: list[CelCompileError] = []

    def error(self, message: str, node: ast.Node) -> str:
        self.issues.append(CelCompileError(message, node.pos))
        return ERROR

    def infer(self, node: ast.Node, scope: dict[str, str]) -> str:
        method = getattr(self, "_" + type(node).__name__.lower())
        result: str = method(node, scope)
        return result

    # -- leaves -----------------------------------------------------------------------

    def _literal(self, node: ast.Literal, scope: dict[str, str]) -> str:
        return node.type_name

    def _ident(self, node: ast.Ident, scope: dict[str, str]) -> str:
        if node.name in scope:
            return scope[node.name]
        declared = self.declarations.variables.get(node.name)
        if declared is not None:
            return declared
        if node.name in TYPE_IDENTIFIERS:
            return "type"
        forbidden = self.declarations.forbidden.get(node.name)
        if forbidden is not None:
            return self.error(forbidden, node)
        return self.error(f"undeclared reference to '{node.name}' (in container '')", node)

    # -- selection --------------------------------------------------------------------------

    def _message_fields(self, operand: ast.Node, scope: dict[str, str]) -> Mapping[str, str] | None:
        if isinstance(operand, ast.Ident) and operand.name not in scope:
            return self.declarations.message_fields.get(operand.name)
        return None

    def _select(self, node: ast.Select, scope: dict[str, str]) -> str:
        operand_type = self.infer(node.operand, scope)
        if operand_type == ERROR:
            return ERROR
        fields = self._message_fields(node.operand, scope)
        if fields is not None:
            if node.field not in fields:
                return self.error(f"undefined field '{node.field}'", node)
            return fields[node.field]
        if operand_type not in ("map", DYN):
            return self.error(f"type '{operand_type}' does not support field selection", node)
        return DYN

    def _has(self, node: ast.Has, scope: dict[str, str]) -> str:
        self._select(ast.Select(node.operand, node.field, node.pos), scope)
        return "bool"

    def _index(self, node: ast.Index, scope: dict[str, str]) -> str:
        operand_type = self.infer(node.operand, scope)
        index_type = self.infer(node.index, scope)
        if ERROR in (operand_type, index_type):
            return ERROR
        if operand_type == "list" and index_type not in ("int", "uint", DYN):
            return self.error(
                f"found no matching overload for '_[_]' applied to '(list, {index_type})'", node
            )
        if operand_type not in ("list", "map", DYN):
            types = f"({operand_type}, {index_type})"
            return self.error(f"found no matching overload for '_[_]' applied to '{types}'", node)
        return DYN

    # -- calls ------------------------------------------------------------------------------------

    def _call(self, node: ast.Call, scope: dict[str, str]) -> str:
        arg_types = [self.infer(arg, scope) for arg in node.args]
        if node.target is not None:
            target_type = self.infer(node.target, scope)
            if ERROR in (target_type, *arg_types):
                return ERROR
            function = MEMBER_FUNCTIONS.get(node.function)
            if function is not None:
                signatures = function.signatures
            elif node.function in self.declarations.member_hooks:
                signatures = self.declarations.member_hooks[node.function]
            else:
                return self.error(
                    f"undeclared reference to '{node.function}' (in container '')", node
                )
            return self._match(node, signatures, [target_type, *arg_types], member=True)
        if ERROR in arg_types:
            return ERROR
        if node.function in ("_==_", "_!=_"):
            return self._equality(node, arg_types)
        if node.function in ("_<_", "_<=_", "_>_", "_>=_"):
            return self._ordering(node, arg_types)
        if node.function in _OPERATORS:
            return self._match(node, _OPERATORS[node.function], arg_types, member=False)
        global_function = GLOBAL_FUNCTIONS.get(node.function)
        if global_function is None:
            return self.error(f"undeclared reference to '{node.function}' (in container '')", node)
        if global_function.variadic:
            return self._variadic(node, arg_types)
        return self._match(node, global_function.signatures, arg_types, member=False)

    def _no_overload(self, node: ast.Call, types: list[str], *, member: bool) -> str:
        rendered = _format_args(types, member=member)
        return self.error(
            f"found no matching overload for '{node.function}' applied to '{rendered}'", node
        )

    def _match(
        self,
        node: ast.Call,
        signatures: tuple[Signature, ...],
        types: list[str],
        *,
        member: bool,
    ) -> str:
        results = {
            result
            for params, result in signatures
            if len(params) == len(types)
            and all(DYN in (p, t) or p == t for p, t in zip(params, types, strict=True))
        }
        if not results:
            return self._no_overload(node, types, member=member)
        return results.pop() if len(results) == 1 else DYN

    def _equality(self, node: ast.Call, types: list[str]) -> str:
        left, right = types
        comparable = (
            DYN in types
            or "null" in types
            or left == right
            or (left in _NUMERIC and right in _NUMERIC)
        )
        if not comparable:
            return self._no_overload(node, types, member=False)
        return "bool"

    def _ordering(self, node: ast.Call, types: list[str]) -> str:
        left, right = types
        if DYN in types:
            known = [t for t in types if t != DYN]
            if known and known[0] not in _ORDERED:
                return self._no_overload(node, types, member=False)
            return "bool"
        if (left == right and left in _ORDERED) or (left in _NUMERIC and right in _NUMERIC):
            return "bool"
        return self._no_overload(node, types, member=False)

    def _variadic(self, node: ast.Call, types: list[str]) -> str:
        if not types:
            return self._no_overload(node, types, member=False)
        allowed = {DYN, *_NUMERIC} | ({"list"} if len(types) == 1 else set())
        if any(t not in allowed for t in types):
            return self._no_overload(node, types, member=False)
        return DYN

    # -- composites --------------------------------------------------------------------------

    def _listexpr(self, node: ast.ListExpr, scope: dict[str, str]) -> str:
        for item in node.items:
            self.infer(item, scope)
        return "list"

    def _mapexpr(self, node: ast.MapExpr, scope: dict[str, str]) -> str:
        for key, value in node.entries:
            key_type = self.infer(key, scope)
            if key_type not in ("int", "uint", "bool", "string", DYN, ERROR):
                self.error(f"unsupported map key type: {key_type}", key)
            self.infer(value, scope)
        return "map"

    def _conditional(self, node: ast.Conditional, scope: dict[str, str]) -> str:
        condition = self.infer(node.condition, scope)
        if_true = self.infer(node.if_true, scope)
        if_false = self.infer(node.if_false, scope)
        if condition not in ("bool", DYN, ERROR):
            return self.error(
                f"found no matching overload for '_?_:_' applied to "
                f"'({condition}, {if_true}, {if_false})'",
                node,
            )
        return if_true if if_true == if_false else DYN

    def _logical(self, node: ast.Logical, scope: dict[str, str]) -> str:
        left = self.infer(node.left, scope)
        right = self.infer(node.right, scope)
        if ERROR in (left, right):
            return "bool"
        if left not in ("bool", DYN) or right not in ("bool", DYN):
            name = "_&&_" if node.operator == "&&" else "_||_"
            return self.error(
                f"found no matching overload for '{name}' applied to '({left}, {right})'", node
            )
        return "bool"

    def _comprehension(self, node: ast.Comprehension, scope: dict[str, str]) -> str:
        target = self.infer(node.target, scope)
        if target not in ("list", "map", DYN, ERROR):
            self.error(f"expression of type '{target}' cannot be range of a comprehension", node)
        inner = {**scope, node.variable: DYN}
        if node.predicate is not None:
            predicate = self.infer(node.predicate, inner)
            if predicate not in ("bool", DYN, ERROR):
                self.error(f"{node.kind}() predicate must be a bool, not {predicate}", node)
        if node.transform is not None:
            self.infer(node.transform, inner)
        return "bool" if node.kind in ("all", "exists", "exists_one") else "list"

    def _bind(self, node: ast.Bind, scope: dict[str, str]) -> str:
        value = self.infer(node.value, scope)
        return self.infer(node.body, {**scope, node.variable: value})
