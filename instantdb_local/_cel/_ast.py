"""The expression tree the checker and the compiler share.

celpy's parse tree mirrors the grammar (one node per precedence level), which is awkward
to walk. `instantdb_local._cel._parser` folds it into these few node kinds, with the CEL
macros (``has``, ``all``, ``exists``, ``exists_one``, ``map``, ``filter``, ``cel.bind``)
already recognised, so later passes never look at syntax again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

# (line, column), both 1-based, of the node's first token.
Position = tuple[int, int]


@dataclass(frozen=True)
class Literal:
    value: object
    type_name: str  # the CEL type of the literal: int, uint, double, string, bytes, bool, null
    pos: Position


@dataclass(frozen=True)
class Ident:
    name: str
    pos: Position


@dataclass(frozen=True)
class Select:
    """``operand.field``."""

    operand: Node
    field: str
    pos: Position


@dataclass(frozen=True)
class Index:
    """``operand[index]``."""

    operand: Node
    index: Node
    pos: Position


@dataclass(frozen=True)
class Call:
    """A function, method or operator call.

    Operators use CEL's internal names (``_+_``, ``_==_``, ``!_``, ``-_``, ``_in_``).
    Namespaced functions keep their dotted name (``math.abs``) and have no target.
    """

    function: str
    args: tuple[Node, ...]
    target: Node | None
    pos: Position


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Node, ...]
    pos: Position


@dataclass(frozen=True)
class MapExpr:
    entries: tuple[tuple[Node, Node], ...]
    pos: Position


@dataclass(frozen=True)
class Conditional:
    condition: Node
    if_true: Node
    if_false: Node
    pos: Position


@dataclass(frozen=True)
class Logical:
    """``&&`` / ``||``: kept apart from calls because errors are absorbed, not raised."""

    operator: str
    left: Node
    right: Node
    pos: Position


@dataclass(frozen=True)
class Has:
    """``has(operand.field)``."""

    operand: Node
    field: str
    pos: Position


@dataclass(frozen=True)
class Comprehension:
    """``target.all(var, predicate)`` and friends; ``map`` may carry a filter predicate."""

    kind: str  # all, exists, exists_one, map, filter
    target: Node
    variable: str
    predicate: Node | None
    transform: Node | None
    pos: Position


@dataclass(frozen=True)
class Bind:
    """``cel.bind(variable, value, body)``."""

    variable: str
    value: Node
    body: Node
    pos: Position


Node: TypeAlias = (
    Literal
    | Ident
    | Select
    | Index
    | Call
    | ListExpr
    | MapExpr
    | Conditional
    | Logical
    | Has
    | Comprehension
    | Bind
)


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of a node, in source order."""
    if isinstance(node, (Literal, Ident)):
        return ()
    if isinstance(node, (Select, Has)):
        return (node.operand,)
    if isinstance(node, Index):
        return (node.operand, node.index)
    if isinstance(node, Call):
        return ((node.target,) if node.target is not None else ()) + node.args
    if isinstance(node, ListExpr):
        return node.items
    if isinstance(node, MapExpr):
        return tuple(part for entry in node.entries for part in entry)
    if isinstance(node, Conditional):
        return (node.condition, node.if_true, node.if_false)
    if isinstance(node, Logical):
        return (node.left, node.right)
    if isinstance(node, Comprehension):
        parts: list[Node] = [node.target]
        if node.predicate is not None:
            parts.append(node.predicate)
        if node.transform is not None:
            parts.append(node.transform)
        return tuple(parts)
    return (node.value, node.body)


def identifiers(node: Node) -> set[str]:
    """Every plain identifier the expression mentions, ignoring scopes.

    Used to find which ``bind`` names a rule uses; like the real server this is a
    syntactic scan, so a macro variable that happens to share a bind's name also counts.
    """
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Ident):
            found.add(current.name)
        stack.extend(children(current))
    return found
