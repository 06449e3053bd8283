"""Where the engine consults permission rules, and what it does with the outcome.

`perms.RuleSet` decides which program applies and what it evaluates to; this module
decides when a check runs (server-semantics section 7): ``view`` per returned entity
(also for entities a dotted ``where`` passes through), ``fields`` per attribute,
``create``/``update``/``delete``/``link``/``unlink`` and ``attrs.create`` in
transactions. Each check is recorded for the debug routes; outside them a failing
transaction check raises ``permission-denied`` and a failing view check drops the row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from . import entities
from .attrs import Attr, Catalog, Link
from .errors import permission_denied


class ProgramLike(Protocol):
    @property
    def etype(self) -> str: ...

    @property
    def action(self) -> str: ...

    def evaluate(self, context: Any) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


class RulesLike(Protocol):
    """What the engine needs from `perms.RuleSet` (tests may pass a small fake)."""

    def program(self, etype: str, action: str) -> ProgramLike | None: ...

    def link_program(self, etype: str, action: str, label: str) -> ProgramLike | None: ...

    def field_programs(self, etype: str) -> Mapping[str, ProgramLike]: ...


def passes(result: Any) -> bool:
    """The real server's truthiness (Clojure's): only null and false deny."""
    return result is not None and result is not False


@dataclass
class Viewer:
    """The non-admin identity a check runs as."""

    auth: Mapping[str, Any] | None
    request: Mapping[str, Any]
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    show_error_details: bool = False

    def request_for(self, modified_fields: list[str] | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"time": datetime.now(timezone.utc), **self.request}
        request.setdefault("ip", None)
        request.setdefault("origin", None)
        request["modifiedFields"] = list(modified_fields or [])
        return request


def _context(**kwargs: Any) -> Any:
    # Imported late: perms.py pulls in the CEL runtime, which admin-only work never needs.
    from .perms import RuleContext

    return RuleContext(**kwargs)


class Resolver:
    """``data.ref(path)``: walks links on the connection of the current phase."""

    def __init__(self, conn: sqlite3.Connection, catalog: Catalog) -> None:
        self.conn = conn
        self.catalog = catalog

    def __call__(self, etype: str, eid: str | None, path: str) -> list[Any]:
        return entities.walk(self.conn, self.catalog, etype, eid, path)


# -- queries ------------------------------------------------------------------------------


class QueryRules:
    """`instaql.QueryAccess` for a non-admin query; records every check it runs."""

    def __init__(
        self,
        rules: RulesLike,
        viewer: Viewer,
        conn: sqlite3.Connection,
        catalog: Catalog,
        checks: list[dict[str, Any]] | None = None,
    ) -> None:
        self.rules = rules
        self.viewer = viewer
        self.conn = conn
        self.catalog = catalog
        self.checks = checks
        self.ref = Resolver(conn, catalog)
        self._hidden: dict[tuple[str, str], frozenset[str] | None] = {}

    def _evaluate(self, program: ProgramLike, etype: str, record: Mapping[str, Any]) -> Any:
        context = _context(
            etype=etype,
            ref=self.ref,
            data=record,
            auth=self.viewer.auth,
            rule_params=self.viewer.rule_params,
            request=self.viewer.request_for(),
            show_error_details=self.viewer.show_error_details,
        )
        return program.evaluate(context)

    def _record(
        self,
        etype: str,
        record: Mapping[str, Any],
        label: str | None,
        program: ProgramLike | None,
        result: Any,
    ) -> None:
        if self.checks is None:
            return
        self.checks.append(
            {
                "id": record.get("id"),
                "entity": etype,
                "label": label,
                "record": dict(record),
                "program": program.describe() if program is not None else {},
                "check": result,
            }
        )

    def visible(self, etype: str, records: dict[str, dict[str, Any]]) -> set[str]:
        program = self.rules.program(etype, "view")
        keep: set[str] = set()
        for eid, record in records.items():
            if program is None:
                result: Any = True
            else:
                result = self._evaluate(program, etype, record)
            self._record(etype, record, None, program, result)
            if passes(result):
                keep.add(eid)
        return keep

    def fields(self, etype: str, record: dict[str, Any]) -> dict[str, Any]:
        programs = self.rules.field_programs(etype)
        if not programs:
            return record
        shown = dict(record)
        for label, program in programs.items():
            if label == "id" or label not in record:
                continue
            result = self._evaluate(program, etype, record)
            self._record(etype, record, label, program, result)
            if not passes(result):
                shown.pop(label, None)
        return shown

    def hidden_ids(self, etype: str, link: Link) -> frozenset[str] | None:
        """Entities a dotted ``where`` reaches through ``link`` that the viewer can't see."""
        key = (etype, link.attr.id)
        if key in self._hidden:
            return self._hidden[key]
        program = self.rules.program(etype, "view")
        hidden: frozenset[str] | None = None
        if program is not None:
            column = "vkey" if link.forward else "entity"
            rows = self.conn.execute(
                f"SELECT DISTINCT {column} FROM triples WHERE attr = ?", (link.attr.id,)
            )
            reached = [row[0] for row in rows]
            records = entities.fetch_records(self.conn, self.catalog, etype, reached)
            hidden = frozenset(
                eid
                for eid, record in records.items()
                if not passes(self._evaluate(program, etype, record))
            )
        self._hidden[key] = hidden
        return hidden


