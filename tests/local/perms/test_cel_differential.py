"""Our CEL evaluator checked against celpy's, a second implementation of CEL.

Hypothesis writes random, well-typed CEL expressions over the part of the language where
Instant's rules and standard CEL mean the same thing, binds ``data``, ``auth`` and
``ruleParams`` to random JSON, and evaluates each expression twice: through the engine's
own entry point (`instantdb_local.perms.Program`, which compiles with the rule
declarations and evaluates with `RuleContext`) and through ``celpy.Environment``. Both
must give the same value, or both must fail.

The generator stays out of the places where the two deliberately differ; each of those
is a named example test at the bottom of this file, asserting what we do and what celpy
does, and docs/schema-files.md ("Where rules differ from standard CEL") names them:

- a key missing from ``data``/``auth``/``ruleParams`` reads as null (celpy: error), and
  so ``'k' in data`` and ``has(data.k)`` are always true;
- numbers of different kinds compare by value (``1 == 1.0``); values of different types
  are unequal rather than an error (``data.n == 'a'``), as the CEL spec says;
- an integral double indexes a list (``xs[1.0]``);
- a rule passes unless it returns false or null; a rule that fails is a 400, not false.

It also stays out of six celpy bugs (values where CEL says error or the reverse),
pinned below too so a celpy upgrade that fixes them is noticed: ``true && 1`` is 1,
``[1, 2, 3][-1]`` is 3, NaN equals NaN, a map literal with a failing value is still a
map (``size({'a': 1 / 0})`` is 1), ``('a' + 'b').contains('b')`` fails, and ``has()``
on a map that fails to build is false.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
import pytest
from celpy import celtypes
from hypothesis import given
from hypothesis import strategies as st

from instantdb_local.errors import ServerError
from instantdb_local.perms import Program, RuleContext
from tests.local.perms.fakes import never_called

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# -- running an expression both ways -----------------------------------------------------------

Outcome = tuple[Any, ...]  # ("value", tagged) or ("error", description)

_CELPY = celpy.Environment()


def _tag(value: Any) -> Any:
    """A value with its CEL type spelled out, so ``1``, ``1.0`` and ``true`` stay apart.

    Works on celpy's wrapper types (subclasses of bool-less int, float, str, list and
    dict) and on our plain results alike.
    """
    if value is None:
        return ("null",)
    if isinstance(value, (bool, celtypes.BoolType)):
        return ("bool", bool(value))
    if isinstance(value, celtypes.UintType):
        return ("uint", int(value))
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        # hex() tells -0.0 from 0.0; the generator never makes NaN (see module docstring).
        return ("double", float(value).hex())
    if isinstance(value, str):
        return ("string", str(value))
    if isinstance(value, list):
        return ("list", tuple(_tag(item) for item in value))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((repr(_tag(k)), _tag(v)) for k, v in value.items())))
    raise AssertionError(f"unexpected result type {type(value).__name__}: {value!r}")


def ours(source: str, variables: Mapping[str, Any]) -> Outcome:
    context = RuleContext(
        etype="docs",
        ref=never_called,
        data=variables["data"],
        auth=variables["auth"],
        rule_params=variables["ruleParams"],
        show_error_details=True,
    )
    try:
        result = Program("docs", "view", source).evaluate(context)
    except ServerError as exc:
        return ("error", exc.message)
    return ("value", _tag(result))


def theirs(source: str, variables: Mapping[str, Any]) -> Outcome:
    activation = {name: celpy.json_to_cel(value) for name, value in variables.items()}
    try:
        result = _CELPY.program(_CELPY.compile(source)).evaluate(activation)
    except (celpy.CELParseError, celpy.CELEvalError) as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    except (IndexError, TypeError, ValueError) as exc:
        # celpy itself crashes on some errors it should report: dividing by the error of
        # an out-of-range index (`1 / [][0]`) fails while it formats that error. The
        # expression is an error in CEL either way.
        return ("error", f"celpy crashed: {type(exc).__name__}: {exc}")
    if isinstance(result, celpy.CELEvalError):
        return ("error", f"CELEvalError: {result}")
    return ("value", _tag(result))


def assert_agree(source: str, variables: Mapping[str, Any]) -> None:
    mine, celpys = ours(source, variables), theirs(source, variables)
    if mine[0] == "error" and celpys[0] == "error":
        return
    assert mine == celpys, (
        f"{source}\n  variables: {variables!r}\n  ours:  {mine!r}\n  celpy: {celpys!r}"
    )


# -- random variables ---------------------------------------------------------------------------

# Keys an expression can select with a dot, and keys it must index with ['...'].
IDENTIFIER_KEYS = ["a", "b", "title", "n", "x_1"]
INDEX_KEYS = ["with-dash", "é", "two words", ""]

INTS = st.one_of(
    st.integers(-20, 20),
    st.sampled_from([INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1, 2**32, -(2**31)]),
    st.integers(INT64_MIN, INT64_MAX),
)
# Bounded so that four levels of arithmetic cannot reach infinity (and so never NaN).
DOUBLES = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -2.5, 1e-5]),
)
# (character, how a literal may spell it): escapes and raw non-ASCII both get decoded.
_SPELLINGS = [
    ("a", "a"),
    ("b", "b"),
    ("B", "B"),
    (" ", " "),
    ("-", "-"),
    (".", "."),
    ("é", "é"),
    ("é", "\\u00e9"),
    ("A", "\\x41"),
    ("A", "\\101"),
    ("😀", "😀"),
    ("😀", "\\U0001F600"),
    ("'", "\\'"),
    ('"', '"'),
    ("\\", "\\\\"),
    ("\n", "\\n"),
    ("\t", "\\t"),
]
CHARACTERS = st.sampled_from(_SPELLINGS)
TEXTS = st.lists(st.sampled_from([c for c, _ in _SPELLINGS]), max_size=5).map("".join)

SCALARS = st.one_of(st.none(), st.booleans(), INTS, DOUBLES, TEXTS)
# Lists are homogeneous: celpy errors on ``[1] == ['a']`` where CEL says false.
LISTS = st.one_of(
    st.lists(st.booleans(), max_size=3),
    st.lists(INTS, max_size=3),
    st.lists(DOUBLES, max_size=3),
    st.lists(TEXTS, max_size=3),
)
JSON = st.recursive(
    st.one_of(SCALARS, LISTS),
    lambda inner: st.dictionaries(st.sampled_from(IDENTIFIER_KEYS + INDEX_KEYS), inner, max_size=4),
    max_leaves=8,
)
VARIABLE_MAPS = st.dictionaries(
    st.sampled_from(IDENTIFIER_KEYS + INDEX_KEYS), JSON, min_size=1, max_size=4
)
VARIABLES = st.fixed_dictionaries(
    {"data": VARIABLE_MAPS, "auth": VARIABLE_MAPS, "ruleParams": VARIABLE_MAPS}
)

SCALAR_TYPES = ("int", "double", "string", "bool")
ALL_TYPES = (
    *SCALAR_TYPES,
    "null",
    *(f"list<{t}>" for t in SCALAR_TYPES),
    *(f"map<{t}>" for t in SCALAR_TYPES),
)
_PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: type(v) is int,
    "double": lambda v: type(v) is float,
    "string": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}


def types_of(value: Any) -> list[str]:
    """Every generator type a JSON value fits (an empty list fits every list type)."""
    for name, fits in _PY_TYPES.items():
        if fits(value):
            return [name]
    if isinstance(value, list):
        return [f"list<{t}>" for t in SCALAR_TYPES if all(_PY_TYPES[t](v) for v in value)]
    if isinstance(value, dict):
        return [f"map<{t}>" for t in SCALAR_TYPES if all(_PY_TYPES[t](v) for v in value.values())]
    raise AssertionError(value)


def string_literal(text: str) -> str:
    escaped = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t"}
    return "'" + "".join(escaped.get(c, c) for c in text) + "'"


def paths_by_type(variables: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every path into the variables that exists, spelled as CEL, by the type it reads.

    Only existing paths: a missing key is one of the deliberate differences.
    ``sized`` lists the paths ``size()`` accepts.
    """
    found: dict[str, list[str]] = {}

    def walk(path: str, value: Any) -> None:
        for name in types_of(value):
            found.setdefault(name, []).append(path)
        if isinstance(value, (str, list, dict)):
            found.setdefault("sized", []).append(path)
        if isinstance(value, dict):
            for key, item in value.items():
                if key in IDENTIFIER_KEYS:
                    walk(f"{path}.{key}", item)
                else:
                    walk(f"{path}[{string_literal(key)}]", item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{path}[{index}]", item)

    for name, value in variables.items():
        walk(name, value)
    return found


# -- random expressions -------------------------------------------------------------------------

# Regular expressions on which Python's re and RE2 agree (the kinds rules use).
_REGEX_PARTS = ["a", "b", "é", ".", "^", "$", "[a-c]", "[^a]", "\\d", "\\s", "(a|b)", "*", "+"]
_SAFE_DIVISORS = ["2.0", "-4.0", "0.5", "3.0", "10.0"]


@dataclass
class ExpressionWriter:
    """Writes well-typed CEL text; every operand is parenthesized so precedence is moot."""

    draw: Callable[[st.SearchStrategy[Any]], Any]
    paths: dict[str, list[str]]
    counter: list[int] = field(default_factory=lambda: [0])

    def pick(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options))

    def write(self, kind: str, depth: int) -> str:
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.leaf(kind)
        return str(self.pick(self.composites(kind, depth - 1))())

    def leaf(self, kind: str) -> str:
        if self.paths.get(kind) and self.draw(st.booleans()):
            return str(self.pick(self.paths[kind]))
        return self.literal(kind)

    # Literals of each type.

    def literal(self, kind: str) -> str:
        if kind == "int":
            value = self.draw(INTS)
            return f"({value})" if value < 0 else str(value)
        if kind == "double":
            value = self.draw(DOUBLES)
            return f"({value!r})" if math.copysign(1.0, value) < 0 else repr(value)
        if kind == "string":
            spelled = self.draw(st.lists(CHARACTERS, max_size=5))
            return "'" + "".join(spelling for _, spelling in spelled) + "'"
        if kind == "bool":
            return self.pick(["true", "false"])  # type: ignore[no-any-return]
        if kind == "null":
            return "null"
        if kind.startswith("list<"):
            return self.list_literal(kind[5:-1], 0)
        return self.map_literal(kind[4:-1], 0)

    def list_literal(self, item: str, depth: int) -> str:
        count = self.draw(st.integers(0, 3))
        return "[" + ", ".join(self.write(item, depth) for _ in range(count)) + "]"

    def map_literal(self, value: str, depth: int, *, unique: bool = False) -> str:
        # Keys may repeat: a repeated key is an error in both. Values are leaves, which
        # cannot fail: celpy keeps a failed value inside the map instead of failing.
        keys = self.draw(st.lists(st.sampled_from(IDENTIFIER_KEYS[:3]), max_size=3, unique=unique))
        entries = [f"{string_literal(k)}: {self.write(value, 0)}" for k in keys]
        return "{" + ", ".join(entries) + "}"

    # Composite expressions of each type.

    def composites(self, kind: str, depth: int) -> list[Callable[[], str]]:
        w = self.write
        options: list[Callable[[], str]] = [
            lambda: f"({w('bool', depth)} ? {w(kind, depth)} : {w(kind, depth)})"
        ]
        if kind in SCALAR_TYPES:
            options += [
                # Mostly in bounds; 3 is past the end of every generated list.
                lambda: f"({w(f'list<{kind}>', depth)}[{self.pick([0, 0, 1, 2, 3])}])",
                lambda: self.select_from_map_literal(kind, depth),
            ]
        if kind == "int":
            options += [
                lambda: (
                    f"({w('int', depth)} {self.pick(['+', '-', '*', '/', '%'])} {w('int', depth)})"
                ),
                lambda: f"(-{w('int', depth)})",
                lambda: f"size({self.sized(depth)})",
                lambda: f"{self.sized(depth)}.size()",
            ]
        elif kind == "double":
            options += [
                lambda: f"({w('double', depth)} {self.pick(['+', '-', '*'])} {w('double', depth)})",
                lambda: f"({w('double', depth)} / {self.pick(_SAFE_DIVISORS)})",
                lambda: f"(-{w('double', depth)})",
            ]
        elif kind == "string":
            options.append(lambda: f"({w('string', depth)} + {w('string', depth)})")
        elif kind == "bool":
            options += self.bool_composites(depth)
        elif kind.startswith("list<"):
            options += [
                lambda: self.list_literal(kind[5:-1], depth),
                lambda: f"({w(kind, depth)} + {w(kind, depth)})",
                lambda: self.filtered(kind[5:-1], depth),
            ]
        if kind == "list<int>":
            options.append(lambda: f"{w(kind, depth)}.map(v0, v0 * {w('int', depth)})")
        elif kind.startswith("map<"):
            options.append(lambda: self.map_literal(kind[4:-1], depth))
        return options

    def bool_composites(self, depth: int) -> list[Callable[[], str]]:
        w = self.write
        return [
            lambda: f"({w('bool', depth)} {self.pick(['&&', '||'])} {w('bool', depth)})",
            lambda: f"(!{w('bool', depth)})",
            lambda: self.comparison(depth),
            lambda: self.equality(depth),
            lambda: (
                f"{w('string', depth)}.{self.pick(['startsWith', 'endsWith'])}"
                f"({w('string', depth)})"
            ),
            # celpy's `+` returns a string without its contains(): the receiver is a leaf.
            lambda: f"{self.leaf('string')}.contains({w('string', depth)})",
            lambda: f"{w('string', depth)}.matches({self.regex()})",
            lambda: self.membership(depth),
            lambda: (
                f"({string_literal(self.pick(IDENTIFIER_KEYS))} in "
                f"{self.map_literal(self.pick(list(SCALAR_TYPES)), depth)})"
            ),
            lambda: self.quantifier(depth),
            # has() on a literal: variable maps are a deliberate difference. Distinct keys:
            # celpy's has() answers false for a map that fails to build.
            lambda: (
                f"has({self.map_literal(self.pick(list(SCALAR_TYPES)), depth, unique=True)}"
                f".{self.pick(IDENTIFIER_KEYS)})"
            ),
        ]

    def comparison(self, depth: int) -> str:
        kind = self.pick(list(SCALAR_TYPES))
        operator = self.pick(["<", "<=", ">", ">="])
        return f"({self.write(kind, depth)} {operator} {self.write(kind, depth)})"

    def equality(self, depth: int) -> str:
        kind = self.pick(list(ALL_TYPES))
        operator = self.pick(["==", "!="])
        return f"({self.write(kind, depth)} {operator} {self.write(kind, depth)})"

    def membership(self, depth: int) -> str:
        kind = self.pick(list(SCALAR_TYPES))
        return f"({self.write(kind, depth)} in {self.write(f'list<{kind}>', depth)})"

    def sized(self, depth: int) -> str:
        options: list[Callable[[], str]] = [
            lambda: self.write("string", depth),
            lambda: self.write(f"list<{self.pick(list(SCALAR_TYPES))}>", depth),
            lambda: self.write(f"map<{self.pick(list(SCALAR_TYPES))}>", depth),
        ]
        if self.paths.get("sized"):
            options.append(lambda: self.pick(self.paths["sized"]))
        return str(self.pick(options)())

    def select_from_map_literal(self, kind: str, depth: int) -> str:
        # Only from a literal: selecting a missing key of ``data`` is a deliberate difference.
        key = self.pick(IDENTIFIER_KEYS[:3])
        literal = self.map_literal(kind, depth)
        if self.draw(st.booleans()):
            return f"{literal}.{key}"
        return f"{literal}[{string_literal(key)}]"

    def quantifier(self, depth: int) -> str:
        # The bound variable gets a fresh name, so nothing else in the expression sees it.
        self.counter[0] += 1
        v = f"v{self.counter[0]}"
        bound = self.write("int", depth)
        predicate = self.pick(
            [f"{v} < {bound}", f"{v} == {bound}", f"({bound} / {v}) == 0", f"{v} % 2 == 0"]
        )
        macro = self.pick(["all", "exists", "exists_one"])
        return f"{self.write('list<int>', depth)}.{macro}({v}, {predicate})"

    def filtered(self, item: str, depth: int) -> str:
        self.counter[0] += 1
        v = f"v{self.counter[0]}"
        other = self.write(item, depth)
        return f"{self.write(f'list<{item}>', depth)}.filter({v}, {v} != {other})"

    def regex(self) -> str:
        parts = self.draw(st.lists(st.sampled_from(_REGEX_PARTS), min_size=1, max_size=4))
        pattern = "".join(parts)
        # A quantifier needs something to repeat; RE2 and re both reject "*a" or "^*".
        while pattern[:1] in ("*", "+") or "^*" in pattern or "^+" in pattern:
            pattern = pattern[1:] if pattern[:1] in ("*", "+") else pattern.replace("^", "", 1)
        pattern = pattern.replace("**", "*").replace("++", "+").replace("*+", "*")
        pattern = pattern.replace("+*", "+").replace("$*", "$").replace("$+", "$")
        return string_literal(pattern or "a")


