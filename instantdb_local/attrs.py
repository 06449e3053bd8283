"""The attribute catalog: every namespace's attributes and links, system ones included.

An attribute is Instant's unit of schema. A blob attribute holds values
(``goals.title``); a ref attribute is a link, stored once in forward orientation with a
forward identity ``[etype, label]`` and a reverse identity ``[rev_etype, rev_label]``.
The catalog is read from the ``attrs`` table into an immutable `Catalog` snapshot;
writers build a new snapshot and publish it only after their transaction commits.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

# Namespaces every app has. The first three are user-visible and extensible; the others
# are internal (admins can read them, rules deny everyone else by default).
USER_SYSTEM_NAMESPACES = ("$users", "$files", "$streams")
INTERNAL_NAMESPACES = ("$magicCodes", "$userRefreshTokens")

_SYSTEM_ID_NAMESPACE = uuid.UUID("5b0c3c56-8f0e-4d0a-9a53-1e3a0e6d8c11")


@dataclass(frozen=True)
class Attr:
    id: str
    etype: str
    label: str
    value_type: str = "blob"  # "blob" | "ref"
    cardinality: str = "one"  # "one" | "many"
    unique: bool = False
    indexed: bool = False
    required: bool = False
    checked_type: str | None = None
    rev_etype: str | None = None
    rev_label: str | None = None
    on_delete: str | None = None
    on_delete_reverse: str | None = None
    system: bool = False

    @property
    def is_ref(self) -> bool:
        return self.value_type == "ref"

    @property
    def is_id(self) -> bool:
        return self.label == "id" and not self.is_ref

    @property
    def display(self) -> str:
        return f"{self.etype}.{self.label}"

    def ident_id(self, side: str) -> str:
        # Ident ids only matter for the schema JSON; derive them so they are stable.
        return str(uuid.uuid5(uuid.UUID(self.id), side))

    def to_json(self) -> dict[str, Any]:
        """The attribute record in the real server's shape (``GET /admin/schema``)."""
        record: dict[str, Any] = {
            "id": self.id,
            "forward-identity": [self.ident_id("forward"), self.etype, self.label],
            "value-type": self.value_type,
            "cardinality": self.cardinality,
            "unique?": self.unique,
            "index?": self.indexed,
            "required?": self.required,
            "checked-data-type": self.checked_type,
            "catalog": "system" if self.system else "user",
        }
        if self.is_ref:
            record["reverse-identity"] = [self.ident_id("reverse"), self.rev_etype, self.rev_label]
        if self.on_delete:
            record["on-delete"] = self.on_delete
        if self.on_delete_reverse:
            record["on-delete-reverse"] = self.on_delete_reverse
        return record


def system_attr_id(etype: str, label: str) -> str:
    return str(uuid.uuid5(_SYSTEM_ID_NAMESPACE, f"{etype}.{label}"))


def _sys(etype: str, label: str, **kwargs: Any) -> Attr:
    return Attr(id=system_attr_id(etype, label), etype=etype, label=label, system=True, **kwargs)


def _sys_id(etype: str) -> Attr:
    return _sys(etype, "id", unique=True, indexed=True)


