"""Permission rules: Instant's CEL dialect, compiled once and evaluated per entity.

Contract between the rules (this module) and the engine that applies them. The engine
decides *when* a check runs and what happens to its outcome (drop a row, refuse a
write, record a debug check result); this module decides *which* program applies and
*what it evaluates to*. See server-semantics.md section 7.

- `RuleSet.from_document(doc)` validates and compiles a rules document (the JSON the
  real server stores; ``None`` means no rules). Bad rules raise
  `ServerError` ``validation-failed`` (data-type ``permission``), naming the rule.
- `RuleSet.program(etype, action)` picks the program by the real server's order:
  ``etype.allow.action`` → ``etype.allow.$default`` → ``$default.allow.action`` →
  ``$default.allow.$default`` → the system fallback for ``$`` namespaces. ``None``
  means no rule applies, i.e. allowed.
- `RuleSet.link_program(etype, action, label)` for ``link``/``unlink`` rules on a
  label (``allow.link.<label>``); ``None`` if that etype defines none.
- `RuleSet.field_programs(etype)`: the ``fields`` view rules of an etype.
- `Program.evaluate(context)` returns the rule's raw result converted to plain Python
  (bool/None/str/number/list/dict) or raises `ServerError`
  ``permission-evaluation-failed``. `Program.passes(context)` applies the real
  server's truthiness (``None`` denies; a truthy non-boolean passes).
- `RuleContext` carries every CEL variable; ``ref`` is the engine's callback that
  walks links for ``data.ref(path)``, ``auth.ref("$user.path")`` and
  ``linkedData.ref(path)``: ``ref(etype, entity_id, path) -> list of values``.

STATUS: contract only; the permissions task fills in the bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RefResolver = Callable[[str, "str | None", str], list[Any]]


@dataclass(frozen=True)
class RuleContext:
    """Every variable a rule may read. ``auth`` is None for guests (CEL sees ``{}``)."""

    etype: str
    ref: RefResolver
    data: Mapping[str, Any] = field(default_factory=dict)
    new_data: Mapping[str, Any] | None = None
    auth: Mapping[str, Any] | None = None
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    request: Mapping[str, Any] = field(default_factory=dict)  # time, ip, origin, modifiedFields
    linked_data: Mapping[str, Any] | None = None
    linked_etype: str | None = None
    actions: Mapping[str, Any] | None = None
    # Impersonated calls hide CEL error details ("You may have a typo"); admin and
    # debug routes show them.
    show_error_details: bool = False


@dataclass(frozen=True)
class Program:
    """One compiled rule."""

    etype: str
    action: str
    code: str

    @property
    def display_code(self) -> str:
        """The rule as the debug routes show it (binds expanded where the server does)."""
        raise NotImplementedError

    def evaluate(self, context: RuleContext) -> Any:
        raise NotImplementedError

    def passes(self, context: RuleContext) -> bool:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """``{"etype", "action", "code", "display-code"}`` for debug check results."""
        return {
            "etype": self.etype,
            "action": self.action,
            "code": self.code,
            "display-code": self.display_code,
        }


class RuleSet:
    """A validated, compiled rules document."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any] | None) -> RuleSet:
        raise NotImplementedError

    def program(self, etype: str, action: str) -> Program | None:
        raise NotImplementedError

    def link_program(self, etype: str, action: str, label: str) -> Program | None:
        raise NotImplementedError

    def field_programs(self, etype: str) -> Mapping[str, Program]:
        raise NotImplementedError
