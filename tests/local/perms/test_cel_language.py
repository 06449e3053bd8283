"""The CEL language itself: literals, operators, macros, conversions and libraries."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb_local._cel import (
    HOOK_PREFIX,
    CelCompileError,
    CelEvaluationError,
    Declarations,
    Expression,
    parse,
    parse_date,
    to_plain,
)

DECLARATIONS = Declarations(
    variables={"data": "map", "auth": "map"},
    member_hooks={"ref": ((("map", "string"), "list"),)},
)


def run(source: str, **variables: Any) -> Any:
    expression = Expression.compile(parse(source), DECLARATIONS)
    env = {"data": {}, "auth": {}, **variables}
    return to_plain(expression.evaluate(env))


VALUES = [
    # literals and escapes
    ("'a\\tb\\u00e9\\x41\\101'", "a\tbéAA"),
    ('"double" + r"\\raw"', "double\\raw"),
    ("'''multi\nline'''", "multi\nline"),
    ("size(b'\\x00\\xff')", 2),
    ("0x1F + -3", 28),
    ("-9223372036854775808", -9223372036854775808),
    ("1u + 2u", 3),
    ("1.5e1", 15.0),
    ("null", None),
    # arithmetic
    ("7 / 2", 3),
    ("-7 / 2", -3),
    ("7 % -3", 1),
    ("-7 % 3", -1),
    ("7.0 / 2.0", 3.5),
    ("1.0 / 0.0 > 1e308", True),
    ("'ab' + 'cd'", "abcd"),
    ("[1] + [2, 3]", [1, 2, 3]),
    # comparisons and equality
    ("1 == 1.0 && 2u == 2 && 1 < 1.5", True),
    ("'a' < 'b' && false < true && b'a' < b'b'", True),
    ("null == null && data.x == null && !(1 == null)", True),
    ("[1, 'a', [true]] == [1, 'a', [true]]", True),
    ("{'a': 1, 'b': [2]} == {'b': [2], 'a': 1}", True),
    ("{'a': 1} != {'a': 2}", True),
    ("dyn(1) == dyn('1')", False),
    # membership and lookups
    ("2 in [1, 2, 3] && !(4 in [1, 2, 3])", True),
    ("'a' in {'a': 1} && !('b' in {'a': 1})", True),
    ("'anything' in data", True),
    ("{'a': {'b': 1}}.a.b", 1),
    ("{1: 'one'}[1]", "one"),
    ("[10, 20][1]", 20),
    ("has({'a': 1}.a) && !has({'a': 1}.b)", True),
    ("data.nested", None),
    # size, conversions, types
    ("size('héllo') + size([1, 2]) + size({'a': 1}) + 'abc'.size()", 11),
    ("int('42') + int(3.9) + int(-3.9)", 42),
    ("uint(3) + uint('4')", 7),
    ("double(1) + double('0.5')", 1.5),
    (
        "[string(1), string(1.5), string(2.0), string(true), string(b'hi'), string(1u)]",
        ["1", "1.5", "2", "true", "hi", "1"],
    ),
    ("[bool('true'), bool('f'), bool(true)]", [True, False, True]),
    ("bytes('é') == b'\\xc3\\xa9'", True),
    (
        "[type(1) == int, type('a') == string, type(1.0) == double, type(null) == null_type]",
        [True, True, True, True],
    ),
    ("type(type(1)) == type", True),
    # ternary, bind, macros
    ("1 > 2 ? 'a' : 'b'", "b"),
    ("cel.bind(x, 2, cel.bind(y, x * 3, x + y))", 8),
    ("cel.bind(x, 1, [x, cel.bind(x, 5, x), x])", [1, 5, 1]),
    ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
    ("[1, 2, 3].filter(x, x % 2 == 1)", [1, 3]),
    ("{'a': 1, 'b': 2}.map(k, k)", ["a", "b"]),
    ("{'a': 1, 'b': 2}.all(k, k.size() == 1)", True),
    ("[1, 2, 3].exists_one(x, x > 2) && ![1, 2, 3].exists_one(x, x > 1)", True),
    ("[[1, 2], [3]].all(xs, xs.all(x, x > 0))", True),
    ("[].all(x, false) && ![].exists(x, true)", True),
    # string extension
    ("'a-b-c'.split('-', 2)", ["a", "b-c"]),
    ("'abc'.split('')", ["a", "b", "c"]),
    ("'abc'.split('b', 0)", []),
    ("'hello'.indexOf('l', 3) + 'hello'.lastIndexOf('l') + 'hello'.indexOf('z')", 5),
    ("'hello'.lastIndexOf('l', 2)", 2),
    ("'abc'.charAt(3) == '' && 'abc'.substring(1) == 'bc'", True),
    ("'ÀbC'.lowerAscii() + 'àbc'.upperAscii()", "ÀbcàBC"),
    (
        "'aaa'.replace('a', 'b') + 'aaa'.replace('a', 'b', 1) + 'aaa'.replace('a', 'b', 0)",
        "bbbbaaaaa",
    ),
    ("['x', 'y'].join() + ['x', 'y'].join(', ')", "xyx, y"),
    ("'abc'.reverse()", "cba"),
    ("strings.quote('a\"b\\n')", '"a\\"b\\n"'),
    ("matches('abc', 'b') && !'abc'.matches('^b')", True),
    # math extension
    ("math.greatest(1, 2.5, -1)", 2.5),
    ("math.least(3, 1u) == 1u", True),
    ("[math.abs(-2.5), math.ceil(1.2), math.floor(-1.2)]", [2.5, 2.0, -2.0]),
    ("[math.round(2.5), math.round(-2.5), math.trunc(-1.7)]", [3.0, -3.0, -1.0]),
    ("[math.sign(-3), math.sign(0.5), math.isFinite(1.0)]", [-1, 1.0, True]),
    ("[math.isNaN(0.0 / 0.0), math.isInf(1.0 / 0.0)]", [True, True]),
    ("math.sqrt(16)", 4.0),
    # timestamps and durations
    ("timestamp('2025-01-02T03:04:05.123Z').getTime()", 1735787045123),
    ("string(timestamp(1735787045000))", "2025-01-02T03:04:05Z"),
    ("timestamp('2025-03-04') == timestamp('2025-03-04T00:00:00Z')", True),
    ("timestamp('2025-01-02T03:04:05+01:00') == timestamp('2025-01-02T02:04:05Z')", True),
    ("timestamp('2025-01-02T03:04:05Z').getFullYear()", 2025),
    ("timestamp('2025-01-02T03:04:05Z').getMonth()", 0),
    ("timestamp('2025-01-02T03:04:05Z').getDate()", 2),
    ("timestamp('2025-01-02T03:04:05Z').getDayOfMonth()", 1),
    ("timestamp('2025-01-02T03:04:05Z').getDayOfWeek()", 4),
    ("timestamp('2025-01-02T03:04:05Z').getDayOfYear()", 1),
    ("timestamp('2025-01-02T23:30:00Z').getHours('+02:00')", 1),
    ("timestamp('2025-01-02T23:30:00Z').getDate('Europe/Paris')", 3),
    ("timestamp('2025-01-02T23:30:45.250Z').getSeconds()", 45),
    ("timestamp('2025-01-02T23:30:45.250Z').getMilliseconds()", 250),
    ("timestamp('2025-01-02') + duration('1h30m') == timestamp('2025-01-02T01:30:00Z')", True),
    ("timestamp('2025-01-02') - timestamp('2025-01-01') == duration('24h')", True),
    ("[duration('1.5s').getMilliseconds(), duration('90m').getHours()]", [1500, 1]),
    ("duration('-2m').getMinutes()", -2),
    ("string(duration('1m30.5s'))", "90.5s"),
    ("int(timestamp('1970-01-01T00:01:00Z'))", 60),
    ("timestamp('2025-01-02T03:04:05Z')", "2025-01-02T03:04:05Z"),
]


@pytest.mark.parametrize(("source", "expected"), VALUES, ids=[v[0][:60] for v in VALUES])
def test_value(source: str, expected: Any) -> None:
    assert run(source) == expected


ERRORS = [
    ("9223372036854775807 + 1", "NUMERIC_OVERFLOW"),
    ("-9223372036854775808 - 1", "NUMERIC_OVERFLOW"),
    ("0u - 1u", "NUMERIC_OVERFLOW"),
    ("1 / 0", "DIVIDE_BY_ZERO"),
    ("1 % 0", "DIVIDE_BY_ZERO"),
    ("[1][1]", "INDEX_OUT_OF_BOUNDS"),
    ("{'a': 1}.b", "ATTRIBUTE_NOT_FOUND"),
    ("{'a': 1}['b']", "ATTRIBUTE_NOT_FOUND"),
    ("{'a': 1, 'a': 2}", "INVALID_ARGUMENT"),
    ("data.x + 1", "NO_MATCHING_OVERLOAD"),
    ("data.x < 1", "NO_MATCHING_OVERLOAD"),
    ("!data.x", "NO_MATCHING_OVERLOAD"),
    ("data.x ? 1 : 2", "NO_MATCHING_OVERLOAD"),
    ("data.x && true", "NO_MATCHING_OVERLOAD"),
    ("data.x.y", "NO_MATCHING_OVERLOAD"),
    ("[1, 2].all(x, x)", "NO_MATCHING_OVERLOAD"),
    ("[0, 1].exists_one(x, 1 / x == 1)", "DIVIDE_BY_ZERO"),
    ("data.x.all(y, true)", "NO_MATCHING_OVERLOAD"),
    ("int('12x')", "BAD_FORMAT"),
    ("int(1e20)", "NUMERIC_OVERFLOW"),
    ("bool('yes')", "BAD_FORMAT"),
    ("duration('1y')", "BAD_FORMAT"),
    ("timestamp('yesterday')", "BAD_FORMAT"),
    ("timestamp('2025-01-02T00:00:00Z').getHours('Mars/Olympus')", "BAD_FORMAT"),
    ("'abc'.substring(2, 1)", "INDEX_OUT_OF_BOUNDS"),
    ("'abc'.charAt(4)", "INDEX_OUT_OF_BOUNDS"),
    ("[1, 'a'].join()", "NO_MATCHING_OVERLOAD"),
    ("math.greatest([])", "INVALID_ARGUMENT"),
    ("math.abs(-9223372036854775807 - 1)", "NUMERIC_OVERFLOW"),
    ("data.ref('x')", "NO_MATCHING_OVERLOAD"),
]


@pytest.mark.parametrize(("source", "code"), ERRORS, ids=[e[0] for e in ERRORS])
def test_runtime_error(source: str, code: str) -> None:
    def no_ref(target: Any, path: Any) -> Any:
        raise CelEvaluationError("ref() is unavailable here", "NO_MATCHING_OVERLOAD")

    with pytest.raises(CelEvaluationError) as caught:
        run(source, **{HOOK_PREFIX + "ref": no_ref})
    assert caught.value.code == code


COMPILE_ERRORS = [
    ("x", "undeclared reference to 'x' (in container '')"),
    ("data.x.foo()", "undeclared reference to 'foo' (in container '')"),
    ("math.pow(2, 3)", "undeclared reference to 'math.pow' (in container '')"),
    ("'a'.startsWith(1)", "found no matching overload for 'startsWith' applied to 'string.(int)'"),
    ("size(1)", "found no matching overload for 'size' applied to '(int)'"),
    ("1 == 'a'", "found no matching overload for '_==_' applied to '(int, string)'"),
    ("[1] < [2]", "found no matching overload for '_<_' applied to '(list, list)'"),
    ("1 ? 2 : 3", "found no matching overload for '_?_:_' applied to '(int, int, int)'"),
    ("1 && true", "found no matching overload for '_&&_' applied to '(int, bool)'"),
    ("'abc'.x", "type 'string' does not support field selection"),
    ("[1].all(1, true)", "all() variable name must be a simple identifier"),
    ("[1].map(x)", "map() macro takes 2 or 3 arguments"),
    ("has(data)", "invalid argument to has() macro"),
    ("cel.bind(1, 2, 3)", "cel.bind() variable name must be a simple identifier"),
    ("Msg{a: 1}", "message construction (Type{field: value}) is not supported"),
    ("9223372036854775808", "integer literal out of range: 9223372036854775808"),
    ("'\\q'", "invalid escape sequence: \\q"),
    ("if", "reserved identifier: if"),
    ("   ", "Syntax error: the rule is empty"),
]


@pytest.mark.parametrize(("source", "message"), COMPILE_ERRORS, ids=[c[0] for c in COMPILE_ERRORS])
def test_compile_error(source: str, message: str) -> None:
    with pytest.raises(CelCompileError) as caught:
        Expression.compile(parse(source), DECLARATIONS)
    assert caught.value.message == message


def test_compile_error_position() -> None:
    with pytest.raises(CelCompileError) as caught:
        Expression.compile(parse("data.a == 1 &&\n  missing"), DECLARATIONS)
    assert (caught.value.line, caught.value.column) == (2, 3)


def test_macro_variables_do_not_leak() -> None:
    env: dict[str, Any] = {"data": {"xs": [1, 2]}, "auth": {}}
    expression = Expression.compile(parse("data.xs.map(x, x + 1)"), DECLARATIONS)
    assert expression.evaluate(env) == [2, 3]
    assert set(env) == {"data", "auth"}


def test_free_variables() -> None:
    expression = Expression.compile(
        parse("[1].all(data, data > 0) || auth.id == 'x'"), DECLARATIONS
    )
    assert expression.free_variables == frozenset({"data", "auth"})


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2025-01-02", "2025-01-02T00:00:00Z"),
        ("2025-01-02T03:04", "2025-01-02T03:04:00Z"),
        ("2025-01-02 03:04:05", "2025-01-02T03:04:05Z"),
        ("2025-01-02T03:04:05.5", "2025-01-02T03:04:05.5Z"),
        ("2025-01-02T03:04:05.123456789Z", "2025-01-02T03:04:05.123456789Z"),
        ("2025-01-02T03:04:05-0130", "2025-01-02T04:34:05Z"),
        ("2025-01-02T03:04:05+01", "2025-01-02T02:04:05Z"),
        ("Thu, 02 Jan 2025 03:04:05 GMT", "2025-01-02T03:04:05Z"),
        (
            "Thu Jan 02 2025 04:04:05 GMT+0100 (Central European Standard Time)",
            "2025-01-02T03:04:05Z",
        ),
    ],
)
def test_date_formats(text: str, iso: str) -> None:
    parsed = parse_date(text)
    assert parsed is not None
    assert parsed.isoformat() == iso


@pytest.mark.parametrize(
    "text", ["", "2025-13-01", "2025-02-30", "02/01/2025", "tomorrow", "2025-01-02T25:00"]
)
def test_dates_that_do_not_parse(text: str) -> None:
    assert parse_date(text) is None


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(INT64, INT64)
def test_int_addition_is_exact_or_overflows(a: int, b: int) -> None:
    if -(2**63) <= a + b < 2**63:
        assert run("data.a + data.b", data={"a": a, "b": b}) == a + b
    else:
        with pytest.raises(CelEvaluationError) as caught:
            run("data.a + data.b", data={"a": a, "b": b})
        assert caught.value.code == "NUMERIC_OVERFLOW"


@given(INT64, INT64.filter(lambda b: b != 0))
def test_division_and_modulo_agree(a: int, b: int) -> None:
    if a == -(2**63) and b == -1:
        return  # the one quotient outside int64
    quotient = run("data.a / data.b", data={"a": a, "b": b})
    remainder = run("data.a % data.b", data={"a": a, "b": b})
    assert quotient * b + remainder == a
    assert abs(remainder) < abs(b)
    assert remainder == 0 or (remainder < 0) == (a < 0)
