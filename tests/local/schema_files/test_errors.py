"""Everything outside the subset fails with a message, a line and a column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from instantdb_local.schema_files import (
    SchemaFileError,
    normalize_schema,
    parse_perms_json,
    parse_perms_ts,
    parse_schema_json,
    parse_schema_ts,
)

Reader = Callable[..., object]


def _entities(body: str) -> str:
    return f"export default i.schema({{ entities: {{ {body} }} }});"


def _link(forward: str, reverse: str = 'on: "b", has: "many", label: "as"') -> str:
    return (
        "export default i.schema({ entities: { a: i.entity({}), b: i.entity({}) }, "
        f"links: {{ ab: {{ forward: {{ {forward} }}, reverse: {{ {reverse} }} }} }} }});"
    )


ERRORS: list[tuple[str, Reader, str, str, int, int]] = [
    # -- tokens --------------------------------------------------------------------------------
    (
        "stray-character",
        parse_perms_ts,
        "export default { a: # }",
        "unexpected character '#'",
        1,
        21,
    ),
    (
        "unclosed-string",
        parse_perms_ts,
        'export default { a: "x }',
        'this string is never closed (missing ")',
        1,
        21,
    ),
    (
        "unclosed-comment",
        parse_perms_ts,
        "/* hello\nexport default {}",
        "this comment is never closed (missing */)",
        1,
        1,
    ),
    (
        "template-substitution",
        parse_perms_ts,
        "export default { a: `x ${y}` }",
        "template strings with ${...} substitutions are not supported; write the value out as "
        "a plain string",
        1,
        24,
    ),
    (
        "bad-escape",
        parse_perms_ts,
        r'export default { a: "\u12" }',
        "invalid escape sequence (\\x, \\u need hex digits): '12\" '",
        1,
        22,
    ),
    # -- statements and values -----------------------------------------------------------------
    (
        "no-default-export",
        parse_perms_ts,
        "const rules = {};",
        "no `export default` found: instant.perms.ts must end with `export default <value>;`",
        1,
        1,
    ),
    (
        "two-default-exports",
        parse_perms_ts,
        "export default {};\nexport default {};",
        "this file has two `export default` statements",
        2,
        1,
    ),
    (
        "function",
        parse_perms_ts,
        "function rules() {}",
        "unexpected 'function': this file may only hold imports, const declarations, types and "
        "`export default`",
        1,
        1,
    ),
    (
        "arrow-function",
        parse_perms_ts,
        "export default (x) => x",
        "functions are not supported: the file is read, not run",
        1,
        16,
    ),
    (
        "arrow-function-name",
        parse_perms_ts,
        "export default x => x",
        "functions are not supported: the file is read, not run",
        1,
        16,
    ),
    (
        "spread",
        parse_perms_ts,
        "export default { ...base }",
        "spread (...) is not supported; write the keys out",
        1,
        18,
    ),
    (
        "computed-key",
        parse_perms_ts,
        "export default { [k]: 1 }",
        "computed keys ([...]: ...) are not supported",
        1,
        18,
    ),
    (
        "duplicate-key",
        parse_perms_ts,
        "export default { a: {}, a: {} }",
        "the key 'a' appears twice in this object",
        1,
        25,
    ),
    (
        "missing-comma",
        parse_perms_ts,
        "export default {\n  a: {}\n  b: {}\n}",
        "expected ',' or '}' in the object, but found 'b'",
        3,
        3,
    ),
    (
        "missing-colon",
        parse_perms_ts,
        "export default { a 'x' }",
        "expected ':' after the key 'a', but found the string 'x'",
        1,
        20,
    ),
    (
        "undefined-name",
        parse_perms_ts,
        "export default { goals: base }",
        "`base` is not defined in this file. The file is read, not run: write values out, or "
        "declare them above with const",
        1,
        25,
    ),
    (
        "destructuring",
        parse_perms_ts,
        "const { a } = b;",
        "destructuring is not supported; declare one name per const",
        1,
        7,
    ),
    (
        "optional-chaining",
        parse_perms_ts,
        "export default a?.b",
        "optional chaining (?.) is not supported",
        1,
        17,
    ),
    (
        "ends-early",
        parse_perms_ts,
        "export default {",
        "expected a key, but found the end of the file",
        1,
        17,
    ),
    (
        "unsupported-export",
        parse_perms_ts,
        "export function f() {}",
        "unsupported export of 'function': use `export default` or `export const`",
        1,
        8,
    ),
    (
        "undefined-as-value",
        parse_perms_ts,
        "export default undefined",
        "undefined is not a value; use null or leave the key out",
        1,
        16,
    ),
    (
        "member-of-object",
        parse_perms_ts,
        "const a = {};\nexport default a.b",
        "reading .b is not supported here; only i.* builders have members",
        2,
        18,
    ),
    (
        "calling-a-value",
        parse_perms_ts,
        "const a = {};\nexport default a()",
        "only the i.* builders can be called",
        2,
        17,
    ),
    # -- rules ---------------------------------------------------------------------------------
    (
        "rules-not-an-object",
        parse_perms_ts,
        "export default ['goals']",
        "the permissions must be an object keyed by namespace",
        1,
        16,
    ),
    (
        "bad-rule",
        parse_perms_ts,
        "export default {\n  goals: { allow: { view: 'data.x ==' } },\n}",
        "Validation failed for rule: goals.allow.view: Syntax error: the rule ends too early "
        "at line 1, column 8",
        2,
        27,
    ),
    (
        "bad-rule-json",
        parse_perms_json,
        '{"goals": {"fields": {"id": "true"}}}',
        "Validation failed for rule: goals.fields: You cannot set field rules for `id`. Use "
        "goals -> allow -> view instead",
        1,
        22,
    ),
    ("invalid-json", parse_perms_json, '{"goals": }', "invalid JSON: Expecting value", 1, 11),
    # -- schema builders -----------------------------------------------------------------------
    (
        "not-a-schema",
        parse_schema_ts,
        "export default { entities: {} }",
        "the default export must be the i.schema({...}) value",
        1,
        16,
    ),
    (
        "old-graph-api",
        parse_schema_ts,
        "export default i.graph({}, {})",
        "i.graph(...) is the old schema API; use i.schema({...})",
        1,
        18,
    ),
    (
        "unknown-builder",
        parse_schema_ts,
        _entities("a: i.entity({ x: i.text() })"),
        "i.text is not supported; use one of i.schema(), i.entity(), i.string(), i.number(), "
        "i.boolean(), i.date(), i.json(), i.any()",
        1,
        58,
    ),
    (
        "unknown-modifier",
        parse_schema_ts,
        _entities("a: i.entity({ x: i.string().required() })"),
        ".required() is not supported on attributes; use .unique(), .indexed(), .optional(), "
        ".clientRequired()",
        1,
        67,
    ),
    (
        "modifier-with-argument",
        parse_schema_ts,
        _entities("a: i.entity({ x: i.string().unique(true) })"),
        ".unique() takes no arguments",
        1,
        73,
    ),
    (
        "builder-with-argument",
        parse_schema_ts,
        _entities("a: i.entity({ x: i.string('x') })"),
        "i.string() takes no arguments",
        1,
        64,
    ),
    (
        "entity-without-object",
        parse_schema_ts,
        _entities("a: i.entity()"),
        "i.entity() takes one object, like i.entity({...})",
        1,
        50,
    ),
    (
        "attribute-not-a-builder",
        parse_schema_ts,
        _entities("a: i.entity({ x: 'string' })"),
        "the attribute 'x' must be an i.string(), i.number(), i.boolean(), i.date(), i.json() "
        "or i.any() builder",
        1,
        56,
    ),
    (
        "entity-not-a-builder",
        parse_schema_ts,
        _entities("a: {}"),
        "the entity 'a' must be written i.entity({...})",
        1,
        42,
    ),
    (
        "unknown-schema-key",
        parse_schema_ts,
        "export default i.schema({ entities: {}, views: {} })",
        "i.schema() takes entities, links and rooms, not 'views'",
        1,
        48,
    ),
    # -- schema documents ----------------------------------------------------------------------
    (
        "implicit-id",
        parse_schema_ts,
        _entities("a: i.entity({ id: i.string() })"),
        "a.id is implicit on every namespace; remove it from the schema",
        1,
        57,
    ),
    (
        "reserved-namespace",
        parse_schema_ts,
        _entities("$secrets: i.entity({})"),
        "$secrets is reserved: only the system namespaces $files, $streams, $users may start "
        "with $",
        1,
        49,
    ),
    (
        "link-has",
        parse_schema_ts,
        _link('on: "a", has: "few", label: "b"'),
        'links.ab.forward.has must be "one" or "many", not \'few\'',
        1,
        115,
    ),
    (
        "link-missing-label",
        parse_schema_ts,
        _link('on: "a", has: "one"'),
        "links.ab.forward needs label",
        1,
        99,
    ),
    (
        "link-on-delete",
        parse_schema_ts,
        _link('on: "a", has: "one", label: "b", onDelete: "restrict"'),
        "links.ab.forward.onDelete can only be \"cascade\", not 'restrict'",
        1,
        144,
    ),
    (
        "link-unknown-key",
        parse_schema_ts,
        _link('on: "a", has: "one", label: "b", cascade: true'),
        "unknown key 'cascade' in links.ab.forward; expected on, has, label, onDelete, required",
        1,
        143,
    ),
    (
        "link-reverse-required",
        parse_schema_ts,
        _link(
            'on: "a", has: "one", label: "b"', 'on: "b", has: "many", label: "as", required: true'
        ),
        "unknown key 'required' in links.ab.reverse; expected on, has, label, onDelete",
        1,
        192,
    ),
    (
        "label-clash",
        parse_schema_ts,
        "export default i.schema({ entities: { a: i.entity({ b: i.string() }) }, links: { ab: "
        "{ forward: { on: 'a', has: 'one', label: 'b' }, reverse: { on: 'a', has: 'one', "
        "label: 'c' } } } })",
        "a.b is defined twice: by attrs.a.b and by links.ab.forward",
        1,
        127,
    ),
    (
        "json-attribute-type",
        parse_schema_json,
        '{"attrs": {"a": {"b": {"type": "text"}}}}',
        "attrs.a.b.type must be one of string, number, boolean, date, json, any, not 'text'",
        1,
        32,
    ),
    (
        "json-both-shapes",
        parse_schema_json,
        '{"attrs": {}, "entities": {}}',
        "a schema has either attrs (the server-vectors shape) or entities (the i.schema "
        "shape), not both",
        1,
        1,
    ),
]


@pytest.mark.parametrize(
    ("reader", "text", "message", "line", "column"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_error(reader: Reader, text: str, message: str, line: int, column: int) -> None:
    path = Path("app") / "instant.file.ts"
    with pytest.raises(SchemaFileError) as caught:
        reader(text, path=path)
    error = caught.value
    assert error.message == message
    assert (error.line, error.column) == (line, column)
    assert error.path == path
    assert str(error) == f"{path}:{line}:{column}: {message}"
    assert isinstance(error, ValueError)


def test_normalize_errors_name_the_place_in_the_document() -> None:
    with pytest.raises(SchemaFileError) as caught:
        normalize_schema({"attrs": {"a": {"b": {"type": "string", "unique": "yes"}}}})
    assert caught.value.message == "attrs.a.b.unique must be true or false, not 'yes'"
    assert (caught.value.path, caught.value.line) == (None, 0)
    assert str(caught.value) == "attrs.a.b.unique must be true or false, not 'yes'"