SYSTEM_ATTRS: tuple[Attr, ...] = (
    _sys_id("$users"),
    _sys("$users", "email", unique=True, indexed=True, checked_type="string"),
    _sys("$users", "type", checked_type="string"),
    _sys("$users", "imageURL", checked_type="string"),
    # A guest linked to its primary user; deleting the primary deletes its guests.
    _sys(
        "$users",
        "linkedPrimaryUser",
        value_type="ref",
        indexed=True,
        rev_etype="$users",
        rev_label="linkedGuestUsers",
        on_delete="cascade",
    ),
    _sys_id("$files"),
    _sys("$files", "path", unique=True, indexed=True, required=True, checked_type="string"),
    _sys("$files", "size", required=True, checked_type="number"),
    _sys("$files", "content-type", checked_type="string"),
    _sys("$files", "content-disposition", checked_type="string"),
    _sys("$files", "location-id", unique=True, required=True, checked_type="string"),
    _sys("$files", "key-version", checked_type="number"),
    _sys_id("$streams"),
    _sys("$streams", "clientId", unique=True, indexed=True, required=True, checked_type="string"),
    _sys("$streams", "done", checked_type="boolean"),
    _sys("$streams", "size", checked_type="number"),
    _sys("$streams", "abortReason", checked_type="string"),
    _sys("$streams", "machineId", checked_type="string"),
    _sys("$streams", "hashedReconnectToken", checked_type="string"),
    _sys(
        "$streams",
        "$files",
        value_type="ref",
        cardinality="many",
        unique=True,
        indexed=True,
        rev_etype="$files",
        rev_label="$stream",
    ),
    _sys_id("$magicCodes"),
    _sys("$magicCodes", "codeHash", indexed=True, checked_type="string"),
    _sys("$magicCodes", "email", indexed=True, checked_type="string"),
    _sys(
        "$magicCodes",
        "$user",
        value_type="ref",
        indexed=True,
        rev_etype="$users",
        rev_label="$magicCodes",
        on_delete="cascade",
    ),
    _sys_id("$userRefreshTokens"),
    _sys("$userRefreshTokens", "hashedToken", unique=True, indexed=True, checked_type="string"),
    # Deleting a user deletes their refresh tokens.
    _sys(
        "$userRefreshTokens",
        "$user",
        value_type="ref",
        indexed=True,
        rev_etype="$users",
        rev_label="$userRefreshTokens",
        on_delete="cascade",
    ),
)

# Columns the system owns. Non-admins may not write them on `$users`; nobody may write
# them on `$files` (except `path`) or `$streams`.
SYSTEM_COLUMNS: dict[str, frozenset[str]] = {
    "$users": frozenset({"email", "type", "imageURL", "linkedPrimaryUser"}),
    "$files": frozenset(
        {"size", "content-type", "content-disposition", "location-id", "key-version"}
    ),
    "$streams": frozenset(
        {"clientId", "done", "size", "abortReason", "machineId", "hashedReconnectToken", "$files"}
    ),
}


@dataclass(frozen=True)
class Link:
    """A ref attribute seen from one of its two namespaces."""

    attr: Attr
    forward: bool  # True when followed from attr.etype (the stored orientation)

    @property
    def target_etype(self) -> str:
        target = self.attr.rev_etype if self.forward else self.attr.etype
        assert target is not None
        return target

    @property
    def singular(self) -> bool:
        """Whether at most one entity sits at the far end (``inference?`` objects)."""
        return self.attr.cardinality == "one" if self.forward else self.attr.unique


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot of the app's attributes with the lookups queries need."""

    attrs: tuple[Attr, ...] = ()
    _by_id: dict[str, Attr] = field(default_factory=dict, repr=False)
    _forward: dict[tuple[str, str], Attr] = field(default_factory=dict, repr=False)
    _reverse: dict[tuple[str, str], Attr] = field(default_factory=dict, repr=False)
    _by_etype: dict[str, list[Attr]] = field(default_factory=dict, repr=False)
    _reverse_by_etype: dict[str, list[Attr]] = field(default_factory=dict, repr=False)
    # Derived lookups, computed once per snapshot (the snapshot never changes).
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, attrs: Iterable[Attr]) -> Catalog:
        items = tuple(attrs)
        catalog = cls(attrs=items)
        for attr in items:
            catalog._by_id[attr.id] = attr
            catalog._forward[(attr.etype, attr.label)] = attr
            catalog._by_etype.setdefault(attr.etype, []).append(attr)
            if attr.is_ref and attr.rev_etype is not None and attr.rev_label is not None:
                catalog._reverse[(attr.rev_etype, attr.rev_label)] = attr
                catalog._reverse_by_etype.setdefault(attr.rev_etype, []).append(attr)
        return catalog

    def __iter__(self) -> Iterator[Attr]:
        return iter(self.attrs)

    def by_id(self, attr_id: str) -> Attr | None:
        return self._by_id.get(attr_id)

    def has_etype(self, etype: str) -> bool:
        return (etype, "id") in self._forward

    def id_attr(self, etype: str) -> Attr | None:
        return self._forward.get((etype, "id"))

    def forward(self, etype: str, label: str) -> Attr | None:
        """The attribute ``etype.label`` as its forward identity names it."""
        return self._forward.get((etype, label))

    def link(self, etype: str, label: str) -> Link | None:
        """The link ``label`` of ``etype``, forward or reverse."""
        attr = self._forward.get((etype, label))
        if attr is not None:
            return Link(attr, True) if attr.is_ref else None
        attr = self._reverse.get((etype, label))
        return Link(attr, False) if attr is not None else None

    def attrs_of(self, etype: str) -> list[Attr]:
        """Forward attributes of ``etype`` (blobs, its id and links it owns)."""
        return self._by_etype.get(etype, [])

    def reverse_refs_to(self, etype: str) -> list[Attr]:
        """Ref attributes whose reverse side is ``etype``."""
        return self._reverse_by_etype.get(etype, [])

    def record_labels(self, etype: str) -> tuple[dict[str, str], str]:
        """Attributes that appear on an entity object (cardinality-one blobs and forward
        refs) as ``{attr id: label}``, and their ids as a JSON array for SQL."""
        key = ("record", etype)
        found = self._memo.get(key)
        if found is None:
            labels = {
                a.id: a.label
                for a in self.attrs_of(etype)
                if not a.is_id and a.cardinality == "one"
            }
            found = (labels, json.dumps(list(labels)))
            self._memo[key] = found
        return found


