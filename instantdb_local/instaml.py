"""InstaML: validate transaction steps, create missing attributes, write triples.

A transaction runs in the order the real server uses:

1. every step is checked against the step spec (``Validation failed for steps``);
2. attributes the steps name but the catalog lacks are created (or refused with
   ``throw-on-missing-attrs?``);
3. lookups are resolved; a lookup that matches nothing gets a new entity (upsert);
4. steps expand into operations, grouped by kind (add, deep-merge, retract, delete)
   and the groups run in the order each kind first appears;
5. indexed attributes are null-filled and required attributes checked.

The caller owns the SQLite transaction, so any error rolls everything back.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import attrs as attrs_module
from . import entities, order_gaps, values
from .attrs import SYSTEM_COLUMNS, USER_SYSTEM_NAMESPACES, Attr, Catalog, Link
from .errors import (
    ServerError,
    attr_id_not_unique,
    ident_not_unique,
    record_not_unique,
    sql_raise,
    validation_failed,
)
from .ids import LookupRef, is_uuid, new_id, parse_eid, parse_link_target

ACTIONS = ("create", "update", "merge", "delete", "link", "unlink", "ruleParams")
ATTR_ACTIONS = ("add-attr", "delete-attr", "update-attr")
# Postgres can only index values up to a size; the real server refuses larger values
# for indexed and unique attributes rather than storing them unindexed.
MAX_INDEXED_VALUE_BYTES = 1024
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Step:
    index: int
    action: str
    etype: str
    raw_eid: Any
    eid: str | LookupRef | None
    args: dict[str, Any]
    opts: dict[str, Any]


@dataclass
class AttrStep:
    index: int
    action: str
    payload: Any


# -- step spec -------------------------------------------------------------------------


def _spec_error(steps: Any, index: int, position: int, expected: str) -> ServerError:
    return validation_failed("steps", steps, [{"expected": expected, "in": [index, position]}])


def _is_link_value(value: Any) -> bool:
    if isinstance(value, str):
        return parse_link_target(value) is not None
    if isinstance(value, Mapping):
        return len(value) == 1
    if isinstance(value, list):
        # Inside a list the spec is looser: any string or lookup map passes, and a
        # non-UUID string fails later with "Linked value must be a valid uuid."
        return all(isinstance(v, str) or (isinstance(v, Mapping) and len(v) == 1) for v in value)
    return False


def parse_steps(steps: Any) -> tuple[list[Step], list[AttrStep]]:
    """Check every step against the step spec, in order, before anything runs."""
    if not isinstance(steps, list):
        raise validation_failed("steps", steps, [{"expected": "coll?", "in": []}])
    parsed: list[Step] = []
    attr_steps: list[AttrStep] = []
    for index, raw in enumerate(steps):
        if not isinstance(raw, list) or not raw:
            raise _spec_error(steps, index, 0, "vector?")
        action = raw[0]
        if action in ATTR_ACTIONS:
            if len(raw) != 2:
                raise _spec_error(steps, index, 1, "attr")
            attr_steps.append(AttrStep(index, str(action), raw[1]))
            continue
        if action not in ACTIONS:
            raise _spec_error(steps, index, 0, "#{" + " ".join(ACTIONS + ATTR_ACTIONS) + "}")
        if len(raw) < 3 or len(raw) > 5:
            raise _spec_error(steps, index, min(len(raw), 3), "[action etype eid args opts?]")
        etype = raw[1]
        if not isinstance(etype, str) or not etype:
            raise _spec_error(steps, index, 1, "string?")
        raw_eid = raw[2]
        # Most ids arrive canonical, which is what parsing would make of them anyway.
        canonical = type(raw_eid) is str and _CANONICAL_UUID.fullmatch(raw_eid) is not None
        eid = raw_eid if canonical else parse_eid(raw_eid)
        if eid is None:
            raise validation_failed(
                "steps",
                steps,
                [
                    {
                        "message": f"Invalid entity ID '{_display(raw[2])}'. Entity IDs must be "
                        "UUIDs or lookup references.",
                        "in": [index, 2],
                    }
                ],
            )
        args = raw[3] if len(raw) > 3 else None
        if action == "delete":
            args = {}
        elif not isinstance(args, Mapping):
            raise _spec_error(steps, index, 3, "map?")
        if action in ("link", "unlink"):
            for label, value in args.items():
                if not _is_link_value(value):
                    raise validation_failed(
                        "steps", steps, [{"expected": "link-value?", "in": [index, 3, label]}]
                    )
        opts = raw[4] if len(raw) > 4 else None
        if opts is not None and not isinstance(opts, Mapping):
            raise _spec_error(steps, index, 4, "map?")
        parsed.append(Step(index, action, etype, raw[2], eid, dict(args), dict(opts or {})))
    return parsed, attr_steps


def _display(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- operations --------------------------------------------------------------------------


@dataclass
class AddEntity:
    etype: str
    eid: str
    mode: str | None = None  # "create" | "strict-update": existence checks
    written: int = 1
    shown_eid: str = ""


@dataclass
class SetValueOp:
    attr: Attr
    eid: str
    value: Any
    text: str | None = None  # the value's JSON text, when validation already made it


@dataclass
class AddLink:
    link: Link
    source: str  # forward-side entity
    target: str  # reverse-side entity
    step_etype: str
    step_eid: str


@dataclass
class MergeValue:
    attr: Attr
    eid: str
    patch: Any


@dataclass
class RemoveLink:
    link: Link
    source: str
    target: str
    step_etype: str
    step_eid: str


@dataclass
class DeleteEntity:
    etype: str
    eid: str


Op = AddEntity | SetValueOp | AddLink | MergeValue | RemoveLink | DeleteEntity


def _kind(op: Op) -> str:
    if isinstance(op, (AddEntity, SetValueOp, AddLink)):
        return "add"
    if isinstance(op, MergeValue):
        return "merge"
    if isinstance(op, RemoveLink):
        return "retract"
    return "delete"


@dataclass
class Touch:
    """What a transaction did to one entity (for permission checks)."""

    etype: str
    eid: str
    existed_before: bool = False
    modified: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)  # link labels (forward side) changed
    deleted: bool = False
    cascade_from: tuple[str, str] | None = None
    written: bool = False  # had an add or merge


@dataclass
class LinkChange:
    action: str  # "link" | "unlink"
    link: Link
    source: str
    target: str
    step_etype: str
    step_eid: str


@dataclass
class Effects:
    touches: dict[tuple[str, str], Touch] = field(default_factory=dict)
    links: list[LinkChange] = field(default_factory=list)
    new_attrs: list[Attr] = field(default_factory=list)
    rule_params: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    attr_steps: list[AttrStep] = field(default_factory=list)
    # `$files` rows this transaction deleted, so storage can drop their blobs.
    deleted_files: list[dict[str, Any]] = field(default_factory=list)

    def touch(self, etype: str, eid: str) -> Touch:
        key = (etype, eid)
        if key not in self.touches:
            self.touches[key] = Touch(etype, eid)
        return self.touches[key]


# -- the transaction ---------------------------------------------------------------------


class Transaction:
    """One InstaML transaction against an open SQLite write transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        catalog: Catalog,
        steps: Any,
        *,
        is_admin: bool,
        throw_on_missing_attrs: bool = False,
        system_writes: bool = False,
    ) -> None:
        self.conn = conn
        self.catalog = catalog
        self.raw_steps = steps
        self.is_admin = is_admin
        self.throw_on_missing_attrs = throw_on_missing_attrs
        self.system_writes = system_writes
        self.steps, self.attr_steps = parse_steps(steps)
        self.effects = Effects(attr_steps=self.attr_steps)
        self.ops: list[Op] = []
        self._lookup_ids: dict[tuple[str, tuple[str, str]], str] = {}
        self._lookup_new: set[tuple[str, tuple[str, str]]] = set()
        self._original_catalog = catalog
        # Entities `apply` ensured exist and deleted, by namespace (for the order gaps).
        self._added: dict[str, list[str]] = {}
        self._deleted: dict[str, list[str]] = {}
        # Writes `apply` buffers until something reads (see `_flush`).
        self._pending_entities: list[tuple[str, str, int]] = []
        self._pending_values: dict[tuple[str, str], tuple[Any, ...]] = {}

    # -- 2. attributes ----------------------------------------------------------------

    def prepare_attrs(self) -> list[Attr]:
        """Create (or refuse) every attribute the steps need; returns the new ones."""
        new: list[Attr] = []
        self._apply_attr_steps(new)
        missing: list[str] = []
        planned: dict[tuple[str, str], Attr] = {}

        def plan(attr: Attr, report: bool = True) -> None:
            key = (attr.etype, attr.label)
            if key in planned:
                return
            self._check_reserved(attr.etype, attr.label)
            planned[key] = attr
            if report:
                missing.append(f"{attr.etype}.{attr.label}")

        def ensure_etype(etype: str) -> None:
            if not self.catalog.has_etype(etype) and (etype, "id") not in planned:
                plan(attrs_module.new_attr(etype, "id", unique=True), report=False)

        def known_link(etype: str, label: str) -> bool:
            if self.catalog.link(etype, label) is not None:
                return True
            attr = planned.get((etype, label))
            if attr is not None and attr.is_ref:
                return True
            return self._planned_reverse(planned, etype, label)

        def plan_ref(etype: str, label: str, *, one_to_one: bool) -> None:
            if known_link(etype, label):
                return
            if self.catalog.forward(etype, label) is not None or (etype, label) in planned:
                return  # a blob with that name: the step fails later with a clear error
            ensure_etype(label)
            plan(
                attrs_module.new_attr(
                    etype,
                    label,
                    value_type="ref",
                    cardinality="one" if one_to_one else "many",
                    unique=one_to_one,
                    indexed=one_to_one,
                    rev_etype=label,
                    rev_label=etype,
                )
            )

        def plan_lookup(etype: str, lookup: LookupRef) -> None:
            head, _, rest = lookup.label.partition(".")
            if rest:
                plan_ref(etype, head, one_to_one=True)
                return
            if head == "id":
                return
            unknown = self.catalog.forward(etype, head) is None and (etype, head) not in planned
            if unknown and self.catalog.link(etype, head) is None:
                plan(attrs_module.new_attr(etype, head, unique=True, indexed=True))

        for step in self.steps:
            if step.action == "ruleParams":
                continue
            ensure_etype(step.etype)
            if isinstance(step.eid, LookupRef):
                plan_lookup(step.etype, step.eid)
            if step.action in ("create", "update", "merge"):
                for label in step.args:
                    if label == "id":
                        continue
                    if self.catalog.forward(step.etype, label) is not None:
                        continue
                    if self.catalog.link(step.etype, label) is not None:
                        continue
                    if (step.etype, label) in planned:
                        continue
                    plan(attrs_module.new_attr(step.etype, label))
            elif step.action in ("link", "unlink"):
                for label, value in step.args.items():
                    lookup_target = _has_lookup_target(value)
                    dotted = isinstance(step.eid, LookupRef) and "." in step.eid.label
                    plan_ref(step.etype, label, one_to_one=lookup_target or dotted)
                    link = self.catalog.link(step.etype, label)
                    target_etype = link.target_etype if link is not None else label
                    for target in _link_targets(value):
                        parsed = parse_link_target(target)
                        if isinstance(parsed, LookupRef):
                            plan_lookup(target_etype, parsed)

        if missing and self.throw_on_missing_attrs:
            raise validation_failed(
                "steps",
                self.raw_steps,
                [
                    {
                        "message": "Attributes are missing in your schema",
                        "hint": {"attributes": missing},
                    }
                ],
            )
        for attr in planned.values():
            attrs_module.insert(self.conn, attr)
            new.append(attr)
        if new:
            self.catalog = Catalog.of([*self.catalog.attrs, *new])
        self.effects.new_attrs = new
        return new

    @staticmethod
    def _planned_reverse(planned: Mapping[tuple[str, str], Attr], etype: str, label: str) -> bool:
        return any(
            a.is_ref and a.rev_etype == etype and a.rev_label == label for a in planned.values()
        )

    def _check_reserved(self, etype: str, label: str) -> None:
        if not etype.startswith("$"):
            return
        if etype in USER_SYSTEM_NAMESPACES and self.catalog.has_etype(etype):
            return
        raise validation_failed(
            "tx-step",
            self.raw_steps,
            [
                {
                    "message": f"$ is reserved for system tables. You can't create {etype}"
                    if not self.catalog.has_etype(etype)
                    else f"{etype} is a system table. You can't add `{label}` to it."
                }
            ],
        )

    def _apply_attr_steps(self, new: list[Attr]) -> None:
        for step in self.attr_steps:
            if not self.is_admin:
                # Refused by the permission layer with an "attr" scope check.
                continue
            if step.action == "add-attr":
                attr = _attr_from_record(self.raw_steps, step)
                if self.catalog.forward(attr.etype, attr.label) is not None:
                    raise ident_not_unique(attr.etype, attr.label)
                if self.catalog.by_id(attr.id) is not None:
                    raise attr_id_not_unique(attr.id)
                self._check_reserved(attr.etype, attr.label)
                attrs_module.insert(self.conn, attr)
                new.append(attr)
                extra = [attr]
                if not self.catalog.has_etype(attr.etype) and attr.label != "id":
                    id_attr = attrs_module.new_attr(attr.etype, "id", unique=True)
                    attrs_module.insert(self.conn, id_attr)
                    new.append(id_attr)
                    extra.append(id_attr)
                self.catalog = Catalog.of([*self.catalog.attrs, *extra])
            else:
                raise validation_failed(
                    "tx-step",
                    self.raw_steps,
                    [
                        {
                            "message": f"`{step.action}` is not supported by the local server; "
                            "change the schema file instead.",
                            "in": [step.index, 0],
                        }
                    ],
                )

    # -- 3. lookups -------------------------------------------------------------------

    def _lookup_attr(self, etype: str, lookup: LookupRef) -> Attr | Link | None:
        head, _, rest = lookup.label.partition(".")
        if rest:
            link = self.catalog.link(etype, head)
            if link is None and self.catalog.forward(etype, head) is not None:
                raise validation_failed(
                    "lookup",
                    [lookup.label, lookup.value],
                    [
                        {
                            "message": f"{etype}.{head} is an attribute, not a link, so "
                            f"`{lookup.label}` can't be used as a lookup."
                        }
                    ],
                )
            return link
        if head == "id":
            return None
        attr = self.catalog.forward(etype, head)
        if attr is None:
            return self.catalog.link(etype, head)
        if not attr.unique:
            raise validation_failed(
                "lookup",
                [lookup.label, lookup.value],
                [{"message": f"{head} is not a unique attribute on {etype}"}],
            )
        return attr

    def _find_lookup(self, etype: str, lookup: LookupRef) -> str | None:
        target = self._lookup_attr(etype, lookup)
        if target is None:
            if lookup.label == "id":
                if not is_uuid(lookup.value):
                    raise validation_failed(
                        "lookup",
                        [lookup.label, lookup.value],
                        [{"message": "A lookup on `id` needs a UUID value."}],
                    )
                return str(lookup.value).lower()
            return None
        if isinstance(target, Link):
            value = lookup.value
            if not is_uuid(value):
                raise validation_failed(
                    "lookup",
                    [lookup.label, lookup.value],
                    [{"message": f"Expected {lookup.label} to be a uuid."}],
                )
            pairs = self.conn.execute(
                "SELECT entity, vkey FROM triples WHERE attr = ? AND "
                + ("vkey = ?" if target.forward else "entity = ?")
                + " LIMIT 1",
                (target.attr.id, str(value).lower()),
            ).fetchone()
            if pairs is None:
                return None
            return str(pairs[0] if target.forward else pairs[1])
        return entities.lookup(self.conn, target, lookup.value)

    def _resolve_eid(self, etype: str, eid: str | LookupRef, *, create: bool) -> str | None:
        if isinstance(eid, str):
            return eid
        key = (etype, eid.key())
        if key in self._lookup_ids:
            return self._lookup_ids[key]
        found = self._find_lookup(etype, eid)
        if found is None:
            if not create:
                return None
            found = new_id()
            self._lookup_new.add(key)
        self._lookup_ids[key] = found
        return found

    def _resolve_target(self, etype: str, raw: Any) -> str:
        target = parse_link_target(raw) if not isinstance(raw, str) or not is_uuid(raw) else raw
        # Anything that is neither a UUID nor a lookup (a bad string, a number, a bool, a
        # map of several keys) is the same client error.
        if target is None:
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [
                    {
                        "message": "Linked value must be a valid uuid."
                        if self.is_admin
                        else "Expected link value to be a uuid."
                    }
                ],
            )
        if isinstance(target, LookupRef):
            key = (etype, target.key())
            found = self._lookup_ids.get(key)
            if found is None:
                found = self._find_lookup(etype, target)
            if found is None:
                raise validation_failed(
                    "lookup",
                    [target.label, target.value],
                    [{"message": "The entity for the lookup does not exist."}],
                )
            return found
        assert isinstance(target, str)
        return target.lower()

    # -- 4. expansion -----------------------------------------------------------------

    def expand(self) -> list[Op]:
        # Lookups in the eid position create entities, so resolve them all first: a
        # link target may name an entity another step creates through its lookup.
        resolved: list[str | None] = []
        for step in self.steps:
            if step.eid is None:
                resolved.append(None)
                continue
            create = step.action not in ("delete", "ruleParams")
            resolved.append(self._resolve_eid(step.etype, step.eid, create=create))
        created_lookups: set[tuple[str, tuple[str, str]]] = set()
        for step, eid in zip(self.steps, resolved, strict=True):
            self._check_system_write(step)
            if eid is None:
                continue  # delete through a lookup that matches nothing: a no-op
            if step.action == "ruleParams":
                params = self.effects.rule_params.setdefault((step.etype, eid), {})
                params.update(step.args)
                continue
            if isinstance(step.eid, LookupRef):
                key = (step.etype, step.eid.key())
                if key in self._lookup_new and key not in created_lookups:
                    created_lookups.add(key)
                    self._check_lookup_rename(step)
                    self.ops.append(AddEntity(step.etype, eid))
                    self._emit_lookup_value(step.etype, eid, step.eid)
            getattr(self, f"_expand_{step.action}")(step, eid)
        return self.ops

    def _check_lookup_rename(self, step: Step) -> None:
        assert isinstance(step.eid, LookupRef)
        label = step.eid.label
        renames = step.action in ("update", "merge", "create") and label in step.args
        if renames and values.key_of(step.args[label]) != values.key_of(step.eid.value):
            raise validation_failed(
                "lookup",
                [label, step.eid.value],
                [
                    {
                        "message": "Updates with lookups can only update the lookup "
                        "attribute if an entity with the unique attribute value already "
                        "exists."
                    }
                ],
            )

    def _emit_lookup_value(self, etype: str, eid: str, lookup: LookupRef) -> None:
        head, _, rest = lookup.label.partition(".")
        if rest:
            link = self.catalog.link(etype, head)
            assert link is not None
            target = str(lookup.value).lower()
            self._emit_link(link, eid, target, etype, eid)
            return
        if head == "id":
            return
        attr = self.catalog.forward(etype, head)
        assert attr is not None
        self._emit_value(attr, etype, eid, lookup.value)

    def _system_error(self, etype: str, label: str) -> ServerError:
        return validation_failed(
            "tx-step",
            self.raw_steps,
            [
                {
                    "message": f"{etype}.{label} is a system column. You aren't allowed to "
                    "change this directly."
                }
            ],
        )

    def _check_system_write(self, step: Step) -> None:
        if self.system_writes or step.etype not in SYSTEM_COLUMNS:
            return
        if step.action not in ("create", "update", "merge", "link", "unlink"):
            return
        columns = SYSTEM_COLUMNS[step.etype]
        if step.etype == "$users" and self.is_admin:
            return
        for label in step.args:
            if label in columns:
                raise self._system_error(step.etype, label)

    def _attr_for_write(self, etype: str, label: str) -> Attr | Link:
        attr = self.catalog.forward(etype, label)
        if attr is not None and not attr.is_ref:
            return attr
        link = self.catalog.link(etype, label)
        if link is None:  # pragma: no cover - prepare_attrs created it
            raise validation_failed(
                "tx-step", self.raw_steps, [{"message": f"Unknown attribute {etype}.{label}"}]
            )
        return link

    def _entity_op(self, step: Step, eid: str, written: int) -> AddEntity:
        mode = None
        if step.action == "create":
            mode = "create"
        elif step.action in ("update", "merge") and step.opts.get("upsert") is False:
            mode = "strict-update"
        return AddEntity(step.etype, eid, mode, written)

    def _expand_update(self, step: Step, eid: str) -> None:
        labels = [label for label in step.args if label != "id"]
        self.ops.append(self._entity_op(step, eid, len(labels) + 1))
        for label in labels:
            value = step.args[label]
            target = self._attr_for_write(step.etype, label)
            if isinstance(target, Link):
                for raw in _link_targets(value) if value is not None else []:
                    other = self._resolve_target(target.target_etype, raw)
                    self._emit_link(target, eid, other, step.etype, eid)
            else:
                self._emit_value(target, step.etype, eid, value)

    _expand_create = _expand_update

    def _expand_merge(self, step: Step, eid: str) -> None:
        labels = [label for label in step.args if label != "id"]
        self.ops.append(self._entity_op(step, eid, len(labels) + 1))
        for label in labels:
            target = self._attr_for_write(step.etype, label)
            if isinstance(target, Link):
                raise sql_raise("merge operation is not supported for links")
            patch = step.args[label]
            self._check_value(target, eid, patch, check_type=False)
            self.ops.append(MergeValue(target, eid, patch))
            self.effects.touch(step.etype, eid).modified.append(label)

    def _expand_delete(self, step: Step, eid: str) -> None:
        if step.etype == "$users" and not (self.is_admin or self.system_writes):
            raise self._system_entity_error("delete")
        self.ops.append(DeleteEntity(step.etype, eid))

    def _system_entity_error(self, verb: str) -> ServerError:
        return validation_failed(
            "tx-step",
            self.raw_steps,
            [
                {
                    "message": f"$users is a system entity. You aren't allowed to {verb} this "
                    "directly."
                }
            ],
        )

    def _link_for(self, step: Step, label: str) -> Link:
        link = self.catalog.link(step.etype, label)
        if link is None:
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [
                    {
                        "message": f"{step.etype}.{label} is not a link, so it can't be used "
                        f"in `{step.action}`.",
                        "in": [step.index, 3, label],
                    }
                ],
            )
        return link

    def _expand_link(self, step: Step, eid: str) -> None:
        self.ops.append(AddEntity(step.etype, eid))
        for label, value in step.args.items():
            link = self._link_for(step, label)
            for raw in _link_targets(value):
                other = self._resolve_target(link.target_etype, raw)
                self._emit_link(link, eid, other, step.etype, eid)

    def _expand_unlink(self, step: Step, eid: str) -> None:
        for label, value in step.args.items():
            link = self._link_for(step, label)
            for raw in _link_targets(value):
                other = self._resolve_target(link.target_etype, raw)
                source, target = (eid, other) if link.forward else (other, eid)
                self.ops.append(RemoveLink(link, source, target, step.etype, eid))
                self.effects.touch(link.attr.etype, source).linked.append(link.attr.label)

    def _emit_link(self, link: Link, eid: str, other: str, step_etype: str, step_eid: str) -> None:
        source, target = (eid, other) if link.forward else (other, eid)
        self.ops.append(AddLink(link, source, target, step_etype, step_eid))
        self.effects.touch(link.attr.etype, source).linked.append(link.attr.label)

    def _emit_value(self, attr: Attr, etype: str, eid: str, value: Any) -> None:
        text = self._check_value(attr, eid, value, check_type=True)
        self.ops.append(SetValueOp(attr, eid, value, text))
        self.effects.touch(etype, eid).modified.append(attr.label)

    def _check_value(self, attr: Attr, eid: str, value: Any, *, check_type: bool) -> str | None:
        """Refuse values that can't be stored; returns their JSON text if it was needed."""
        if values.has_non_finite(value):
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [
                    {
                        "message": f"Invalid number for {attr.display}: NaN and Infinity "
                        "can't be stored."
                    }
                ],
            )
        if values.contains_nul(value):
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [
                    {
                        "message": f"Invalid value for {attr.display}: strings can't contain "
                        "the NUL character (\\u0000)."
                    }
                ],
            )
        if check_type and not values.matches_checked_type(attr.checked_type, value):
            raise type_error(attr, eid, value)
        text = None
        if (attr.unique or attr.indexed) and value is not None:
            text = values.dumps(value)
            size = len(text.encode("utf-8"))
            if size > MAX_INDEXED_VALUE_BYTES:
                kind = "unique" if attr.unique else "indexed"
                article = "a" if kind == "unique" else "an"
                raise validation_failed(
                    "tx-step",
                    self.raw_steps,
                    [{"message": f"Value is too large for {article} {kind} attribute."}],
                )
        return text

    # -- application -----------------------------------------------------------------

    def existed_before(self) -> None:
        """Record which touched entities exist before any write (for create/update rules)."""
        for op in self.ops:
            if isinstance(op, (AddEntity, DeleteEntity)):
                touch = self.effects.touch(op.etype, op.eid)
                touch.written = touch.written or isinstance(op, AddEntity)
        by_type: dict[str, list[str]] = {}
        for etype, eid in self.effects.touches:
            by_type.setdefault(etype, []).append(eid)
        for etype, ids in by_type.items():
            present = entities.existing_ids(self.conn, etype, ids)
            for eid in ids:
                self.effects.touches[(etype, eid)].existed_before = eid in present

    def apply(self, tx: int) -> Effects:
        groups: dict[str, list[Op]] = {}
        for op in self.ops:
            groups.setdefault(_kind(op), []).append(op)
        self.effects.links = []
        self.effects.deleted_files = []
        self._added = {}
        self._deleted = {}
        self._pending_entities = []
        self._pending_values = {}
        for ops in groups.values():
            for op in ops:
                self._apply(op, tx)
        self._flush()
        self._finish(tx)
        return self.effects

    def _flush(self) -> None:
        """Write the buffered entity rows and values; runs before anything reads.

        Plain entity rows and values need no read, so runs of them are written with
        one ``executemany`` each. The result is the same as writing them one by one:
        entity rows are independent of values, and of several values for one
        ``(entity, attr)`` only the last one would have survived.
        """
        if self._pending_entities:
            self.conn.executemany(
                "INSERT OR IGNORE INTO entities (etype, id, created_tx) VALUES (?, ?, ?)",
                self._pending_entities,
            )
            self._pending_entities = []
        if self._pending_values:
            self.conn.executemany(
                "DELETE FROM triples WHERE entity = ? AND attr = ?", list(self._pending_values)
            )
            self.conn.executemany(entities.INSERT_TRIPLE, list(self._pending_values.values()))
            self._pending_values = {}

    def _apply(self, op: Op, tx: int) -> None:
        conn = self.conn
        if isinstance(op, AddEntity):
            self._added.setdefault(op.etype, []).append(op.eid)
            guarded = op.etype == "$users" and not (self.is_admin or self.system_writes)
            if op.mode is None and not guarded:
                self._pending_entities.append((op.etype, op.eid, tx))
                return
            self._flush()
            self._check_existence(op)
            created = entities.ensure_entity(conn, op.etype, op.eid, tx)
            if created and guarded:
                raise self._system_entity_error("create")
            return
        if isinstance(op, SetValueOp):
            if op.attr.unique and op.value is not None:
                self._flush()  # the check reads what this transaction wrote so far
                self._check_unique(op.attr, op.eid, op.value)
            row = entities.triple_row(op.attr, op.eid, op.value, tx, op.text)
            self._pending_values[(op.eid, op.attr.id)] = row
            return
        self._flush()
        if isinstance(op, AddLink):
            self._apply_link(op, tx)
        elif isinstance(op, MergeValue):
            present, old = entities.get_value(conn, op.attr, op.eid)
            merged = deep_merge(old if present else None, op.patch)
            if not values.matches_checked_type(op.attr.checked_type, merged):
                raise type_error(op.attr, op.eid, merged)
            self._check_value(op.attr, op.eid, merged, check_type=False)
            self._check_unique(op.attr, op.eid, merged)
            entities.set_value(conn, op.attr, op.eid, merged, tx)
        elif isinstance(op, RemoveLink):
            entities.remove_ref(conn, op.link.attr, op.source, op.target)
            self.effects.links.append(
                LinkChange("unlink", op.link, op.source, op.target, op.step_etype, op.step_eid)
            )
        else:
            self._delete(op.etype, op.eid)

    def _check_existence(self, op: AddEntity) -> None:
        if op.mode is None:
            return
        present = entities.exists(self.conn, op.etype, op.eid)
        listed = ", ".join([op.eid] * max(op.written, 1))
        if op.mode == "create" and present:
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [{"message": f"Creating entities that exist: {listed}"}],
            )
        if op.mode == "strict-update" and not present:
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [{"message": f"Updating entities that don't exist: {listed}"}],
            )

    def _check_unique(self, attr: Attr, eid: str, value: Any) -> None:
        if not attr.unique or value is None:
            return
        if entities.unique_holder(self.conn, attr, value, besides=eid) is not None:
            raise record_not_unique(attr.etype, attr.label, value, attr_id=attr.id)

    def _apply_link(self, op: AddLink, tx: int) -> None:
        attr = op.link.attr
        if not is_uuid(op.target) or not is_uuid(op.source):
            raise validation_failed(
                "tx-step",
                self.raw_steps,
                [
                    {
                        "message": "Linked value must be a valid uuid."
                        if self.is_admin
                        else "Expected link value to be a uuid."
                    }
                ],
            )
        if attr.unique:
            holder = self.conn.execute(
                "SELECT entity FROM triples WHERE attr = ? AND vkey = ? AND entity != ? LIMIT 1",
                (attr.id, op.target, op.source),
            ).fetchone()
            if holder is not None:
                raise record_not_unique(attr.etype, attr.label, op.target, attr_id=attr.id)
        entities.add_ref(self.conn, attr, op.source, op.target, tx)
        self.effects.links.append(
            LinkChange("link", op.link, op.source, op.target, op.step_etype, op.step_eid)
        )

    def _delete(self, etype: str, eid: str) -> None:
        """Delete an entity in one namespace, its links, and whatever cascades from it."""
        root = (etype, eid)
        pending = [root]
        seen: set[tuple[str, str]] = set()
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            cur_type, cur_id = current
            touch = self.effects.touch(cur_type, cur_id)
            touch.deleted = True
            self._deleted.setdefault(cur_type, []).append(cur_id)
            if cur_type == "$files":
                record = entities.fetch_record(self.conn, self.catalog, cur_type, cur_id)
                if record is not None:
                    self.effects.deleted_files.append(record)
            if current != root and touch.cascade_from is None:
                touch.cascade_from = root
            # Forward-side entities pointing here whose link says onDelete: cascade.
            for attr in self.catalog.reverse_refs_to(cur_type):
                if attr.on_delete == "cascade":
                    rows = self.conn.execute(
                        "SELECT entity FROM triples WHERE attr = ? AND vkey = ?",
                        (attr.id, cur_id),
                    )
                    pending.extend((attr.etype, row[0]) for row in rows)
            # Reverse-side entities this one points to, with on-delete-reverse cascade.
            for attr in self.catalog.attrs_of(cur_type):
                if attr.is_ref and attr.on_delete_reverse == "cascade" and attr.rev_etype:
                    rows = self.conn.execute(
                        "SELECT vkey FROM triples WHERE entity = ? AND attr = ?",
                        (cur_id, attr.id),
                    )
                    pending.extend((attr.rev_etype, row[0]) for row in rows)
            own = [a.id for a in self.catalog.attrs_of(cur_type)]
            inbound = [a.id for a in self.catalog.reverse_refs_to(cur_type)]
            self.conn.execute(
                "DELETE FROM triples WHERE entity = ? AND attr IN (SELECT value FROM json_each(?))",
                (cur_id, entities.id_list(own)),
            )
            self.conn.execute(
                "DELETE FROM triples WHERE vkey = ? AND attr IN (SELECT value FROM json_each(?))",
                (cur_id, entities.id_list(inbound)),
            )
            self.conn.execute("DELETE FROM entities WHERE etype = ? AND id = ?", (cur_type, cur_id))

    def _finish(self, tx: int) -> None:
        by_type: dict[str, list[str]] = {}
        for touch in self.effects.touches.values():
            if touch.written or touch.modified:
                by_type.setdefault(touch.etype, []).append(touch.eid)
        filled: dict[str, list[str]] = {}
        for etype, ids in by_type.items():
            present = sorted(entities.existing_ids(self.conn, etype, ids))
            if not present:
                continue
            entities.fill_indexed_nulls(self.conn, self.catalog, etype, present, tx)
            self._check_required(etype, present)
            filled[etype] = present
        order_gaps.after_writes(
            self.conn,
            self.catalog,
            tx,
            added=self._added,
            written=by_type,
            null_filled=filled,
            deleted=self._deleted,
        )
        order_gaps.sync_catalog(self.conn, self._original_catalog, self.catalog)

    def _check_required(self, etype: str, ids: list[str]) -> None:
        required = [a for a in self.catalog.attrs_of(etype) if a.required and not a.is_id]
        for attr in required:
            rows = self.conn.execute(
                "SELECT entity FROM triples WHERE attr = ? AND vtype != ? "
                "AND entity IN (SELECT value FROM json_each(?))",
                (attr.id, values.NULL, entities.id_list(ids)),
            )
            have = {row[0] for row in rows}
            lacking = [eid for eid in ids if eid not in have]
            if lacking:
                name = f"{etype}/{attr.label}"
                raise validation_failed(
                    "tx-step",
                    self.raw_steps,
                    [{"message": f"Missing required attribute `{name}`: {lacking[0]}"}],
                    message=f"Missing required attribute `{name}`: {', '.join(lacking)}",
                ) from None


