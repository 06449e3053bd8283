"""Shared helpers for the engine's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from instantdb_local.engine import Actor, AppEngine
from instantdb_local.errors import ServerError
from instantdb_local.perms import RuleContext

ADMIN = Actor.admin()


def uid(n: int) -> str:
    """Readable fixed UUIDs whose numeric order is their byte order."""
    return f"00000000-0000-4000-8000-{n:012d}"


def error_of(fn: Callable[[], Any]) -> ServerError:
    try:
        fn()
    except ServerError as error:
        return error
    raise AssertionError("expected a ServerError")


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


def tx(engine: AppEngine, *steps: list[Any], actor: Actor = ADMIN) -> int:
    return engine.transact(list(steps), actor)


@dataclass
class FakeProgram:
    """A rule written as a Python function of the `RuleContext`."""

    etype: str
    action: str
    fn: Callable[[RuleContext], Any]
    code: str = "fake"
    seen: list[RuleContext] = field(default_factory=list)

    def evaluate(self, context: RuleContext) -> Any:
        self.seen.append(context)
        return self.fn(context)

    def describe(self) -> dict[str, Any]:
        return {
            "etype": self.etype,
            "action": self.action,
            "code": self.code,
            "display-code": self.code,
        }


class FakeRules:
    """A tiny stand-in for `perms.RuleSet`: no fallbacks, exactly the programs given."""

    def __init__(
        self,
        programs: Mapping[tuple[str, str], Callable[[RuleContext], Any]] | None = None,
        *,
        links: Mapping[tuple[str, str, str], Callable[[RuleContext], Any]] | None = None,
        fields: Mapping[str, Mapping[str, Callable[[RuleContext], Any]]] | None = None,
    ) -> None:
        self.programs = {
            key: FakeProgram(key[0], key[1], fn, code=f"{key[0]}.{key[1]}")
            for key, fn in (programs or {}).items()
        }
        self.links = {
            key: FakeProgram(key[0], key[1], fn, code=f"{key[0]}.{key[1]}.{key[2]}")
            for key, fn in (links or {}).items()
        }
        self.fields = {
            etype: {label: FakeProgram(etype, "view", fn) for label, fn in by_label.items()}
            for etype, by_label in (fields or {}).items()
        }

    def program(self, etype: str, action: str) -> FakeProgram | None:
        return self.programs.get((etype, action))

    def link_program(self, etype: str, action: str, label: str) -> FakeProgram | None:
        return self.links.get((etype, action, label))

    def field_programs(self, etype: str) -> Mapping[str, FakeProgram]:
        return self.fields.get(etype, {})