@st.composite
def cases(draw: st.DrawFn, kind: str) -> tuple[str, dict[str, Any]]:
    variables = draw(VARIABLES)
    writer = ExpressionWriter(draw, paths_by_type(variables))
    # The top is always an operation, so no example is a bare literal.
    operation = draw(st.sampled_from(writer.composites(kind, draw(st.integers(0, 3)))))
    return operation(), variables


# One test per result type, so each gets the profile's full budget of examples.
@pytest.mark.parametrize("kind", ALL_TYPES)
@given(data=st.data())
def test_agrees_with_celpy(kind: str, data: st.DataObject) -> None:
    source, variables = data.draw(cases(kind))
    assert_agree(source, variables)


# -- the generator can fail ---------------------------------------------------------------------


def test_a_disagreement_is_reported() -> None:
    # Guards the comparison itself: a value against an error, or two values, must differ.
    variables: dict[str, Any] = {"data": {"n": 1}, "auth": {}, "ruleParams": {}}
    assert ours("data.missing", variables) != theirs("data.missing", variables)
    with pytest.raises(AssertionError):
        assert_agree("data.missing", variables)
    assert ours("1", variables) == ("value", ("int", 1))
    assert theirs("1.0", variables) == ("value", ("double", (1.0).hex()))
    assert ours("true", variables) != ours("1", variables)


