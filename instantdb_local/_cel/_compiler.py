"""Checked expression trees -> Python closures.

Each node becomes a function of the *environment*, a dict from variable name to value
(macro and ``cel.bind`` variables are set in the same dict for the duration of their
scope; the checker has already resolved every name). Building closures once and calling
them per entity is what makes per-row rule checks cheap: a typical rule evaluates in a
few microseconds.

Errors follow CEL: a failing operand of ``&&``/``||`` is absorbed when the other side
decides the result, and ``all``/``exists`` absorb errors the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from instantdb_local._cel import _ast as ast
from instantdb_local._cel._errors import CelEvaluationError, no_overload
from instantdb_local._cel._functions import GLOBAL_FUNCTIONS, MEMBER_FUNCTIONS, TYPE_IDENTIFIERS
from instantdb_local._cel._values import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    Duration,
    StrictMap,
    Timestamp,
    UInt,
    equals,
    from_host,
    is_list,
    type_name,
)

Env = dict[str, Any]
Evaluator = Callable[[Env], Any]

# Key under which the host puts the callables behind its member hooks (``ref``).
HOOK_PREFIX = "$hook:"

_MISSING = object()
# Types equal exactly when Python says so (bool vs int is excluded by the type check).
_SIMPLE = frozenset({str, int, bool, float, type(None)})
_NATIVE = frozenset({type(None), bool, int, float, str, list, dict, UInt, StrictMap})


class HostError(Exception):
    """Wraps an exception raised by a host hook so it passes through CEL error handling."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def compile_tree(node: ast.Node, variables: frozenset[str]) -> Evaluator:
    return _Compiler(variables).compile(node, frozenset())


