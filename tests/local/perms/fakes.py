"""A tiny in-memory entity graph standing in for the engine's ``ref`` resolver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeGraph:
    """Entities by etype and id, plus links ``(etype, label) -> (target etype, {id: [ids]})``.

    ``ref(etype, id, "a.b.attr")`` follows the links ``a`` then ``b`` and collects
    ``attr`` from every entity reached, as the real server's ``data.ref`` does.
    """

    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    links: dict[tuple[str, str], tuple[str, dict[str, list[str]]]] = field(default_factory=dict)
    calls: list[tuple[str, str | None, str]] = field(default_factory=list)

    def ref(self, etype: str, entity_id: str | None, path: str) -> list[Any]:
        self.calls.append((etype, entity_id, path))
        *labels, attr = path.split(".")
        frontier = [(etype, entity_id)]
        for label in labels:
            target_etype, targets = self.links[(frontier[0][0] if frontier else etype, label)]
            frontier = [
                (target_etype, target)
                for _, source in frontier
                for target in targets.get(str(source), [])
            ]
        values = []
        for found_etype, found_id in frontier:
            entity = self.entities.get(found_etype, {}).get(str(found_id))
            if entity is not None and attr in entity:
                values.append(entity[attr])
        return values


def never_called(etype: str, entity_id: str | None, path: str) -> list[Any]:
    raise AssertionError(f"ref({etype!r}, {entity_id!r}, {path!r}) was not expected")