# -- regressions the differential test found ----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # The parser folded -<literal> and refused the whole rule ("integer literal out
        # of range") when the folded value left int64, even in a branch never taken.
        ("-(-9223372036854775808)", ("error", "NUMERIC_OVERFLOW")),
        ("false ? -(-9223372036854775808) : 1", ("value", ("int", 1))),
        ("-(-9223372036854775807)", ("value", ("int", INT64_MAX))),
        ("-(9223372036854775807) - 1", ("value", ("int", INT64_MIN))),
    ],
)
def test_negating_the_smallest_int_overflows_when_evaluated(
    source: str, expected: tuple[Any, ...]
) -> None:
    variables: dict[str, Any] = {"data": {}, "auth": {}, "ruleParams": {}}
    mine, celpys = ours(source, variables), theirs(source, variables)
    assert (mine[0], celpys[0]) == (expected[0], expected[0])
    if expected[0] == "value":
        assert mine == celpys == expected
    else:
        with pytest.raises(ServerError) as caught:
            Program("docs", "view", source).evaluate(
                RuleContext(etype="docs", ref=never_called, show_error_details=True)
            )
        assert caught.value.type == "permission-evaluation-failed"
        assert caught.value.hint is not None
        assert caught.value.hint["error"]["type"] == expected[1]


