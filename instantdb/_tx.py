"""The ``db.tx`` builder and the transaction steps it produces.

``db.tx.goals[goal_id].update({...}).link({...})`` builds an immutable `TxChunk`; each
action returns a new chunk with one more step. A step is what goes on the wire:
``[action, namespace, entity, args]`` plus an optional fifth ``opts`` element.

Arguments are checked and converted to JSON when the step is built, so mistakes surface
at the line that made them and a chunk never changes after it is built.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from ._arguments import short_repr
from ._errors import InstantError, InstantTypeError, InstantValueError
from ._ids import check_lookup_attribute, is_lookup, parse_lookup
from ._json import dumps, mapping_to_json, to_json

__all__ = ["Chunks", "NamespaceRef", "TxBuilder", "TxChunk", "steps_of", "with_rule_params"]

Step = tuple[Any, ...]
"""One wire step, already JSON-converted: ``(action, namespace, entity, args[, opts])``."""


class TxChunk:
    """The steps for one entity, built by ``db.tx.<namespace>[<id>]``.

    Immutable: every action method returns a new chunk; the original is unchanged.
    Pass one chunk, or any (nested) list or iterable of chunks, to ``db.transact``.
    """

    __slots__ = ("_entity", "_namespace", "_steps")

    _namespace: str
    _entity: Any
    _steps: tuple[Step, ...]

    def __init__(self, namespace: str, entity: Any, steps: tuple[Step, ...] = ()) -> None:
        # Callers pass an already-validated namespace and wire-form entity.
        object.__setattr__(self, "_namespace", namespace)
        object.__setattr__(self, "_entity", entity)
        object.__setattr__(self, "_steps", steps)

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def steps(self) -> list[list[Any]]:
        """The wire steps, as fresh lists (treat the values inside as read-only)."""
        return [list(step) for step in self._steps]

    def update(self, args: Mapping[str, Any], opts: Mapping[str, Any] | None = None) -> TxChunk:
        """Set attributes (creating the entity if needed, unless ``{"upsert": False}``)."""
        return self._with("update", _attributes(args, "update"), _opts(opts, "update"))

    def merge(self, args: Mapping[str, Any], opts: Mapping[str, Any] | None = None) -> TxChunk:
        """Deep-merge nested objects into attributes; a None value deletes that key."""
        return self._with("merge", _attributes(args, "merge"), _opts(opts, "merge"))

    def create(self, args: Mapping[str, Any]) -> TxChunk:
        """Create the entity; the transaction fails if it already exists."""
        return self._with("create", _attributes(args, "create"), None)

    def delete(self) -> TxChunk:
        """Delete the entity (and its links)."""
        return self._with("delete", None, None)

    def link(self, args: Mapping[str, Any]) -> TxChunk:
        """Link to other entities: ``{"label": id}`` or ``{"label": [id, ...]}``."""
        return self._with("link", _link_targets(args, "link"), None)

    def unlink(self, args: Mapping[str, Any]) -> TxChunk:
        """Remove links: ``{"label": id}`` or ``{"label": [id, ...]}``."""
        return self._with("unlink", _link_targets(args, "unlink"), None)

    def rule_params(self, params: Mapping[str, Any]) -> TxChunk:
        """Values for this entity's permission rules (``ruleParams`` in the rules)."""
        return self._with(
            "ruleParams", mapping_to_json(params, method="rule_params", name="params"), None
        )

    def _with(self, action: str, args: Any, opts: Any) -> TxChunk:
        step: Step = (action, self._namespace, self._entity, args)
        if opts is not None:
            step = (*step, opts)
        return TxChunk(self._namespace, self._entity, (*self._steps, step))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"TxChunk is immutable; its methods return new chunks (set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"TxChunk is immutable (delete {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (TxChunk, (self._namespace, self._entity, self._steps))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TxChunk):
            return NotImplemented
        return (self._namespace, self._entity, self._steps) == (
            other._namespace,
            other._entity,
            other._steps,
        )

    __hash__ = None  # type: ignore[assignment]  # equal chunks hold unhashable dicts

    def __repr__(self) -> str:
        actions = ", ".join(step[0] for step in self._steps) or "no steps yet"
        return f"<TxChunk {self._namespace}[{self._entity!r}]: {actions}>"


_CHUNK_ACTIONS = frozenset({"update", "merge", "create", "delete", "link", "unlink", "rule_params"})


class NamespaceActionError(InstantError, AttributeError):
    """A chunk action called on a namespace, before picking the entity it applies to."""


class NamespaceRef:
    """``db.tx.<namespace>``: index it with an entity id (or a lookup) to get a chunk."""

    __slots__ = ("_name",)

    _name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    @property
    def name(self) -> str:
        return self._name

    def __getitem__(self, entity: object) -> TxChunk:
        return TxChunk(self._name, _wire_entity(entity, self._name))

    def lookup(self, attribute: str, value: object) -> TxChunk:
        """The chunk for the entity whose unique ``attribute`` equals ``value``."""
        check_lookup_attribute(attribute)
        return TxChunk(self._name, [attribute, to_json(value, name="lookup value")])

    def __getattr__(self, name: str) -> NoReturn:
        # The commonest slip with the builder is forgetting the entity id; say so
        # rather than report a missing attribute.
        if name in _CHUNK_ACTIONS:
            raise NamespaceActionError(
                f"db.tx.{self._name}.{name}(...) needs an entity first: "
                f"db.tx.{self._name}[id()].{name}(...) for a new or known id, or "
                f"db.tx.{self._name}[lookup(attr, value)].{name}(...)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"db.tx.{self._name} is read-only (set {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (NamespaceRef, (self._name,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NamespaceRef) and other._name == self._name

    def __hash__(self) -> int:
        return hash(("NamespaceRef", self._name))

    def __repr__(self) -> str:
        return f"<NamespaceRef {self._name!r}>"


class TxBuilder:
    """``db.tx``: ``db.tx.goals`` and ``db.tx["goals"]`` name a namespace.

    Use the subscript form for names that are not Python identifiers (``db.tx["$files"]``).
    Names starting with ``_`` are never namespaces by attribute (so copy, pickle and
    introspection see an ordinary object); ``db.tx["_name"]`` still works.
    """

    __slots__ = ("_namespace_names",)

    _namespace_names: Callable[[], Iterable[str]]

    def __init__(self, namespace_names: Callable[[], Iterable[str]] | None = None) -> None:
        # Tab completion asks this for known names; it must answer without I/O (the
        # client feeds it the namespaces of the last schema() it fetched).
        object.__setattr__(self, "_namespace_names", namespace_names or tuple)

    def __getattr__(self, name: str) -> NamespaceRef:
        if name.startswith("_"):
            raise AttributeError(
                f"{name!r}: names starting with '_' are not looked up as namespaces by "
                f"attribute; use db.tx[{name!r}]"
            )
        return NamespaceRef(name)

    def __getitem__(self, name: str) -> NamespaceRef:
        if not isinstance(name, str):
            raise InstantTypeError(
                f"db.tx[...] takes a namespace name (str), got {type(name).__name__}: {name!r}"
            )
        if not name:
            raise InstantValueError("db.tx[...]: the namespace name must not be empty")
        return NamespaceRef(name)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"db.tx is read-only (set {name!r})")

    def __dir__(self) -> list[str]:
        names = {name for name in self._namespace_names() if name.isidentifier()}
        return sorted(names | set(object.__dir__(self)))

    def _ipython_key_completions_(self) -> list[str]:
        return sorted(self._namespace_names())

    def __reduce__(self) -> tuple[Any, ...]:
        return (TxBuilder, ())

    def __repr__(self) -> str:
        return "<TxBuilder: db.tx.<namespace>[<id>].update({...})>"


Chunks = TxChunk | Iterable[Any]
"""What ``transact`` accepts: a chunk, or a (nested) list or any iterable of chunks."""


def steps_of(chunks: Chunks) -> list[Step]:
    """All steps of ``chunks``, in order, flattening nested lists and iterables."""
    steps: list[Step] = []
    _collect(chunks, "chunks", steps)
    return steps


def _collect(item: object, path: str, steps: list[Step]) -> None:
    if isinstance(item, TxChunk):
        steps.extend(item._steps)
        return
    if isinstance(item, (str, bytes, Mapping)) or not isinstance(item, Iterable):
        raise InstantTypeError(
            f"transact() takes chunks built with db.tx (one, or a list of them), but "
            f"{path} is {type(item).__name__}: {short_repr(item)}"
        )
    for index, child in enumerate(item):
        _collect(child, f"{path}[{index}]", steps)


def with_rule_params(steps: list[Step], params: Mapping[str, Any]) -> list[Step]:
    """``steps`` preceded by one ruleParams step per entity they touch (first-seen order)."""
    converted = mapping_to_json(params, method="transact", name="rule_params")
    seen: set[tuple[str, bytes]] = set()
    prefix: list[Step] = []
    for step in steps:
        key = (step[1], dumps(step[2]))
        if key not in seen:
            seen.add(key)
            prefix.append(("ruleParams", step[1], step[2], converted))
    return prefix + steps


def _wire_entity(entity: object, namespace: str) -> Any:
    """The entity as the server takes it: an id string or an ``[attribute, value]`` pair."""
    if isinstance(entity, str):
        if is_lookup(entity):
            return list(parse_lookup(entity))
        if not entity:
            raise InstantValueError(f"db.tx.{namespace}[...]: the entity id must not be empty")
        return entity
    if isinstance(entity, uuid.UUID):
        return str(entity)
    if isinstance(entity, (list, tuple)) and len(entity) == 2:
        attribute, value = entity
        check_lookup_attribute(attribute)
        return [attribute, to_json(value, name="lookup value")]
    raise InstantTypeError(
        f"db.tx.{namespace}[...] takes an entity id (a str such as instantdb.id(), or a "
        f"UUID), a lookup (instantdb.lookup(attribute, value)) or an (attribute, value) "
        f"pair; got {type(entity).__name__}: {short_repr(entity)}"
    )


def _attributes(args: object, method: str) -> dict[str, Any]:
    return mapping_to_json(args, method=method, name="args")


def _opts(opts: object, method: str) -> dict[str, Any] | None:
    return None if opts is None else mapping_to_json(opts, method=method, name="opts")


def _link_targets(args: object, method: str) -> dict[str, Any]:
    if not isinstance(args, Mapping):
        raise InstantTypeError(
            f"{method}() takes a dict of link label -> id(s), e.g. {{'todos': todo_id}}; "
            f"got {type(args).__name__}: {short_repr(args)}"
        )
    targets: dict[str, Any] = {}
    for label, target in args.items():
        if not isinstance(label, str) or not label:
            raise InstantTypeError(f"{method}(): link labels must be non-empty str, got {label!r}")
        targets[label] = _link_target(target, method, label)
    return targets


def _link_target(target: object, method: str, label: str) -> str | list[str]:
    if isinstance(target, (list, tuple)):
        return [
            _single_target(item, method, f"{label}[{index}]") for index, item in enumerate(target)
        ]
    return _single_target(target, method, label)


def _single_target(target: object, method: str, where: str) -> str:
    # Lookup strings are sent verbatim inside link args: the server parses them there.
    if isinstance(target, uuid.UUID):
        return str(target)
    if isinstance(target, str) and target:
        return str.__str__(target)
    raise InstantTypeError(
        f"{method}(): the target for {where!r} must be an entity id (str or UUID), a "
        f"lookup(), or a list of them; got {type(target).__name__}: {short_repr(target)}"
    )