# -- transactions -------------------------------------------------------------------------


@dataclass
class Check:
    scope: str
    action: str
    etype: str
    eid: str | None
    program: ProgramLike | None
    bindings: dict[str, Any]
    result: Any

    @property
    def ok(self) -> bool:
        return passes(self.result)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "action": self.action,
            "etype": self.etype,
            "eid": self.eid,
            "program": self.program.describe() if self.program is not None else {},
            "bindings": self.bindings,
            "check-result": self.result,
            "check-pass?": self.ok,
        }


class TransactRules:
    """Runs a transaction's checks; raises on the first failure unless only recording."""

    def __init__(self, rules: RulesLike, viewer: Viewer, *, record_only: bool = False) -> None:
        self.rules = rules
        self.viewer = viewer
        self.record_only = record_only
        self.checks: list[Check] = []

    def _finish(self, check: Check) -> None:
        self.checks.append(check)
        if not check.ok and not self.record_only:
            raise permission_denied([check.etype, check.scope])

    def admin_only(self, action: str, etype: str, eid: str | None) -> None:
        """Operations only an admin may run (``add-attr``, ``delete-attr``)."""
        self._finish(Check("attr", action, etype, eid, None, {}, False))

    def new_attr(self, attr: Attr, ref: Resolver) -> None:
        program = self.rules.program("attrs", "create")
        data = attr.to_json()
        result: Any = True
        if program is not None:
            result = program.evaluate(
                _context(
                    etype="attrs",
                    ref=ref,
                    data=data,
                    auth=self.viewer.auth,
                    rule_params=self.viewer.rule_params,
                    request=self.viewer.request_for(),
                    show_error_details=self.viewer.show_error_details,
                )
            )
        self._finish(Check("attr", "create", "attrs", attr.id, program, {"data": data}, result))

    def entity(
        self,
        action: str,
        etype: str,
        eid: str,
        ref: Resolver,
        *,
        data: Mapping[str, Any],
        new_data: Mapping[str, Any] | None = None,
        rule_params: Mapping[str, Any] | None = None,
        modified: list[str] | None = None,
    ) -> None:
        program = self.rules.program(etype, action)
        params = dict(rule_params or {})
        bindings: dict[str, Any] = {"data": dict(data)}
        if new_data is not None:
            bindings["new-data"] = dict(new_data)
        if params:
            bindings["rule-params"] = params
        if modified is not None:
            bindings["modified-fields"] = list(modified)
        result: Any = True
        if program is not None:
            result = program.evaluate(
                _context(
                    etype=etype,
                    ref=ref,
                    data=data,
                    new_data=new_data,
                    auth=self.viewer.auth,
                    rule_params=params,
                    request=self.viewer.request_for(modified),
                    show_error_details=self.viewer.show_error_details,
                )
            )
        self._finish(Check("object", action, etype, eid, program, bindings, result))

    def link_programs(
        self, action: str, etype: str, label: str, other_etype: str, other_label: str
    ) -> list[tuple[ProgramLike, bool]]:
        """Link rules on either side: ``(program, on_step_side)``."""
        found: list[tuple[ProgramLike, bool]] = []
        mine = self.rules.link_program(etype, action, label)
        if mine is not None:
            found.append((mine, True))
        theirs = self.rules.link_program(other_etype, action, other_label)
        if theirs is not None:
            found.append((theirs, False))
        return found

    def link(
        self,
        program: ProgramLike,
        action: str,
        etype: str,
        eid: str,
        ref: Resolver,
        *,
        data: Mapping[str, Any],
        linked_etype: str,
        linked_data: Mapping[str, Any],
        actions: Mapping[str, Any],
        rule_params: Mapping[str, Any] | None = None,
    ) -> None:
        params = dict(rule_params or {})
        result = program.evaluate(
            _context(
                etype=etype,
                ref=ref,
                data=data,
                new_data=data,
                auth=self.viewer.auth,
                rule_params=params,
                request=self.viewer.request_for(),
                linked_data=linked_data,
                linked_etype=linked_etype,
                actions=actions,
                show_error_details=self.viewer.show_error_details,
            )
        )
        bindings = {
            "data": dict(data),
            "linked-data": dict(linked_data),
            "linked-etype": linked_etype,
            "actions": dict(actions),
        }
        if params:
            bindings["rule-params"] = params
        self._finish(Check("object", action, etype, eid, program, bindings, result))