# -- where we deliberately differ from celpy ----------------------------------------------------

VARS: dict[str, Any] = {
    "data": {"n": 1, "d": 1.0, "title": "hello", "tags": ["a", "b"], "owner": None},
    "auth": {"id": "u1"},
    "ruleParams": {},
}


def value(source: str) -> Any:
    outcome = ours(source, VARS)
    assert outcome[0] == "value", outcome
    return outcome[1]


def celpy_fails(source: str) -> bool:
    return theirs(source, VARS)[0] == "error"


def test_missing_key_reads_as_null() -> None:
    # Instant: a missing attribute is null, so `data.x == null` guards a rule (celpy: error).
    assert value("data.missing == null") == ("bool", True)
    assert value("auth.email") == ("null",)
    assert celpy_fails("data.missing == null")


def test_in_and_has_are_always_true_on_variable_maps() -> None:
    # Follows from the above: every key "exists" on Instant's maps (celpy: only real keys).
    assert value("'missing' in data && has(data.missing)") == ("bool", True)
    assert theirs("'missing' in data", VARS) == ("value", ("bool", False))
    assert theirs("has(data.missing)", VARS) == ("value", ("bool", False))
    # Map literals written in the rule keep CEL's strict lookups, in both.
    assert value("'x' in {'y': 1}") == ("bool", False)
    assert ours("{'y': 1}.x", VARS)[0] == theirs("{'y': 1}.x", VARS)[0] == "error"