# -- persistence ---------------------------------------------------------------------

_COLUMNS = (
    "id, etype, label, value_type, cardinality, is_unique, is_indexed, is_required, "
    "checked_type, rev_etype, rev_label, on_delete, on_delete_reverse, is_system"
)


def load(conn: sqlite3.Connection) -> Catalog:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM attrs ORDER BY rowid").fetchall()
    return Catalog.of(
        Attr(
            id=row[0],
            etype=row[1],
            label=row[2],
            value_type=row[3],
            cardinality=row[4],
            unique=bool(row[5]),
            indexed=bool(row[6]),
            required=bool(row[7]),
            checked_type=row[8],
            rev_etype=row[9],
            rev_label=row[10],
            on_delete=row[11],
            on_delete_reverse=row[12],
            system=bool(row[13]),
        )
        for row in rows
    )


def _row(attr: Attr) -> tuple[Any, ...]:
    return (
        attr.id,
        attr.etype,
        attr.label,
        attr.value_type,
        attr.cardinality,
        int(attr.unique),
        int(attr.indexed),
        int(attr.required),
        attr.checked_type,
        attr.rev_etype,
        attr.rev_label,
        attr.on_delete,
        attr.on_delete_reverse,
        int(attr.system),
    )


def insert(conn: sqlite3.Connection, attr: Attr) -> None:
    conn.execute(f"INSERT INTO attrs ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", _row(attr))


def update(conn: sqlite3.Connection, attr: Attr) -> None:
    conn.execute(
        "UPDATE attrs SET value_type=?, cardinality=?, is_unique=?, is_indexed=?, "
        "is_required=?, checked_type=?, rev_etype=?, rev_label=?, on_delete=?, "
        "on_delete_reverse=?, is_system=? WHERE id=?",
        (*_row(attr)[3:], attr.id),
    )


def seed_system(conn: sqlite3.Connection) -> None:
    """Insert the system catalog (idempotent: existing rows are left alone)."""
    existing = {row[0] for row in conn.execute("SELECT id FROM attrs WHERE is_system = 1")}
    for attr in SYSTEM_ATTRS:
        if attr.id not in existing:
            insert(conn, attr)


def new_attr(etype: str, label: str, **kwargs: Any) -> Attr:
    return Attr(id=str(uuid.uuid4()), etype=etype, label=label, **kwargs)


def with_flags(attr: Attr, **changes: Any) -> Attr:
    return replace(attr, **changes)
