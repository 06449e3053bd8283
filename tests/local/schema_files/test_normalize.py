"""Schema documents in both accepted shapes, and round trips through TypeScript text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb_local.schema_files import (
    SchemaFileError,
    normalize_schema,
    parse_schema_json,
    parse_schema_ts,
)
from tests.local.vectors import load_cases

VECTORS_SHAPE = {
    "attrs": {
        "goals": {
            "title": {"type": "string", "unique": False, "indexed": True, "required": True},
            "meta": {"type": "json", "unique": False, "indexed": False, "required": False},
        },
        "todos": {},
    },
    "links": {
        "goalTodos": {
            "forward": {"on": "goals", "label": "todos", "has": "many"},
            "reverse": {"on": "todos", "label": "goal", "has": "one", "onDelete": "cascade"},
        }
    },
}

# What JSON.stringify(i.schema({...})) gives for the same schema in @instantdb/core.
JS_EXPORT_SHAPE = {
    "entities": {
        "goals": {
            "attrs": {
                "title": {
                    "valueType": "string",
                    "required": True,
                    "isIndexed": False,
                    "config": {"indexed": True, "unique": False},
                    "metadata": {},
                },
                "meta": {
                    "valueType": "json",
                    "required": False,
                    "config": {"indexed": False, "unique": False},
                    "metadata": {},
                },
            },
            "links": {"todos": {"entityName": "todos", "cardinality": "many"}},
        },
        "todos": {"attrs": {}, "links": {}},
    },
    "links": VECTORS_SHAPE["links"],
    "rooms": {},
}


def test_vectors_shape_is_kept() -> None:
    assert normalize_schema(VECTORS_SHAPE) == VECTORS_SHAPE


def test_js_export_shape_becomes_vectors_shape() -> None:
    assert normalize_schema(JS_EXPORT_SHAPE) == VECTORS_SHAPE


def test_js_is_indexed_flag_counts_as_indexed() -> None:
    doc = {"entities": {"a": {"attrs": {"b": {"valueType": "number", "isIndexed": True}}}}}
    assert normalize_schema(doc)["attrs"]["a"]["b"]["indexed"] is True


def test_missing_flags_default_to_false() -> None:
    assert normalize_schema({"attrs": {"a": {"b": {"type": "date"}}}}) == {
        "attrs": {
            "a": {"b": {"type": "date", "unique": False, "indexed": False, "required": False}}
        },
        "links": {},
    }


def test_empty_document() -> None:
    assert normalize_schema({}) == {"attrs": {}, "links": {}}


def test_json_file_in_either_shape() -> None:
    assert parse_schema_json(json.dumps(JS_EXPORT_SHAPE)) == VECTORS_SHAPE
    assert parse_schema_json(json.dumps(VECTORS_SHAPE)) == VECTORS_SHAPE


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "the schema must be an object"),
        ({"attrs": {}, "rooms": {}}, "unknown key 'rooms' in the schema; expected attrs, links"),
        ({"attrs": {"a": []}}, "attrs.a must be an object keyed by attribute"),
        (
            {"attrs": {"a": {"b": {"unique": True}}}},
            "attrs.a.b needs a type (string, number, boolean, date, json, any)",
        ),
        (
            {"entities": {"a": {"attrs": {"b": {"valueType": "any"}}}}},
            "entities.a.attrs.b.valueType must be one of boolean, date, json, number, string, "
            "not 'any'",
        ),
        ({"links": {"l": {"forward": {}}}}, "links.l needs a reverse side"),
        ({"attrs": {"": {}}}, "namespace names must be non-empty strings"),
    ],
)
def test_invalid_documents(doc: Any, message: str) -> None:
    with pytest.raises(SchemaFileError) as caught:
        normalize_schema(doc)
    assert caught.value.message == message


def test_every_vectors_schema_is_already_normal() -> None:
    schemas = [case.schema for case in load_cases() if case.schema is not None]
    assert schemas
    for schema in schemas:
        assert normalize_schema(schema) == schema


# -- round trips through text ----------------------------------------------------------------------

NAMES = st.text(alphabet="abcXYZ_$-' \"\\é1", min_size=1, max_size=6).filter(
    lambda name: not name.startswith("$") and name != "id"
)
NAMESPACES = st.one_of(NAMES, st.sampled_from(["$users", "$files"]))
ATTRIBUTE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["string", "number", "boolean", "date", "json", "any"]),
        "unique": st.booleans(),
        "indexed": st.booleans(),
        "required": st.booleans(),
    }
)


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, Any]:
    namespaces = draw(st.lists(NAMESPACES, min_size=1, max_size=4, unique=True))
    attrs = {
        namespace: draw(st.dictionaries(NAMES.map(lambda n: "a" + n), ATTRIBUTE, max_size=4))
        for namespace in namespaces
    }
    links: dict[str, Any] = {}
    for index in range(draw(st.integers(min_value=0, max_value=3))):
        forward: dict[str, Any] = {
            "on": draw(st.sampled_from(namespaces)),
            "label": f"l{index}f",
            "has": draw(st.sampled_from(["one", "many"])),
        }
        reverse: dict[str, Any] = {
            "on": draw(st.sampled_from(namespaces)),
            "label": f"l{index}r",
            "has": draw(st.sampled_from(["one", "many"])),
        }
        if draw(st.booleans()):
            forward["onDelete"] = "cascade"
        if draw(st.booleans()):
            reverse["onDelete"] = "cascade"
        if draw(st.booleans()):
            forward["required"] = draw(st.booleans())
        links[f"link{index}"] = {"forward": forward, "reverse": reverse}
    return {"attrs": attrs, "links": links}


def _ts_string(value: str, style: int) -> str:
    if style == 0:
        return json.dumps(value)
    escaped = value.replace("\\", "\\\\").replace(
        "'" if style == 1 else "`", "\\'" if style == 1 else "\\`"
    )
    escaped = escaped.replace("$", "\\$") if style == 2 else escaped
    quote = "'" if style == 1 else "`"
    return f"{quote}{escaped}{quote}"


def _ts_key(value: str, style: int) -> str:
    bare = (
        value.replace("_", "a").replace("$", "a").isalnum()
        and value.isascii()
        and not value[0].isdigit()
    )
    return value if bare and style != 0 else _ts_string(value, style)


def _ts_attribute(spec: dict[str, Any], style: int) -> str:
    modifiers = []
    if spec["unique"]:
        modifiers.append(".unique()")
    if spec["indexed"]:
        modifiers.append(".indexed()")
    if not spec["required"]:
        modifiers.append(".optional()" if style != 2 else ".clientRequired()")
    if style == 1:
        modifiers.reverse()
    generic = "<{ x: number }>" if spec["type"] == "json" and style == 2 else ""
    return f"i.{spec['type']}{generic}()" + "".join(modifiers)


def _ts_object(entries: list[tuple[str, str]], style: int) -> str:
    if not entries:
        return "{}"
    comma = ",\n" if style != 1 else ", "
    trailing = "," if style == 2 else ""
    body = comma.join(f"  {key}: {value}" for key, value in entries)
    return "{\n" + body + trailing + "\n}"


def render_schema_ts(schema: dict[str, Any], style: int) -> str:
    entities = [
        (
            _ts_key(namespace, style),
            "i.entity("
            + _ts_object(
                [
                    (_ts_key(label, style), _ts_attribute(spec, style))
                    for label, spec in attrs.items()
                ],
                style,
            )
            + ")",
        )
        for namespace, attrs in schema["attrs"].items()
    ]
    links = [
        (
            _ts_key(name, style),
            _ts_object(
                [
                    (
                        side,
                        _ts_object(
                            [
                                (
                                    key,
                                    json.dumps(value)
                                    if isinstance(value, bool)
                                    else _ts_string(value, style),
                                )
                                for key, value in link[side].items()
                            ],
                            style,
                        ),
                    )
                    for side in ("forward", "reverse")
                ],
                style,
            ),
        )
        for name, link in schema["links"].items()
    ]
    comment = "// generated\n/* a block\n comment */\n" if style else ""
    return (
        f"{comment}import {{ i }} from '@instantdb/core';\n\n"
        "const _schema = i.schema("
        + _ts_object(
            [
                ("entities", _ts_object(entities, style)),
                ("links", _ts_object(links, style)),
                ("rooms", "{}"),
            ],
            style,
        )
        + ");\n\n"
        "type _AppSchema = typeof _schema;\n"
        "interface AppSchema extends _AppSchema {}\n"
        "const schema: AppSchema = _schema;\n\n"
        "export type { AppSchema };\n"
        "export default schema;\n"
    )


def render_js_export(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "entities": {
            namespace: {
                "attrs": {
                    label: {
                        # i.any() and i.json() both export as "json"
                        "valueType": "json" if spec["type"] == "any" else spec["type"],
                        "required": spec["required"],
                        "config": {"indexed": spec["indexed"], "unique": spec["unique"]},
                        "metadata": {},
                    }
                    for label, spec in attrs.items()
                },
                "links": {},
            }
            for namespace, attrs in schema["attrs"].items()
        },
        "links": schema["links"],
        "rooms": {},
    }


@given(schemas(), st.integers(min_value=0, max_value=2))
def test_rendered_typescript_parses_back_equal(schema: dict[str, Any], style: int) -> None:
    assert parse_schema_ts(render_schema_ts(schema, style)) == schema


@given(schemas())
def test_js_export_normalizes_back_equal(schema: dict[str, Any]) -> None:
    expected = json.loads(json.dumps(schema).replace('"type": "any"', '"type": "json"'))
    assert normalize_schema(render_js_export(schema)) == expected
    assert parse_schema_json(json.dumps(render_js_export(schema))) == expected


@given(schemas())
def test_normalizing_is_idempotent(schema: dict[str, Any]) -> None:
    once = normalize_schema(schema)
    assert normalize_schema(once) == once == schema