def test_numbers_of_different_kinds_compare_by_value() -> None:
    # The CEL spec's heterogeneous numeric equality and ordering; celpy predates it.
    assert value("1 == 1.0 && data.n == data.d && data.n < 1.5") == ("bool", True)
    assert value("1 in [1.0]") == ("bool", True)
    assert celpy_fails("1 == 1.0")
    assert celpy_fails("data.n < 1.5")
    # Arithmetic still needs one kind, in both.
    assert ours("data.n + data.d", VARS)[0] == theirs("data.n + data.d", VARS)[0] == "error"


def test_values_of_different_types_are_unequal() -> None:
    # CEL spec: == across types is false, not an error, so `data.n == null` guards a rule
    # whatever the attribute holds. celpy raises "no matching overload" (except between
    # null and a string, where it too says false).
    assert value("data.n == null") == ("bool", False)
    assert value("data.n != 'a' && !(data.tags == [1, 2])") == ("bool", True)
    assert celpy_fails("data.n == null")
    assert celpy_fails("data.n != 'a'")
    assert celpy_fails("data.tags == [1, 2]")
    assert ours("data.owner == auth.id", VARS) == theirs("data.owner == auth.id", VARS)


def test_an_integral_double_indexes_a_list() -> None:
    # JSON numbers arrive as doubles from some clients; `xs[data.d]` reads like `xs[1]`.
    assert value("data.tags[data.d]") == ("string", "b")
    assert celpy_fails("data.tags[data.d]")


