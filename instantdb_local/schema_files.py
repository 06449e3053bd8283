"""Reading an app's ``instant.schema.ts`` / ``instant.perms.ts`` (or JSON equivalents).

No Node at runtime: the TypeScript files are read by a small parser that understands a
documented subset (docs/schema-files.md) and fails with file, line and column for
anything else.

Contract (the instance layer and the ephemeral-app route rely on it):

- `load_project(directory)` reads whichever of ``instant.schema.ts``,
  ``instant.schema.json``, ``instant.perms.ts``, ``instant.perms.json`` exist and
  returns a `ProjectFiles`. A TS file and its JSON twin both existing is an error
  naming the two. The schema comes back normalized (`normalize_schema`) and the rules
  validated (`instantdb_local.perms.RuleSet`), so a bad rule is reported with the
  file, line and column where it is written.
- `parse_schema_ts` / `parse_schema_json` and `parse_perms_ts` / `parse_perms_json`
  read one file's text (``path`` is only used in messages).
- `normalize_schema(doc)` accepts a schema document in the shape of the server vectors
  (``{"attrs": {...}, "links": {...}}``) or the JSON the JS ``i.schema(...)`` builder
  produces (``{"entities": {...}, "links": {...}}``) and returns the former, every
  attribute with all four of ``type``, ``unique``, ``indexed``, ``required``.
- Errors are `SchemaFileError` (a `ValueError`) with ``path``, ``line``, ``column``
  (``line`` and ``column`` are 0 when the problem has no place in a file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from instantdb_local._ts import (
    ArrayLiteral,
    Call,
    Literal,
    Member,
    Module,
    Name,
    Node,
    ObjectLiteral,
    SyntaxProblem,
    parse_module,
    parse_value,
)
from instantdb_local.errors import LocalServerError

SchemaDoc = dict[str, Any]
RulesDoc = dict[str, Any]

SCHEMA_TS = "instant.schema.ts"
SCHEMA_JSON = "instant.schema.json"
PERMS_TS = "instant.perms.ts"
PERMS_JSON = "instant.perms.json"

ATTRIBUTE_TYPES = ("string", "number", "boolean", "date", "json", "any")
_SYSTEM_NAMESPACES = frozenset({"$users", "$files", "$streams"})

Position = tuple[int, int]


class SchemaFileError(LocalServerError, ValueError):
    """A schema or permissions file that cannot be read, with its location."""

    def __init__(self, message: str, *, path: Path | None = None, line: int = 0, column: int = 0):
        where = f"{path}:{line}:{column}: " if path is not None else ""
        if path is not None and not line:
            where = f"{path}: "
        elif path is None and line:
            where = f"line {line}, column {column}: "
        super().__init__(where + message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True)
class ProjectFiles:
    schema: SchemaDoc | None
    rules: RulesDoc | None
    sources: tuple[Path, ...] = field(default_factory=tuple)


# -- values that remember where they were written --------------------------------------------


class _Object(dict[str, Any]):
    """An object literal's value, with the position of each key's value."""

    __slots__ = ("position", "where")

    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position
        self.where: dict[str, Position] = {}


class _List(list[Any]):
    __slots__ = ("position", "where")

    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position
        self.where: list[Position] = []


def _locate(document: Any, path: Sequence[Any]) -> Position | None:
    """Where the value at ``path`` (or its nearest written ancestor) is in the file."""
    found: Position | None = getattr(document, "position", None)
    current = document
    for key in path:
        if isinstance(current, _Object) and key in current:
            found = current.where.get(key, found)
            current = current[key]
        elif isinstance(current, _List) and isinstance(key, int) and 0 <= key < len(current):
            found = current.where[key]
            current = current[key]
        else:
            break
    return found


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists, for callers."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# -- the i.* builders of instant.schema.ts ---------------------------------------------------


@dataclass(frozen=True)
class _Attribute:
    """``i.string().unique()...``: one attribute being described."""

    type: str
    position: Position
    unique: bool = False
    indexed: bool = False
    required: bool = True

    def document(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "unique": self.unique,
            "indexed": self.indexed,
            "required": self.required,
        }


_ATTRIBUTE_MODIFIERS: dict[str, Callable[[_Attribute], _Attribute]] = {
    "unique": lambda a: replace(a, unique=True),
    "indexed": lambda a: replace(a, indexed=True),
    "optional": lambda a: replace(a, required=False),
    # Required only in clients: the server does not enforce it.
    "clientRequired": lambda a: replace(a, required=False),
}


@dataclass(frozen=True)
class _Entity:
    attrs: _Object
    position: Position


@dataclass(frozen=True)
class _Schema:
    document: _Object


class _Builders:
    """The ``i`` namespace of ``@instantdb/*``."""

    def __repr__(self) -> str:
        return "i"


class _Undefined:
    """JavaScript's ``undefined``: a key set to it is left out, as JSON.stringify does."""

    def __repr__(self) -> str:
        return "undefined"


_UNDEFINED = _Undefined()


@dataclass(frozen=True)
class _Method:
    target: Any
    name: str


_BUILDER_FUNCTIONS = ("schema", "entity", *ATTRIBUTE_TYPES)


class _Evaluator:
    """Turns parsed values into Python, applying the ``i`` builders as it goes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.names: dict[str, Any] = {"i": _Builders(), "undefined": _UNDEFINED}

    def fail(self, message: str, node: Node | Position) -> SchemaFileError:
        line, column = node if isinstance(node, tuple) else (node.line, node.column)
        return SchemaFileError(message, path=self.path, line=line, column=column)

    def module(self, module: Module, *, kind: str) -> tuple[Any, Position]:
        """The default export's value and where it is written."""
        for const in module.consts:
            self.names[const.name] = self.defined(const.value)
        exported = module.default_export
        if exported is None:
            raise SchemaFileError(
                f"no `export default` found: {kind} must end with `export default <value>;`",
                path=self.path,
                line=1,
                column=1,
            )
        return self.defined(exported), (exported.line, exported.column)

    def value(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, ObjectLiteral):
            result = _Object((node.line, node.column))
            for entry in node.entries:
                value = self.value(entry.value)
                if value is _UNDEFINED:
                    continue
                result[entry.key] = value
                result.where[entry.key] = _position_of(entry.value)
            return result
        if isinstance(node, ArrayLiteral):
            items = _List((node.line, node.column))
            for item in node.items:
                items.append(self.defined(item))
                items.where.append(_position_of(item))
            return items
        if isinstance(node, Name):
            if node.name not in self.names:
                raise self.fail(
                    f"`{node.name}` is not defined in this file. The file is read, not run: "
                    "write values out, or declare them above with const",
                    node,
                )
            return self.names[node.name]
        if isinstance(node, Member):
            return self.member(self.value(node.target), node)
        assert isinstance(node, Call)
        return self.call(self.value(node.callee), [self.defined(a) for a in node.args], node)

    def defined(self, node: Node) -> Any:
        value = self.value(node)
        if value is _UNDEFINED:
            raise self.fail("undefined is not a value; use null or leave the key out", node)
        return value

    def member(self, target: Any, node: Member) -> Any:
        if isinstance(target, _Builders):
            if node.name == "graph":
                raise self.fail("i.graph(...) is the old schema API; use i.schema({...})", node)
            if node.name not in _BUILDER_FUNCTIONS:
                raise self.fail(
                    f"i.{node.name} is not supported; use one of "
                    + ", ".join(f"i.{name}()" for name in _BUILDER_FUNCTIONS),
                    node,
                )
            return _Method(target, node.name)
        if isinstance(target, _Attribute):
            if node.name not in _ATTRIBUTE_MODIFIERS:
                raise self.fail(
                    f".{node.name}() is not supported on attributes; use "
                    + ", ".join(f".{name}()" for name in _ATTRIBUTE_MODIFIERS),
                    node,
                )
            return _Method(target, node.name)
        raise self.fail(
            f"reading .{node.name} is not supported here; only i.* builders have members", node
        )

    def call(self, callee: Any, args: list[Any], node: Call) -> Any:
        if not isinstance(callee, _Method):
            raise self.fail("only the i.* builders can be called", node)
        position = (node.line, node.column)
        if isinstance(callee.target, _Attribute):
            if args:
                raise self.fail(f".{callee.name}() takes no arguments", node)
            return _ATTRIBUTE_MODIFIERS[callee.name](callee.target)
        if callee.name in ATTRIBUTE_TYPES:
            if args:
                raise self.fail(f"i.{callee.name}() takes no arguments", node)
            return _Attribute(callee.name, _position_of(node.callee))
        if len(args) != 1 or not isinstance(args[0], _Object):
            raise self.fail(
                f"i.{callee.name}() takes one object, like i.{callee.name}({{...}})", node
            )
        if callee.name == "entity":
            return self.entity(args[0], position)
        return self.schema(args[0])

    def entity(self, attrs: _Object, position: Position) -> _Entity:
        for label, value in attrs.items():
            if not isinstance(value, _Attribute):
                raise self.fail(
                    f"the attribute {label!r} must be an i.string(), i.number(), i.boolean(), "
                    "i.date(), i.json() or i.any() builder",
                    attrs.where[label],
                )
        return _Entity(attrs, position)

    def schema(self, definition: _Object) -> _Schema:
        for key in definition:
            if key not in ("entities", "links", "rooms"):
                raise self.fail(
                    f"i.schema() takes entities, links and rooms, not {key!r}",
                    definition.where[key],
                )
        entities = definition.get("entities", _Object(definition.position))
        if not isinstance(entities, _Object):
            raise self.fail(
                "entities must be an object of i.entity(...)", _where(definition, "entities")
            )
        document = _Object(definition.position)
        attrs = _Object(entities.position)
        for namespace, entity in entities.items():
            if not isinstance(entity, _Entity):
                raise self.fail(
                    f"the entity {namespace!r} must be written i.entity({{...}})",
                    entities.where[namespace],
                )
            described = _Object(entity.position)
            for label, attribute in entity.attrs.items():
                described[label] = attribute.document()
                described.where[label] = attribute.position
            attrs[namespace] = described
            attrs.where[namespace] = entities.where[namespace]
        document["attrs"] = attrs
        document.where["attrs"] = attrs.position
        links = definition.get("links")
        if links is not None:
            document["links"] = links
            document.where["links"] = definition.where["links"]
        # rooms only shape presence payloads in clients; the server ignores them.
        return _Schema(document)


def _position_of(node: Node) -> Position:
    while isinstance(node, (Member, Call)):
        node = node.target if isinstance(node, Member) else node.callee
    return (node.line, node.column)


def _where(value: _Object, key: str) -> Position:
    return value.where.get(key, value.position)


# -- normalizing schema documents ------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, message: str, path: Sequence[Any]) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path)


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(part) for part in path)


def _expect_mapping(value: Any, path: Sequence[Any], what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Problem(f"{_dotted(path) or 'the schema'} must be {what}", path)
    return value


def _expect_bool(value: Any, path: Sequence[Any]) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"{_dotted(path)} must be true or false, not {value!r}", path)
    return value


def _check_keys(value: Mapping[str, Any], allowed: Sequence[str], path: Sequence[Any]) -> None:
    for key in value:
        if key not in allowed:
            raise _Problem(
                f"unknown key {key!r} in {_dotted(path) or 'the schema'}; expected "
                + ", ".join(allowed),
                [*path, key],
            )


def _check_namespace(namespace: Any, path: Sequence[Any]) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise _Problem("namespace names must be non-empty strings", path)
    if namespace.startswith("$") and namespace not in _SYSTEM_NAMESPACES:
        raise _Problem(
            f"{namespace} is reserved: only the system namespaces "
            f"{', '.join(sorted(_SYSTEM_NAMESPACES))} may start with $",
            path,
        )


def _attribute_from_vectors(value: Any, path: list[Any]) -> dict[str, Any]:
    spec = _expect_mapping(value, path, "an object with type, unique, indexed and required")
    _check_keys(spec, ("type", "unique", "indexed", "required"), path)
    if "type" not in spec:
        raise _Problem(f"{_dotted(path)} needs a type ({', '.join(ATTRIBUTE_TYPES)})", path)
    kind = spec["type"]
    if kind not in ATTRIBUTE_TYPES:
        raise _Problem(
            f"{_dotted(path)}.type must be one of {', '.join(ATTRIBUTE_TYPES)}, not {kind!r}",
            [*path, "type"],
        )
    return {
        "type": kind,
        "unique": _expect_bool(spec.get("unique", False), [*path, "unique"]),
        "indexed": _expect_bool(spec.get("indexed", False), [*path, "indexed"]),
        "required": _expect_bool(spec.get("required", False), [*path, "required"]),
    }


_JS_VALUE_TYPES = {"string", "number", "boolean", "date", "json"}


def _attribute_from_js(value: Any, path: list[Any]) -> dict[str, Any]:
    spec = _expect_mapping(value, path, "an attribute definition with a valueType")
    _check_keys(spec, ("valueType", "required", "isIndexed", "config", "metadata"), path)
    kind = spec.get("valueType")
    if kind not in _JS_VALUE_TYPES:
        raise _Problem(
            f"{_dotted(path)}.valueType must be one of {', '.join(sorted(_JS_VALUE_TYPES))}, "
            f"not {kind!r}",
            [*path, "valueType"],
        )
    config = _expect_mapping(spec.get("config", {}), [*path, "config"], "an object")
    indexed = _expect_bool(config.get("indexed", False), [*path, "config", "indexed"])
    return {
        "type": kind,
        "unique": _expect_bool(config.get("unique", False), [*path, "config", "unique"]),
        "indexed": indexed or _expect_bool(spec.get("isIndexed", False), [*path, "isIndexed"]),
        "required": _expect_bool(spec.get("required", False), [*path, "required"]),
    }


def _attributes(
    namespaces: Any, path: list[Any], read: Callable[[Any, list[Any]], dict[str, Any]], *, js: bool
) -> dict[str, dict[str, Any]]:
    mapping = _expect_mapping(namespaces, path, "an object keyed by namespace")
    result: dict[str, dict[str, Any]] = {}
    for namespace, entity in mapping.items():
        entity_path = [*path, namespace]
        _check_namespace(namespace, entity_path)
        if js:
            entity_map = _expect_mapping(entity, entity_path, "an entity with attrs")
            _check_keys(entity_map, ("attrs", "links"), entity_path)
            entity_path = [*entity_path, "attrs"]
            entity = entity_map.get("attrs", {})
        labels = _expect_mapping(entity, entity_path, "an object keyed by attribute")
        result[namespace] = {}
        for label, spec in labels.items():
            if label == "id":
                raise _Problem(
                    f"{namespace}.id is implicit on every namespace; remove it from the schema",
                    [*entity_path, label],
                )
            if not isinstance(label, str) or not label:
                raise _Problem("attribute names must be non-empty strings", entity_path)
            result[namespace][label] = read(spec, [*entity_path, label])
    return result


def _link_side(value: Any, path: list[Any], *, forward: bool) -> dict[str, Any]:
    allowed = (
        ("on", "has", "label", "onDelete", "required")
        if forward
        else (
            "on",
            "has",
            "label",
            "onDelete",
        )
    )
    side = _expect_mapping(value, path, "an object with on, has and label")
    _check_keys(side, allowed, path)
    for key in ("on", "has", "label"):
        if key not in side:
            raise _Problem(f"{_dotted(path)} needs {key}", path)
    _check_namespace(side["on"], [*path, "on"])
    if side["has"] not in ("one", "many"):
        raise _Problem(
            f'{_dotted(path)}.has must be "one" or "many", not {side["has"]!r}', [*path, "has"]
        )
    label = side["label"]
    if not isinstance(label, str) or not label or label == "id":
        raise _Problem(
            f"{_dotted(path)}.label must be a non-empty name other than id", [*path, "label"]
        )
    described: dict[str, Any] = {"on": side["on"], "label": label, "has": side["has"]}
    if side.get("onDelete") is not None:
        if side["onDelete"] != "cascade":
            raise _Problem(
                f'{_dotted(path)}.onDelete can only be "cascade", not {side["onDelete"]!r}',
                [*path, "onDelete"],
            )
        described["onDelete"] = "cascade"
    if forward and side.get("required") is not None:
        described["required"] = _expect_bool(side["required"], [*path, "required"])
    return described


def _links(value: Any) -> dict[str, dict[str, Any]]:
    links = _expect_mapping(value, ["links"], "an object keyed by link name")
    result: dict[str, dict[str, Any]] = {}
    for name, link in links.items():
        path: list[Any] = ["links", name]
        spec = _expect_mapping(link, path, "an object with forward and reverse")
        _check_keys(spec, ("forward", "reverse"), path)
        for side in ("forward", "reverse"):
            if side not in spec:
                raise _Problem(f"{_dotted(path)} needs a {side} side", path)
        result[name] = {
            "forward": _link_side(spec["forward"], [*path, "forward"], forward=True),
            "reverse": _link_side(spec["reverse"], [*path, "reverse"], forward=False),
        }
    return result


def _check_label_clashes(attrs: Mapping[str, Any], links: Mapping[str, Any]) -> None:
    owners: dict[tuple[str, str], str] = {}
    for namespace, labels in attrs.items():
        for label in labels:
            owners[(namespace, label)] = f"attrs.{namespace}.{label}"
    for name, link in links.items():
        for side in ("forward", "reverse"):
            key = (link[side]["on"], link[side]["label"])
            here = f"links.{name}.{side}"
            if key in owners:
                raise _Problem(
                    f"{key[0]}.{key[1]} is defined twice: by {owners[key]} and by {here}",
                    ["links", name, side, "label"],
                )
            owners[key] = here


def _normalize(doc: Any) -> SchemaDoc:
    schema = _expect_mapping(doc, [], "an object")
    if "attrs" in schema and "entities" in schema:
        raise _Problem(
            "a schema has either attrs (the server-vectors shape) or entities (the i.schema "
            "shape), not both",
            [],
        )
    if "entities" in schema:
        _check_keys(schema, ("entities", "links", "rooms"), [])
        attrs = _attributes(schema["entities"], ["entities"], _attribute_from_js, js=True)
    else:
        _check_keys(schema, ("attrs", "links"), [])
        attrs = _attributes(schema.get("attrs", {}), ["attrs"], _attribute_from_vectors, js=False)
    links = _links(schema.get("links", {}))
    _check_label_clashes(attrs, links)
    return {"attrs": attrs, "links": links}


def _schema_error(problem: _Problem, document: Any, path: Path | None) -> SchemaFileError:
    position = _locate(document, problem.path)
    line, column = position if position is not None else (0, 0)
    return SchemaFileError(problem.message, path=path, line=line, column=column)


def normalize_schema(doc: Mapping[str, Any]) -> SchemaDoc:
    try:
        return _normalize(doc)
    except _Problem as problem:
        raise _schema_error(problem, doc, None) from None


# -- rules -----------------------------------------------------------------------------------


def _check_rules(document: Any, path: Path | None) -> RulesDoc:
    from instantdb_local.errors import ServerError
    from instantdb_local.perms import RuleSet

    if not isinstance(document, Mapping):
        position = getattr(document, "position", (1, 1))
        raise SchemaFileError(
            "the permissions must be an object keyed by namespace",
            path=path,
            line=position[0],
            column=position[1],
        )
    try:
        RuleSet.from_document(document)
    except ServerError as error:
        problems = (error.hint or {}).get("errors") or [{}]
        position = _locate(document, problems[0].get("in", []))
        line, column = position if position is not None else (0, 0)
        raise SchemaFileError(error.message, path=path, line=line, column=column) from None
    rules: RulesDoc = _plain(document)
    return rules


# -- reading files ---------------------------------------------------------------------------


def _syntax_error(problem: SyntaxProblem, path: Path | None) -> SchemaFileError:
    return SchemaFileError(problem.message, path=path, line=problem.line, column=problem.column)


def _evaluate_module(text: str, path: Path | None, kind: str) -> tuple[Any, Position]:
    try:
        module = parse_module(text)
    except SyntaxProblem as problem:
        raise _syntax_error(problem, path) from None
    return _Evaluator(path).module(module, kind=kind)


def _read_json(text: str, path: Path | None) -> Any:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaFileError(
            f"invalid JSON: {exc.msg}", path=path, line=exc.lineno, column=exc.colno
        ) from None
    # Read again with positions, so later errors can point into the file.
    try:
        return _Evaluator(path).value(parse_value(text))
    except SyntaxProblem as problem:
        raise _syntax_error(problem, path) from None


def parse_schema_ts(text: str, *, path: Path | None = None) -> SchemaDoc:
    value, (line, column) = _evaluate_module(text, path, SCHEMA_TS)
    if not isinstance(value, _Schema):
        raise SchemaFileError(
            "the default export must be the i.schema({...}) value",
            path=path,
            line=line,
            column=column,
        )
    try:
        return _normalize(value.document)
    except _Problem as problem:
        raise _schema_error(problem, value.document, path) from None


def parse_schema_json(text: str, *, path: Path | None = None) -> SchemaDoc:
    document = _read_json(text, path)
    try:
        return _normalize(document)
    except _Problem as problem:
        raise _schema_error(problem, document, path) from None


def parse_perms_ts(text: str, *, path: Path | None = None) -> RulesDoc:
    value, _ = _evaluate_module(text, path, PERMS_TS)
    return _check_rules(value, path)


def parse_perms_json(text: str, *, path: Path | None = None) -> RulesDoc:
    return _check_rules(_read_json(text, path), path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaFileError(f"the file is not UTF-8 text ({exc.reason})", path=path) from None
    except OSError as exc:
        raise SchemaFileError(f"cannot read the file: {exc.strerror}", path=path) from None


def _pick(directory: Path, ts_name: str, json_name: str) -> Path | None:
    ts_file, json_file = directory / ts_name, directory / json_name
    if ts_file.is_file() and json_file.is_file():
        raise SchemaFileError(
            f"both {ts_name} and {json_name} exist; keep only one of them", path=directory
        )
    for candidate in (ts_file, json_file):
        if candidate.is_file():
            return candidate
    return None


def _project_dir(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise SchemaFileError("no such directory", path=directory)
    return directory


_Doc = TypeVar("_Doc", covariant=True)


class _Reader(Protocol[_Doc]):
    """A parser of one kind of project file (``parse_schema_ts``, ``parse_perms_json``, ...)."""

    def __call__(self, text: str, *, path: Path | None = None) -> _Doc: ...


def load_schema_file(directory: Path) -> tuple[Path, SchemaDoc] | None:
    """The project's schema file and what it holds, or None if it has none."""
    return _load(directory, SCHEMA_TS, SCHEMA_JSON, parse_schema_ts, parse_schema_json)


def load_perms_file(directory: Path) -> tuple[Path, RulesDoc] | None:
    """The project's permissions file and its rules, or None if it has none."""
    return _load(directory, PERMS_TS, PERMS_JSON, parse_perms_ts, parse_perms_json)


def _load(
    directory: Path,
    ts_name: str,
    json_name: str,
    read_ts: _Reader[_Doc],
    read_json: _Reader[_Doc],
) -> tuple[Path, _Doc] | None:
    found = _pick(_project_dir(directory), ts_name, json_name)
    if found is None:
        return None
    reader = read_ts if found.suffix == ".ts" else read_json
    return found, reader(_read(found), path=found)


def load_project(directory: Path) -> ProjectFiles:
    """Both project files at once; the first that cannot be read raises."""
    schema = load_schema_file(directory)
    perms = load_perms_file(directory)
    sources = tuple(loaded[0] for loaded in (schema, perms) if loaded is not None)
    return ProjectFiles(
        schema[1] if schema is not None else None,
        perms[1] if perms is not None else None,
        sources,
    )