class _Compiler:
    def __init__(self, variables: frozenset[str]) -> None:
        self.variables = variables

    def compile(self, node: ast.Node, scope: frozenset[str]) -> Evaluator:
        method = getattr(self, "_" + type(node).__name__.lower())
        result: Evaluator = method(node, scope)
        return result

    # -- leaves ---------------------------------------------------------------------------

    def _literal(self, node: ast.Literal, scope: frozenset[str]) -> Evaluator:
        value = UInt(node.value) if node.type_name == "uint" else node.value  # type: ignore[call-overload]
        return lambda env: value

    def _ident(self, node: ast.Ident, scope: frozenset[str]) -> Evaluator:
        name = node.name
        if name not in scope and name not in self.variables and name in TYPE_IDENTIFIERS:
            type_value = TYPE_IDENTIFIERS[name]
            return lambda env: type_value
        return lambda env: env[name]

    # -- selection ------------------------------------------------------------------------

    def _select(self, node: ast.Select, scope: frozenset[str]) -> Evaluator:
        operand = self.compile(node.operand, scope)
        field = node.field

        def select(env: Env) -> Any:
            container = operand(env)
            if type(container) is dict:  # host data: a missing key reads as null
                value = container.get(field)
                return value if type(value) in _NATIVE else from_host(value)
            return _select_slow(container, field)

        return select

    def _has(self, node: ast.Has, scope: frozenset[str]) -> Evaluator:
        operand = self.compile(node.operand, scope)
        field = node.field

        def has(env: Env) -> bool:
            container = operand(env)
            if type(container) is StrictMap:
                return field in container
            if isinstance(container, Mapping):
                # Instant's maps claim every key exists, so has() is always true on them.
                return True
            raise CelEvaluationError(
                f"has() needs a map, not {type_name(container)}", "NO_MATCHING_OVERLOAD"
            )

        return has

    def _index(self, node: ast.Index, scope: frozenset[str]) -> Evaluator:
        operand = self.compile(node.operand, scope)
        index = self.compile(node.index, scope)
        return lambda env: _index(operand(env), index(env))

    # -- calls ----------------------------------------------------------------------------

    def _call(self, node: ast.Call, scope: frozenset[str]) -> Evaluator:
        args = [self.compile(arg, scope) for arg in node.args]
        if node.target is not None:
            return self._method(node, self.compile(node.target, scope), args)
        operator = _BINARY.get(node.function)
        if operator is not None:
            return _binary(node.function, operator, args[0], args[1])
        if node.function == "_==_":
            return _equality(args[0], args[1], negate=False)
        if node.function == "_!=_":
            return _equality(args[0], args[1], negate=True)
        if node.function == "!_":
            operand = args[0]
            return lambda env: _not(operand(env))
        if node.function == "-_":
            operand = args[0]
            return lambda env: _negate(operand(env))
        impl = GLOBAL_FUNCTIONS[node.function].impl
        return _apply(impl, args)

    def _method(self, node: ast.Call, target: Evaluator, args: list[Evaluator]) -> Evaluator:
        function = MEMBER_FUNCTIONS.get(node.function)
        if function is not None:
            impl = function.impl
            if not args:
                return lambda env: impl(target(env))
            if len(args) == 1:
                (first,) = args
                return lambda env: impl(target(env), first(env))
            return lambda env: impl(target(env), *[arg(env) for arg in args])
        hook_key = HOOK_PREFIX + node.function

        def call_hook(env: Env) -> Any:
            receiver = target(env)
            values = [arg(env) for arg in args]
            hook = env[hook_key]
            try:
                return hook(receiver, *values)
            except CelEvaluationError:
                raise
            except Exception as exc:
                raise HostError(exc) from exc

        return call_hook

    # -- composites -----------------------------------------------------------------------

    def _listexpr(self, node: ast.ListExpr, scope: frozenset[str]) -> Evaluator:
        items = [self.compile(item, scope) for item in node.items]
        return lambda env: [item(env) for item in items]

    def _mapexpr(self, node: ast.MapExpr, scope: frozenset[str]) -> Evaluator:
        entries = [(self.compile(k, scope), self.compile(v, scope)) for k, v in node.entries]

        def build(env: Env) -> StrictMap:
            result = StrictMap()
            for key_fn, value_fn in entries:
                key = key_fn(env)
                if type(key) not in (str, int, bool, UInt):
                    raise CelEvaluationError(
                        f"unsupported map key type: {type_name(key)}", "INVALID_ARGUMENT"
                    )
                if key in result:
                    raise CelEvaluationError(f"duplicate map key: {key!r}", "INVALID_ARGUMENT")
                result[key] = value_fn(env)
            return result

        return build

    def _conditional(self, node: ast.Conditional, scope: frozenset[str]) -> Evaluator:
        condition = self.compile(node.condition, scope)
        if_true = self.compile(node.if_true, scope)
        if_false = self.compile(node.if_false, scope)

        def choose(env: Env) -> Any:
            decided = condition(env)
            if decided is True:
                return if_true(env)
            if decided is False:
                return if_false(env)
            raise no_overload("_?_:_", decided)

        return choose

    def _logical(self, node: ast.Logical, scope: frozenset[str]) -> Evaluator:
        left = self.compile(node.left, scope)
        right = self.compile(node.right, scope)
        # ``&&`` is decided by a false operand, ``||`` by a true one, whichever side it is on.
        decisive = node.operator == "||"
        decided: bool = decisive
        name = "_||_" if decisive else "_&&_"

        def logical(env: Env) -> bool:
            failure: CelEvaluationError | None = None
            try:
                first = left(env)
            except CelEvaluationError as exc:
                first, failure = _MISSING, exc
            if first is decisive:
                return decided
            try:
                second = right(env)
            except CelEvaluationError as exc:
                second, failure = _MISSING, failure or exc
            if second is decisive:
                return decided
            if failure is not None:
                raise failure
            if type(first) is not bool or type(second) is not bool:
                raise no_overload(name, first, second)
            return not decisive

        return logical

    def _comprehension(self, node: ast.Comprehension, scope: frozenset[str]) -> Evaluator:
        target = self.compile(node.target, scope)
        inner = scope | {node.variable}
        predicate = self.compile(node.predicate, inner) if node.predicate is not None else None
        transform = self.compile(node.transform, inner) if node.transform is not None else None
        builder = _COMPREHENSIONS[node.kind]
        return builder(node.kind, node.variable, target, predicate, transform)

    def _bind(self, node: ast.Bind, scope: frozenset[str]) -> Evaluator:
        value = self.compile(node.value, scope)
        body = self.compile(node.body, scope | {node.variable})
        variable = node.variable

        def bind(env: Env) -> Any:
            saved = env.get(variable, _MISSING)
            env[variable] = value(env)
            try:
                return body(env)
            finally:
                _restore(env, variable, saved)

        return bind


# -- helpers shared by the closures ------------------------------------------------------


def _restore(env: Env, variable: str, saved: Any) -> None:
    if saved is _MISSING:
        env.pop(variable, None)
    else:
        env[variable] = saved


def _select_slow(container: Any, field: str) -> Any:
    if type(container) is StrictMap:
        if field not in container:
            raise CelEvaluationError(f"no such key: '{field}'", "ATTRIBUTE_NOT_FOUND")
        return container[field]
    if isinstance(container, Mapping):
        return from_host(container.get(field))
    if container is None:
        raise CelEvaluationError(f"cannot select field '{field}' from null", "NO_MATCHING_OVERLOAD")
    raise CelEvaluationError(
        f"type '{type_name(container)}' does not support field selection",
        "NO_MATCHING_OVERLOAD",
    )