def test_rule_passes_unless_false_or_null() -> None:
    # The server's truthiness is Clojure's; CEL itself has no notion of a passing value.
    context = RuleContext(etype="docs", ref=never_called, data=VARS["data"])
    assert Program("docs", "view", "data.title").passes(context)
    assert Program("docs", "view", "data.n").passes(context)
    assert not Program("docs", "view", "data.owner").passes(context)
    assert not Program("docs", "view", "false").passes(context)


def test_a_failing_rule_is_an_error_not_false() -> None:
    # A rule that fails is reported (400 permission-evaluation-failed), never read as false.
    context = RuleContext(etype="docs", ref=never_called, data=VARS["data"])
    with pytest.raises(ServerError) as caught:
        Program("docs", "view", "data.title + 1 == 2").passes(context)
    assert caught.value.status == 400
    assert caught.value.type == "permission-evaluation-failed"
    assert celpy_fails("data.title + 1 == 2")


# -- celpy bugs the generator steers around -----------------------------------------------------


def test_celpy_logical_operators_return_non_bool_operands() -> None:
    # CEL: `&&` on a non-bool is "no matching overload"; celpy hands back the operand.
    assert ours("true && data.n", VARS)[0] == "error"
    assert theirs("true && data.n", VARS) == ("value", ("int", 1))


def test_celpy_accepts_negative_list_indexes() -> None:
    # CEL: index out of bounds; celpy uses Python's indexing and reads from the end.
    assert ours("[1, 2, 3][-1]", VARS)[0] == "error"
    assert theirs("[1, 2, 3][-1]", VARS) == ("value", ("int", 3))


def test_celpy_keeps_failed_values_inside_map_literals() -> None:
    # CEL: an error in any entry makes the whole map an error; celpy stores the error
    # as the entry's value, so the map still has a size and its other keys still read.
    assert ours("size({'a': 1 / 0})", VARS)[0] == "error"
    assert ours("{'a': 1, 'b': 1 / 0}.a", VARS)[0] == "error"
    assert theirs("size({'a': 1 / 0})", VARS) == ("value", ("int", 1))
    assert theirs("{'a': 1, 'b': 1 / 0}.a", VARS) == ("value", ("int", 1))


def test_celpy_loses_contains_on_concatenated_strings() -> None:
    # celpy's string `+` gives a plain Python str, which has no contains() method.
    assert value("('a' + 'b').contains('b')") == ("bool", True)
    assert celpy_fails("('a' + 'b').contains('b')")
    assert theirs("'ab'.contains('b')", VARS) == ("value", ("bool", True))


def test_celpy_has_is_false_on_a_map_that_fails() -> None:
    # CEL: has() on an operand that fails is that failure; celpy answers false.
    assert ours("has({'a': 1, 'a': 2}.a)", VARS)[0] == "error"
    assert theirs("has({'a': 1, 'a': 2}.a)", VARS) == ("value", ("bool", False))


def test_celpy_says_nan_equals_nan() -> None:
    # IEEE 754 and CEL: NaN equals nothing, itself included.
    assert value("0.0 / 0.0 == 0.0 / 0.0") == ("bool", False)
    assert theirs("0.0 / 0.0 == 0.0 / 0.0", VARS) == ("value", ("bool", True))


def test_celpy_crashes_where_cel_reports_an_error() -> None:
    # A celpy bug, pinned so an upgrade that fixes it shows up: formatting the error of
    # `[][0]` inside a division raises IndexError out of celpy. Ours reports the error.
    variables = {"data": {}, "auth": {}, "ruleParams": {"a": 0}}
    source = "ruleParams.a / (0 + ([][0])) == 0"
    assert ours(source, variables)[0] == "error"
    with pytest.raises(IndexError):
        _CELPY.program(_CELPY.compile(source)).evaluate(
            {name: celpy.json_to_cel(value) for name, value in variables.items()}
        )