def type_error(attr: Attr, eid: str, value: Any) -> ServerError:
    message = (
        f"Invalid value type for {attr.display}. Value must be a {attr.checked_type} but the "
        f"provided value type is {values.json_type(value)}."
    )
    error = ServerError(
        "validation-failed",
        message,
        {
            "namespace": attr.etype,
            "attribute": attr.label,
            "value": value,
            "checked-data-type": attr.checked_type,
            "attr-id": attr.id,
            "entity-id": eid,
        },
    )
    return error


def deep_merge(old: Any, patch: Any) -> Any:
    """Instant's merge: objects merge recursively; a nested null deletes its key only
    where the stored level is an object; anything else replaces (nulls kept verbatim)."""
    if not isinstance(old, dict) or not isinstance(patch, dict):
        return patch
    merged = dict(old)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _link_targets(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _has_lookup_target(value: Any) -> bool:
    return any(isinstance(parse_link_target(t), LookupRef) for t in _link_targets(value))


def _attr_from_record(steps: Any, step: AttrStep) -> Attr:
    record = step.payload
    try:
        _, etype, label = record["forward-identity"]
        reverse = record.get("reverse-identity")
        value_type = record.get("value-type", "blob")
        attr = Attr(
            id=str(record.get("id") or new_id()),
            etype=str(etype),
            label=str(label),
            value_type=value_type,
            cardinality=record.get("cardinality", "one"),
            unique=bool(record.get("unique?", False)),
            indexed=bool(record.get("index?", False)),
            required=bool(record.get("required?", False)),
            checked_type=record.get("checked-data-type"),
            rev_etype=reverse[1] if reverse else None,
            rev_label=reverse[2] if reverse else None,
            on_delete=record.get("on-delete"),
            on_delete_reverse=record.get("on-delete-reverse"),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        raise validation_failed(
            "steps", steps, [{"expected": "attr", "in": [step.index, 1]}]
        ) from None
    if attr.value_type not in ("blob", "ref") or attr.cardinality not in ("one", "many"):
        raise validation_failed("steps", steps, [{"expected": "attr", "in": [step.index, 1]}])
    if attr.value_type == "ref" and not (attr.rev_etype and attr.rev_label):
        raise validation_failed("steps", steps, [{"expected": "attr", "in": [step.index, 1]}])
    return attr
