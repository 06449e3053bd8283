"""Column types and links from a schema: the ``GET /admin/schema`` body or a plain mapping.

Two inputs are accepted and read into one ``SchemaIndex``:

- the server's schema, ``{"schema": {"refs": {...}, "blobs": {...}}}`` or its inner object:
  ``blobs`` gives each namespace's attributes and their ``checked-data-type``; ``refs``
  gives the links, so nested namespaces (``goals.todos``) resolve to their entity type and
  the link labels of a namespace are known exactly;
- a mapping ``{namespace_or_path: {column: "string"|"number"|"boolean"|"date"|"json"}}``
  written by the user. Nested namespaces are keyed by their dotted path (``"goals.todos"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import FrameError

InstantType = Literal["string", "number", "boolean", "date", "json"]

# "any" is the schema builder's other unchecked type; it behaves exactly like "json".
_TYPE_NAMES: dict[str, InstantType] = {
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
    "json": "json",
    "any": "json",
}
TYPE_NAMES = tuple(_TYPE_NAMES)

# The server's checked types. An attribute without one (i.json(), i.any(), or one created
# by a transaction without a schema) is typed from its values, as if there were no schema.
_CHECKED_TYPES: dict[str, InstantType] = {
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
}


@dataclass(frozen=True)
class SchemaIndex:
    """What a schema says about each namespace (by entity type or by dotted path)."""

    # namespace or path -> column -> declared type (None: known attribute, no checked type)
    columns: Mapping[str, Mapping[str, InstantType | None]] = field(default_factory=dict)
    # entity type -> link label -> entity type at the other end
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # True when built from the server's schema: then an entity type's links are known exactly
    knows_links: bool = False

    def entity_type(self, path: str) -> str | None:
        """The entity type a namespace path ends at, when the schema's links say."""
        first, *labels = path.split(".")
        etype: str | None = first
        for label in labels:
            etype = self.links.get(etype, {}).get(label) if etype is not None else None
        return etype

    def declared_columns(self, path: str) -> Mapping[str, InstantType | None]:
        """The columns the schema declares for a namespace path, with their types."""
        if path in self.columns:
            return self.columns[path]
        etype = self.entity_type(path)
        if etype is not None and etype in self.columns:
            return self.columns[etype]
        return {}

    def link_labels(self, path: str) -> frozenset[str] | None:
        """The link labels of a namespace path, or None when the schema does not know them."""
        if not self.knows_links:
            return None
        etype = self.entity_type(path)
        if etype is None or (etype not in self.links and etype not in self.columns):
            return None
        return frozenset(self.links.get(etype, {}))


EMPTY_SCHEMA = SchemaIndex()


def read_schema(schema: Mapping[str, Any] | None) -> SchemaIndex:
    """Read either schema form; raise ``FrameError`` naming the part that is malformed."""
    if schema is None:
        return EMPTY_SCHEMA
    if not isinstance(schema, Mapping):
        raise FrameError(
            "schema must be the GET /admin/schema body (or its 'schema' object) or a mapping "
            f"{{namespace: {{attribute: type}}}}, got {type(schema).__name__}"
        )
    inner = schema.get("schema")
    if len(schema) == 1 and isinstance(inner, Mapping) and _is_server_schema(inner):
        return _read_server_schema(inner)
    if _is_server_schema(schema):
        return _read_server_schema(schema)
    return _read_type_mapping(schema)


def _is_server_schema(schema: Mapping[str, Any]) -> bool:
    # A user mapping's values map columns to type *names*; the server's "blobs" maps entity
    # types to attribute *records*, and "refs" maps ref keys to records.
    if not schema or not set(schema) <= {"blobs", "refs"}:
        return False
    return all(
        isinstance(part, Mapping) and all(isinstance(v, Mapping) for v in part.values())
        for part in schema.values()
    )


def _read_server_schema(schema: Mapping[str, Any]) -> SchemaIndex:
    columns: dict[str, dict[str, InstantType | None]] = {}
    for etype, attrs in schema.get("blobs", {}).items():
        declared: dict[str, InstantType | None] = {}
        for label, attr in attrs.items():
            if not isinstance(attr, Mapping):
                raise FrameError(
                    f"schema blobs[{etype!r}][{label!r}] should be an attribute record, "
                    f"got {type(attr).__name__}"
                )
            checked = attr.get("checked-data-type")
            declared[str(label)] = _CHECKED_TYPES.get(checked) if isinstance(checked, str) else None
        columns[str(etype)] = declared

    links: dict[str, dict[str, str]] = {}
    for key, attr in schema.get("refs", {}).items():
        forward = _identity(attr, "forward-identity", key)
        reverse = _identity(attr, "reverse-identity", key)
        links.setdefault(forward[0], {})[forward[1]] = reverse[0]
        links.setdefault(reverse[0], {})[reverse[1]] = forward[0]
    return SchemaIndex(columns=columns, links=links, knows_links=True)


def _identity(attr: Mapping[str, Any], name: str, key: str) -> tuple[str, str]:
    identity = attr.get(name)
    if (
        isinstance(identity, list)
        and len(identity) == 3
        and isinstance(identity[1], str)
        and isinstance(identity[2], str)
    ):
        return identity[1], identity[2]
    raise FrameError(
        f"schema refs[{key!r}] should have {name!r} = [id, entity type, label], got {identity!r}"
    )


def _read_type_mapping(schema: Mapping[str, Any]) -> SchemaIndex:
    columns: dict[str, dict[str, InstantType | None]] = {}
    for namespace, types in schema.items():
        if not isinstance(types, Mapping):
            raise FrameError(
                f"schema[{namespace!r}] should map attribute names to type names "
                f"({', '.join(TYPE_NAMES)}), got {type(types).__name__}"
            )
        columns[str(namespace)] = {
            str(column): parse_type_name(name, f"schema[{namespace!r}][{column!r}]")
            for column, name in types.items()
        }
    return SchemaIndex(columns=columns)


def parse_type_name(name: object, where: str) -> InstantType:
    """An Instant type name, or ``FrameError`` saying which names exist."""
    if isinstance(name, str) and name in _TYPE_NAMES:
        return _TYPE_NAMES[name]
    raise FrameError(f"{where} is {name!r}; expected one of {', '.join(TYPE_NAMES)}")
