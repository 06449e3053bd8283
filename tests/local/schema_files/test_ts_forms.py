"""Every form of the TypeScript subset that the project files may use."""

from __future__ import annotations

from typing import Any

import pytest

from instantdb_local.schema_files import parse_perms_ts, parse_schema_ts


def _schema(entities: str, links: str = "{}", extra: str = "") -> str:
    return (
        'import { i } from "@instantdb/core";\n'
        f"const _schema = i.schema({{ entities: {entities}, links: {links}{extra} }});\n"
        "export default _schema;\n"
    )


def _attr(
    kind: str, *, unique: bool = False, indexed: bool = False, required: bool = True
) -> dict[str, Any]:
    return {"type": kind, "unique": unique, "indexed": indexed, "required": required}


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        ("i.string()", _attr("string")),
        ("i.number()", _attr("number")),
        ("i.boolean()", _attr("boolean")),
        ("i.date()", _attr("date")),
        ("i.json()", _attr("json")),
        ("i.any()", _attr("any")),
        ("i.string().unique()", _attr("string", unique=True)),
        ("i.string().indexed()", _attr("string", indexed=True)),
        ("i.string().optional()", _attr("string", required=False)),
        ("i.string().clientRequired()", _attr("string", required=False)),
        ("i.number().unique().indexed()", _attr("number", unique=True, indexed=True)),
        (
            "i.date().optional().indexed().unique()",
            _attr("date", unique=True, indexed=True, required=False),
        ),
        ("i.json<{ tags: string[] }>().optional()", _attr("json", required=False)),
        ("i.string<'a' | 'b'>().indexed()", _attr("string", indexed=True)),
        ("i\n  .string()\n  .unique()", _attr("string", unique=True)),
    ],
)
def test_attribute_builders(builder: str, expected: dict[str, Any]) -> None:
    schema = parse_schema_ts(_schema(f"{{ goals: i.entity({{ field: {builder} }}) }}"))
    assert schema == {"attrs": {"goals": {"field": expected}}, "links": {}}


def test_links_with_every_option() -> None:
    links = """{
      goalOwner: {
        forward: { on: "goals", has: "one", label: "owner", onDelete: "cascade", required: true },
        reverse: { on: "$users", has: "many", label: "goals", onDelete: "cascade" },
      },
      tagged: {
        forward: { on: 'goals', has: 'many', label: 'tags' },
        reverse: { on: `tags`, has: `many`, label: `goals` },
      },
    }"""
    schema = parse_schema_ts(_schema("{ goals: i.entity({}), tags: i.entity({}) }", links))
    assert schema["links"] == {
        "goalOwner": {
            "forward": {
                "on": "goals",
                "label": "owner",
                "has": "one",
                "onDelete": "cascade",
                "required": True,
            },
            "reverse": {"on": "$users", "label": "goals", "has": "many", "onDelete": "cascade"},
        },
        "tagged": {
            "forward": {"on": "goals", "label": "tags", "has": "many"},
            "reverse": {"on": "tags", "label": "goals", "has": "many"},
        },
    }
    assert schema["attrs"] == {"goals": {}, "tags": {}}


def test_syntax_the_files_commonly_use() -> None:
    text = """
    /* A block comment
       over lines */
    import { i } from '@instantdb/react'; // a line comment
    import type { InstaQLEntity } from "@instantdb/react";
    import * as helpers from "./helpers";

    export const entities = {
      "quoted-key": i.entity({ 'single': i.string(), "double": i.number(), }),
      bare: i.entity({ `template`: i.boolean() }),
    } as const;

    const links = {};
    const rooms = { chat: { presence: i.entity({ name: i.string() }), topics: {} } };

    const _schema = i.schema({ entities, links, rooms, });
    type _AppSchema = typeof _schema;
    interface AppSchema extends _AppSchema {}
    const schema: AppSchema = _schema;
    export type { AppSchema };
    export { schema as appSchema };
    export type { InstaQLEntity } from "@instantdb/react";
    export type Todo = InstaQLEntity<AppSchema, "bare">;
    export interface Extra<T> extends Array<T> { x: T }
    export default schema!
    """
    assert parse_schema_ts(text) == {
        "attrs": {
            "quoted-key": {"single": _attr("string"), "double": _attr("number")},
            "bare": {"template": _attr("boolean")},
        },
        "links": {},
    }


def test_statements_without_semicolons() -> None:
    text = (
        "import { i } from '@instantdb/core'\n"
        "const _schema = i.schema({ entities: { a: i.entity({ x: i.string() }) } })\n"
        "type T = typeof _schema\n"
        "const schema: T\n  | undefined = _schema\n"
        "export default schema\n"
    )
    assert parse_schema_ts(text) == {"attrs": {"a": {"x": _attr("string")}}, "links": {}}


RULES = {
    "goals": {
        "allow": {"view": "true", "create": False, "delete": "auth.id == data.ownerId"},
        "bind": ["isOwner", "auth.id == data.ownerId"],
        "fields": {"secret": "isOwner"},
    },
    "$default": {"allow": {"$default": None}},
}
RULES_LITERAL = """{
  // comments and trailing commas are fine
  goals: {
    allow: { view: "true", create: false, 'delete': `auth.id == data.ownerId`, },
    bind: ["isOwner", 'auth.id == data.ownerId'],
    fields: { secret: "isOwner" },
  },
  "$default": { allow: { $default: null } },
}"""


@pytest.mark.parametrize(
    "text",
    [
        "import type { InstantRules } from '@instantdb/core';\n"
        f"const rules = {RULES_LITERAL} satisfies InstantRules;\nexport default rules;\n",
        "import type { InstantRules } from '@instantdb/core';\n"
        f"const rules: InstantRules = {RULES_LITERAL};\nexport default rules;\n",
        f"const rules = {RULES_LITERAL};\nexport default rules;\n",
        f"export default {RULES_LITERAL};\n",
        f"export default {RULES_LITERAL} satisfies InstantRules\n",
        f"const rules = {RULES_LITERAL} as const satisfies InstantRules\nexport default rules\n",
    ],
    ids=[
        "satisfies",
        "annotation",
        "plain-const",
        "export-default-object",
        "export-satisfies",
        "as-const",
    ],
)
def test_perms_forms(text: str) -> None:
    assert parse_perms_ts(text) == RULES


def test_perms_values_are_plain_dicts_and_lists() -> None:
    rules = parse_perms_ts(
        "export default { goals: { bind: ['a', 'true'], allow: { view: 'a' } } }"
    )
    assert type(rules) is dict
    assert type(rules["goals"]["bind"]) is list


def test_escapes_in_strings() -> None:
    rules = parse_perms_ts(
        r"""export default { goals: { allow: {
            view: "data.title == \"it's\" && data.tab == '\t' && data.u == '\u00e9\u{1F600}'",
        } } }"""
    )
    assert rules["goals"]["allow"]["view"] == (
        "data.title == \"it's\" && data.tab == '\t' && data.u == 'é😀'"
    )


def test_negative_numbers_and_undefined() -> None:
    rules = parse_perms_ts(
        "export default { $rateLimits: { b: { limits: [{ capacity: 5, refill: -1.5 }] } },"
        " goals: { allow: { view: 'true', update: undefined } } }"
    )
    assert rules == {
        "$rateLimits": {"b": {"limits": [{"capacity": 5, "refill": -1.5}]}},
        "goals": {"allow": {"view": "true"}},
    }