def _index(container: Any, key: Any) -> Any:
    if is_list(container):
        kind = type(key)
        if kind is float and key.is_integer():
            key = int(key)
        elif kind is not int and kind is not UInt:
            raise no_overload("_[_]", container, key)
        if not 0 <= key < len(container):
            raise CelEvaluationError(f"index out of bounds: {key}", "INDEX_OUT_OF_BOUNDS")
        return from_host(container[key])
    if type(container) is StrictMap:
        if type(key) is float and key.is_integer():
            key = int(key)
        value = container.get(key, _MISSING)
        if value is _MISSING:
            raise CelEvaluationError(f"no such key: {key!r}", "ATTRIBUTE_NOT_FOUND")
        return value
    if isinstance(container, Mapping):
        return from_host(container.get(key)) if type(key) is str else None
    raise no_overload("_[_]", container, key)


def _equality(left: Evaluator, right: Evaluator, *, negate: bool) -> Evaluator:
    if negate:

        def not_equal(env: Env) -> bool:
            a = left(env)
            b = right(env)
            kind = type(a)
            if kind is type(b) and kind in _SIMPLE:
                return bool(a != b)
            return not equals(a, b)

        return not_equal

    def equal(env: Env) -> bool:
        a = left(env)
        b = right(env)
        kind = type(a)
        if kind is type(b) and kind in _SIMPLE:
            return bool(a == b)
        return equals(a, b)

    return equal


def _not(value: Any) -> bool:
    if type(value) is not bool:
        raise no_overload("!_", value)
    return not value


def _negate(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return _int64(-value)
    if kind is float:
        return -value
    if kind is Duration:
        return Duration.checked(-value.nanos)
    raise no_overload("-_", value)


def _int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise CelEvaluationError("integer overflow", "NUMERIC_OVERFLOW")
    return value


def _uint64(value: int) -> UInt:
    if not 0 <= value <= UINT64_MAX:
        raise CelEvaluationError("unsigned integer overflow", "NUMERIC_OVERFLOW")
    return UInt(value)


def _apply(impl: Callable[..., Any], args: list[Evaluator]) -> Evaluator:
    if len(args) == 1:
        (first,) = args
        return lambda env: impl(first(env))
    if len(args) == 2:
        first, second = args
        return lambda env: impl(first(env), second(env))
    return lambda env: impl(*[arg(env) for arg in args])


# -- arithmetic and ordering -------------------------------------------------------------

_ORDERED = frozenset({str, bytes, bool, Timestamp, Duration})


def _orderable(function: str, a: Any, b: Any) -> None:
    kind_a, kind_b = type(a), type(b)
    if kind_a is kind_b and (kind_a in _ORDERED or kind_a in (int, float, UInt)):
        return
    if kind_a in (int, float, UInt) and kind_b in (int, float, UInt):
        return  # numbers of different kinds still order by value
    raise no_overload(function, a, b)


def _less(a: Any, b: Any) -> bool:
    _orderable("_<_", a, b)
    return bool(a < b)


def _less_equal(a: Any, b: Any) -> bool:
    _orderable("_<=_", a, b)
    return bool(a <= b)


def _greater(a: Any, b: Any) -> bool:
    _orderable("_>_", a, b)
    return bool(a > b)


def _greater_equal(a: Any, b: Any) -> bool:
    _orderable("_>=_", a, b)
    return bool(a >= b)


def _add(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _int64(a + b)
        if kind is float or kind is str or kind is bytes:
            return a + b
        if kind is UInt:
            return _uint64(a + b)
        if kind is Duration:
            return Duration.checked(a.nanos + b.nanos)
    if is_list(a) and is_list(b):
        return [*a, *b]
    if kind is Timestamp and type(b) is Duration:
        return Timestamp.checked(a.nanos + b.nanos)
    if kind is Duration and type(b) is Timestamp:
        return Timestamp.checked(a.nanos + b.nanos)
    raise no_overload("_+_", a, b)


def _subtract(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _int64(a - b)
        if kind is float:
            return a - b
        if kind is UInt:
            return _uint64(a - b)
        if kind is Timestamp:
            return Duration.checked(a.nanos - b.nanos)
        if kind is Duration:
            return Duration.checked(a.nanos - b.nanos)
    if kind is Timestamp and type(b) is Duration:
        return Timestamp.checked(a.nanos - b.nanos)
    raise no_overload("_-_", a, b)


def _multiply(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _int64(a * b)
        if kind is float:
            return a * b
        if kind is UInt:
            return _uint64(a * b)
    raise no_overload("_*_", a, b)


def _truncated_division(a: int, b: int) -> int:
    # CEL (like Java and Go) rounds integer division toward zero.
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _divide(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is float:
            if b == 0.0:
                if a == 0.0 or a != a:
                    return float("nan")
                negative = (a < 0) != (math.copysign(1.0, b) < 0)
                return float("-inf") if negative else float("inf")
            return a / b
        if kind is int or kind is UInt:
            if b == 0:
                raise CelEvaluationError("division by zero", "DIVIDE_BY_ZERO")
            if kind is UInt:
                return UInt(a // b)
            return _int64(_truncated_division(a, b))
    raise no_overload("_/_", a, b)


def _modulo(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b) and (kind is int or kind is UInt):
        if b == 0:
            raise CelEvaluationError("modulus by zero", "DIVIDE_BY_ZERO")
        if kind is UInt:
            return UInt(a % b)
        # The remainder takes the sign of the dividend, as in Java and Go.
        return a - b * _truncated_division(a, b)
    raise no_overload("_%_", a, b)


def _contains(element: Any, container: Any) -> bool:
    if is_list(container):
        return any(equals(element, from_host(item)) for item in container)
    if type(container) is StrictMap:
        return element in container
    if isinstance(container, Mapping):
        # Instant's maps claim every key exists, so ``k in data`` is always true.
        return True
    raise no_overload("_in_", element, container)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "_<_": _less,
    "_<=_": _less_equal,
    "_>_": _greater,
    "_>=_": _greater_equal,
    "_+_": _add,
    "_-_": _subtract,
    "_*_": _multiply,
    "_/_": _divide,
    "_%_": _modulo,
    "_in_": _contains,
}


def _binary(
    name: str, operator: Callable[[Any, Any], Any], left: Evaluator, right: Evaluator
) -> Evaluator:
    return lambda env: operator(left(env), right(env))


# -- comprehensions ----------------------------------------------------------------------


def _range(value: Any, kind: str) -> Iterable[Any]:
    if is_list(value):
        return [from_host(item) for item in value]
    if isinstance(value, Mapping):
        return list(value.keys())
    raise CelEvaluationError(
        f"{kind}() needs a list or a map, not {type_name(value)}", "NO_MATCHING_OVERLOAD"
    )


ComprehensionBuilder = Callable[
    [str, str, Evaluator, "Evaluator | None", "Evaluator | None"], Evaluator
]


def _quantifier(
    kind: str,
    variable: str,
    target: Evaluator,
    predicate: Evaluator | None,
    transform: Evaluator | None,
) -> Evaluator:
    assert predicate is not None
    # all() is decided by a false element, exists() by a true one; errors elsewhere are absorbed.
    decisive = kind == "exists"
    decided: bool = decisive

    def quantify(env: Env) -> bool:
        items = _range(target(env), kind)
        saved = env.get(variable, _MISSING)
        failure: CelEvaluationError | None = None
        try:
            for item in items:
                env[variable] = item
                try:
                    result = predicate(env)
                except CelEvaluationError as exc:
                    failure = failure or exc
                    continue
                if result is decisive:
                    return decided
                if type(result) is not bool:
                    failure = failure or no_overload(f"{kind}()", result)
        finally:
            _restore(env, variable, saved)
        if failure is not None:
            raise failure
        return not decisive

    return quantify


def _exists_one(
    kind: str,
    variable: str,
    target: Evaluator,
    predicate: Evaluator | None,
    transform: Evaluator | None,
) -> Evaluator:
    assert predicate is not None

    def exists_one(env: Env) -> bool:
        items = _range(target(env), kind)
        saved = env.get(variable, _MISSING)
        count = 0
        try:
            for item in items:
                env[variable] = item
                result = predicate(env)
                if type(result) is not bool:
                    raise no_overload("exists_one()", result)
                count += result
        finally:
            _restore(env, variable, saved)
        return count == 1

    return exists_one


def _map_or_filter(
    kind: str,
    variable: str,
    target: Evaluator,
    predicate: Evaluator | None,
    transform: Evaluator | None,
) -> Evaluator:
    def collect(env: Env) -> list[Any]:
        items = _range(target(env), kind)
        saved = env.get(variable, _MISSING)
        out: list[Any] = []
        try:
            for item in items:
                env[variable] = item
                if predicate is not None:
                    keep = predicate(env)
                    if type(keep) is not bool:
                        raise no_overload(f"{kind}()", keep)
                    if not keep:
                        continue
                out.append(transform(env) if transform is not None else item)
        finally:
            _restore(env, variable, saved)
        return out

    return collect


_COMPREHENSIONS: dict[str, ComprehensionBuilder] = {
    "all": _quantifier,
    "exists": _quantifier,
    "exists_one": _exists_one,
    "map": _map_or_filter,
    "filter": _map_or_filter,
}
