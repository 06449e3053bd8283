"""Permission rules: Instant's CEL dialect, compiled once and evaluated per entity.

Contract between the rules (this module) and the engine that applies them. The engine
decides *when* a check runs and what happens to its outcome (drop a row, refuse a
write, record a debug check result); this module decides *which* program applies and
*what it evaluates to*. See server-semantics.md section 7.

- `RuleSet.from_document(doc)` validates and compiles a rules document (the JSON the
  real server stores; ``None`` means no rules). Bad rules raise `ServerError`
  ``validation-failed`` with data-type ``rule`` (what the real server's save route
  answers), the offending document as ``input`` and one ``{"message", "in"}`` per
  problem, ``in`` being the rule's path (``["goals", "allow", "view"]``). Documents
  are cached, so calling this per request (``rules-override``) costs one lookup.
- `RuleSet.program(etype, action)` picks the program by the real server's order:
  ``etype.allow.action`` → ``etype.allow.$default`` → ``$default.allow.action`` →
  ``$default.allow.$default`` → the system fallback for ``$`` namespaces. ``None``
  means no rule applies, i.e. allowed. ``action`` is view, create, update or delete.
- `RuleSet.link_program(etype, action, label)` for ``link``/``unlink`` rules on a
  label (``allow.link.<label>``, else ``allow.link.$default``); ``None`` if that etype
  defines none.
- `RuleSet.field_programs(etype)`: the ``fields`` view rules of an etype.
- `Program.evaluate(context)` returns the rule's raw result converted to plain Python
  (bool/None/str/number/list/dict; timestamps as RFC 3339 strings) or raises
  `ServerError` ``permission-evaluation-failed``. `Program.passes(context)` applies the
  real server's truthiness (``None`` and ``false`` deny; any other value passes).
- `Program.code` is the rule as compiled (binds expanded into ``cel.bind(...)``, as the
  real server's ``code``); `Program.display_code` is the rule as written (the server's
  ``display-code``). `Program.describe()` gives both for debug check results.
- `RuleContext` carries every CEL variable; ``ref`` is the engine's callback that
  walks links for ``data.ref(path)``, ``auth.ref("$user.path")`` and
  ``linkedData.ref(path)``: ``ref(etype, entity_id, path) -> list of values``. It is
  not called when the entity has no id (the result is then ``[]``, as on the server).
  Exceptions it raises propagate unchanged.

The CEL engine itself (parser boundary, checker, closure compiler) is in
`instantdb_local._cel`; this module holds only what is particular to Instant.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from instantdb_local import errors
from instantdb_local._cel import (
    HOOK_PREFIX,
    CelCompileError,
    CelEvaluationError,
    Declarations,
    Expression,
    Node,
    Timestamp,
    identifiers,
    parse,
    parse_date,
    to_plain,
)
from instantdb_local._cel import _ast as cel_ast
from instantdb_local.errors import ServerError

RefResolver = Callable[[str, "str | None", str], list[Any]]

ACTIONS = ("view", "create", "update", "delete")
LINK_ACTIONS = ("link", "unlink")
_ALLOW_KEYS = (*ACTIONS, "$default", *LINK_ACTIONS)
_ENTRY_KEYS = ("allow", "bind", "fields")
# `$` namespaces that accept rules; every other `$` name is internal.
_RULE_NAMESPACES = frozenset({"$users", "$files", "$streams", "$default"})
_RATE_LIMITS_KEY = "$rateLimits"

_USERS_SELF_RULE = (
    "auth.id == data.id || (data.linkedPrimaryUser != null && auth.id == data.linkedPrimaryUser)"
)
_TYPO_CAUSE = "You may have a typo"
_SECRET_USER_FIELD = "refresh_token"


# -- what a rule may refer to, by action ----------------------------------------------------

_MAP = "map"
_REQUEST_FIELDS = {
    "time": "timestamp",
    "ip": "string",
    "origin": "string",
    "modifiedFields": "list",
}
_REF_SIGNATURES = ((("map", "string"), "list"),)
_FORBIDDEN = {
    "rateLimit": (
        "rateLimit is not supported by the local Instant server; remove the "
        "rateLimit.<bucket>.limit(...) calls from your rules to run them locally"
    ),
}


def _declarations(*extra: str) -> Declarations:
    variables = dict.fromkeys(("data", "auth", "ruleParams", "request", *extra), _MAP)
    return Declarations(
        variables=variables,
        message_fields={"request": _REQUEST_FIELDS},
        member_hooks={"ref": _REF_SIGNATURES},
        forbidden=_FORBIDDEN,
    )


_DECLARATIONS = {
    "view": _declarations(),
    "delete": _declarations(),
    "create": _declarations("newData"),
    "update": _declarations("newData"),
    "link": _declarations("newData", "linkedData", "actions"),
    "unlink": _declarations("newData", "linkedData", "actions"),
}


# -- context ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleContext:
    """Every variable a rule may read. ``auth`` is None for guests (CEL sees ``{}``).

    ``request`` may carry ``time`` (a datetime, epoch ms, date string or omitted for
    "now"), ``ip``, ``origin`` and ``modifiedFields`` (the labels an update writes).
    ``new_data`` defaults to ``data`` where a rule may read ``newData``.
    """

    etype: str
    ref: RefResolver
    data: Mapping[str, Any] = field(default_factory=dict)
    new_data: Mapping[str, Any] | None = None
    # Kept out of the repr: a user record may carry a refresh token.
    auth: Mapping[str, Any] | None = field(default=None, repr=False)
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    request: Mapping[str, Any] = field(default_factory=dict)  # time, ip, origin, modifiedFields
    linked_data: Mapping[str, Any] | None = None
    linked_etype: str | None = None
    actions: Mapping[str, Any] | None = None
    # Impersonated calls hide CEL error details ("You may have a typo"); admin and
    # debug routes show them.
    show_error_details: bool = False


def _request_time(value: Any) -> Timestamp:
    if value is None:
        return Timestamp(time.time_ns())
    if isinstance(value, Timestamp):
        return value
    if isinstance(value, dt.datetime):
        return Timestamp.from_datetime(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Timestamp.from_millis(value)
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is not None:
            return parsed
    raise TypeError(f"request time must be a datetime, epoch ms or date string, not {value!r}")


def _request(context: RuleContext) -> dict[str, Any]:
    request = context.request
    modified = request.get("modifiedFields")
    return {
        "time": _request_time(request.get("time")),
        "ip": request.get("ip"),
        "origin": request.get("origin"),
        "modifiedFields": list(modified) if modified is not None else [],
    }


class _RefHook:
    """``x.ref(path)`` for the three maps that are entities: data, auth and linkedData."""

    __slots__ = ("auth", "context", "data", "linked")

    def __init__(self, context: RuleContext, data: Any, auth: Any, linked: Any) -> None:
        self.context = context
        self.data = data
        self.auth = auth
        self.linked = linked

    def __call__(self, target: Any, path: Any) -> list[Any]:
        if not isinstance(path, str):
            raise CelEvaluationError(
                "ref() takes the path as a string, like data.ref('owner.id')",
                "NO_MATCHING_OVERLOAD",
            )
        if target is self.data:
            etype: str | None = self.context.etype
        elif target is self.auth:
            etype = "$users"
            path = path.removeprefix("$user.")
        elif target is self.linked and self.linked is not None:
            etype = self.context.linked_etype
        else:
            raise CelEvaluationError(
                "ref() is only available on data, auth and linkedData", "NO_MATCHING_OVERLOAD"
            )
        entity_id = target.get("id")
        if entity_id is None or etype is None:
            return []
        return list(self.context.ref(etype, str(entity_id), path))


# -- programs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One compiled rule.

    ``code`` is what was compiled (binds expanded); ``display`` is the rule as written
    (a string, or the JSON boolean the document held). A `Program` built by hand is
    compiled from ``code`` for its action.
    """

    etype: str
    action: str
    code: str
    display: str | bool | None = None
    expression: Expression | None = field(default=None, repr=False, compare=False)
    _uses_ref: bool = field(init=False, repr=False, compare=False)
    _uses_request: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.expression is None:
            path = [self.etype, "allow", self.action]
            try:
                compiled = _compile(parse_rule(self.code, path), self.action, path)
            except (_RuleError, _RuleErrors) as exc:
                problems = exc.problems if isinstance(exc, _RuleErrors) else [exc]
                raise _validation_failed(self.code, problems) from None
            object.__setattr__(self, "expression", compiled)
        expression = self.expression
        assert expression is not None
        object.__setattr__(self, "_uses_ref", _uses_ref(expression.tree))
        object.__setattr__(self, "_uses_request", "request" in expression.free_variables)

    @property
    def display_code(self) -> str:
        """The rule as the debug routes show it: as written, before binds are expanded."""
        if self.display is None:
            return self.code
        if isinstance(self.display, bool):
            return "true" if self.display else "false"
        return self.display

    def _environment(self, context: RuleContext) -> dict[str, Any]:
        data = context.data
        auth: Mapping[str, Any] = context.auth if context.auth is not None else {}
        if _SECRET_USER_FIELD in auth:
            # Rules see the user in db format, which has no token; never let one reach a
            # rule, whose errors may quote the values they fail on.
            auth = {key: value for key, value in auth.items() if key != _SECRET_USER_FIELD}
        env: dict[str, Any] = {"data": data, "auth": auth, "ruleParams": context.rule_params}
        if self.action != "view" and self.action != "delete":
            env["newData"] = context.new_data if context.new_data is not None else data
        linked = context.linked_data
        if self.action in LINK_ACTIONS:
            if linked is None:
                linked = {}
            env["linkedData"] = linked
            env["actions"] = context.actions if context.actions is not None else {}
        if self._uses_request:
            env["request"] = _request(context)
        if self._uses_ref:
            env[HOOK_PREFIX + "ref"] = _RefHook(context, data, auth, linked)
        return env

    def _raw(self, context: RuleContext) -> Any:
        expression = self.expression
        assert expression is not None
        try:
            return expression.evaluate(self._environment(context))
        except CelEvaluationError as exc:
            raise _evaluation_failed(self, exc, context.show_error_details) from None

    def evaluate(self, context: RuleContext) -> Any:
        return to_plain(self._raw(context))

    def passes(self, context: RuleContext) -> bool:
        # The server's truthiness is Clojure's: only null and false deny.
        result = self._raw(context)
        return result is not None and result is not False

    def describe(self) -> dict[str, Any]:
        """``{"etype", "action", "code", "display-code"}`` for debug check results."""
        return {
            "etype": self.etype,
            "action": self.action,
            "code": self.code,
            "display-code": self.display if self.display is not None else self.code,
        }


def _uses_ref(tree: Node) -> bool:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, cel_ast.Call) and node.function == "ref" and node.target is not None:
            return True
        stack.extend(cel_ast.children(node))
    return False


def _evaluation_failed(program: Program, exc: CelEvaluationError, show: bool) -> ServerError:
    cause = exc.message if show else _TYPO_CAUSE
    message = errors.permission_evaluation_failed(program.etype, program.action, cause).message
    return errors.permission_evaluation_failed(
        program.etype, program.action, cause, {"type": exc.code, "message": message, "hint": cause}
    )


# -- compiling rules ---------------------------------------------------------------------------


class _RuleError(Exception):
    """A problem found while validating, before it is reported as validation-failed."""

    def __init__(self, message: str, path: Sequence[Any]) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path)


def _rule_text(rule: str | bool) -> str:
    # The server accepts JSON booleans as rules and compiles them as their CEL spelling.
    if isinstance(rule, bool):
        return "true" if rule else "false"
    return rule


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Node:
    return parse(text)


def parse_rule(text: str, path: Sequence[Any]) -> Node:
    try:
        return _parse_cached(text)
    except CelCompileError as exc:
        raise _RuleError(exc.message, path) from None


def _compile(tree: Node, action: str, path: Sequence[Any]) -> Expression:
    declarations = _DECLARATIONS.get(action)
    if declarations is None:
        raise ValueError(f"action must be one of {', '.join(_DECLARATIONS)}, not {action!r}")
    try:
        return Expression.compile(tree, declarations)
    except CelCompileError as exc:
        issues: list[CelCompileError] = getattr(exc, "issues", [exc])
        raise _RuleErrors([_RuleError(issue.message, path) for issue in issues]) from None


class _RuleErrors(Exception):
    def __init__(self, problems: list[_RuleError]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class _Bind:
    name: str
    text: str
    tree: Node


class _Binds:
    """The ``bind`` names in scope for one etype: ``$default.bind`` then ``etype.bind``."""

    def __init__(self, binds: Mapping[str, _Bind]) -> None:
        self.by_name = dict(binds)
        self.dependencies = {
            name: identifiers(bind.tree) & self.by_name.keys() for name, bind in binds.items()
        }

    def ordered_for(self, tree: Node) -> list[_Bind]:
        """The binds a rule uses, directly or through other binds, dependencies first."""
        used: set[str] = set()
        pending = list(identifiers(tree) & self.by_name.keys())
        while pending:
            name = pending.pop()
            if name not in used:
                used.add(name)
                pending.extend(self.dependencies[name])
        return [self.by_name[name] for name in self._topological(sorted(used))]

    def _topological(self, names: list[str]) -> list[str]:
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                cycle = [*trail[trail.index(name) :], name]
                raise _RuleError(f"bind has a cycle: {' -> '.join(cycle)}", [])
            state[name] = "visiting"
            for dependency in sorted(self.dependencies[name]):
                visit(dependency, [*trail, name])
            state[name] = "done"
            order.append(name)

        for name in names:
            visit(name, [])
        return order

    def check_cycles(self) -> None:
        self._topological(sorted(self.by_name))

    def expand(self, tree: Node, text: str) -> tuple[Node, str]:
        """Wrap a rule in ``cel.bind`` for each bind it uses, as the server does."""
        for bind in reversed(self.ordered_for(tree)):
            tree = cel_ast.Bind(bind.name, bind.tree, tree, (1, 1))
            text = f"cel.bind({bind.name}, {bind.text}, {text})"
        return tree, text


_NO_BINDS = _Binds({})


def _bind_pairs(raw: Any, etype: str) -> list[tuple[str, Any]]:
    """A ``bind`` value as (name, rule) pairs: a map, or a flat [name, rule, ...] list."""
    path = [etype, "bind"]
    if isinstance(raw, Mapping):
        return list(raw.items())
    if isinstance(raw, list):
        if len(raw) % 2:
            raise _RuleError("bind should have an even number of elements", path)
        pairs = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
        seen: set[Any] = set()
        for name, _ in pairs:
            if name in seen:
                raise _RuleError(
                    "bind should only contain a given variable name once", [*path, name]
                )
            seen.add(name)
        return pairs
    raise _RuleError(
        'bind should be a map of names to rules, or a list like ["name", "rule", ...]', path
    )


def _is_identifier(name: str) -> bool:
    return (
        bool(name)
        and (name[0].isascii() and (name[0].isalpha() or name[0] == "_"))
        and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    )


def _parse_binds(raw: Any, etype: str) -> dict[str, _Bind]:
    binds: dict[str, _Bind] = {}
    for name, rule in _bind_pairs(raw, etype):
        path = [etype, "bind", name]
        if not isinstance(name, str) or not _is_identifier(name):
            raise _RuleError(f"bind names must be identifiers like isOwner, not {name!r}", path)
        if not isinstance(rule, (str, bool)):
            raise _RuleError(f"the rule bound to {name} must be a string", path)
        text = _rule_text(rule)
        binds[name] = _Bind(name, text, parse_rule(text, path))
    return binds


# -- the rule set ---------------------------------------------------------------------------------


class _Fallbacks:
    """Programs for `$` namespaces when no rule (not even `$default`) applies."""

    @staticmethod
    def program(etype: str, action: str) -> Program | None:
        if not etype.startswith("$") or action not in ACTIONS:
            return None
        if etype == "$users" and action in ("view", "update"):
            return _fallback(etype, action, _USERS_SELF_RULE, _USERS_SELF_RULE)
        if etype == "$users" and action == "create":
            return _fallback(etype, action, "true", "true")
        if etype == "$files" and action in ("view", "update"):
            return _fallback(etype, action, "false", "false")
        return _fallback(etype, action, "false", f"disallow_{action}_on_system_tables")


@functools.lru_cache(maxsize=64)
def _fallback(etype: str, action: str, code: str, display: str) -> Program:
    return Program(etype, action, code, display)


class RuleSet:
    """A validated, compiled rules document. Immutable and safe to share between threads."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Validate and compile ``document``; prefer `from_document`, which caches."""
        self.document: Mapping[str, Any] = document
        self._binds: dict[str, _Binds] = {}
        self._expressions: dict[tuple[str, tuple[Any, ...], str], tuple[Expression, str]] = {}
        self._picked: dict[tuple[str, str], Program | None] = {}
        self._fields: dict[str, Mapping[str, Program]] = {}
        self._validate()

    @classmethod
    def from_document(cls, doc: Mapping[str, Any] | None) -> RuleSet:
        if doc is None:
            return _EMPTY
        if not isinstance(doc, Mapping):
            raise _validation_failed(
                doc, [_RuleError("the rules must be an object keyed by namespace", [])]
            )
        try:
            key = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise _validation_failed(
                doc, [_RuleError("the rules must be plain JSON (objects, strings, booleans)", [])]
            ) from None
        return _CACHE.get(key, doc)

    def __repr__(self) -> str:
        return f"RuleSet({sorted(self.document)!r})"

    # -- picking programs ---------------------------------------------------------------------

    def program(self, etype: str, action: str) -> Program | None:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        key = (etype, action)
        try:
            return self._picked[key]
        except KeyError:
            pass
        picked = self._pick(etype, action)
        self._picked[key] = picked
        return picked

    def _pick(self, etype: str, action: str) -> Program | None:
        for owner, name in ((etype, action), (etype, "$default"), ("$default", action)):
            rule = self._allow(owner).get(name)
            if isinstance(rule, (str, bool)):
                return self._program(etype, action, (owner, "allow", name), rule)
        rule = self._allow("$default").get("$default")
        if isinstance(rule, (str, bool)):
            return self._program(etype, action, ("$default", "allow", "$default"), rule)
        return _Fallbacks.program(etype, action)

    def link_program(self, etype: str, action: str, label: str) -> Program | None:
        if action not in LINK_ACTIONS:
            raise ValueError(f"action must be link or unlink, not {action!r}")
        rules = self._allow(etype).get(action)
        if not isinstance(rules, Mapping):
            return None
        for name in (label, "$default"):
            rule = rules.get(name)
            if isinstance(rule, (str, bool)):
                return self._program(etype, action, (etype, "allow", action, name), rule)
        return None

    def field_programs(self, etype: str) -> Mapping[str, Program]:
        cached = self._fields.get(etype)
        if cached is not None:
            return cached
        entry = self.document.get(etype)
        rules = entry.get("fields") if isinstance(entry, Mapping) else None
        programs: dict[str, Program] = {}
        if isinstance(rules, Mapping):
            for label, rule in rules.items():
                if isinstance(rule, (str, bool)):
                    path = (etype, "fields", label)
                    programs[label] = self._program(etype, "view", path, rule)
        self._fields[etype] = programs
        return programs

    # -- internals ---------------------------------------------------------------------------------

    def _allow(self, etype: str) -> Mapping[str, Any]:
        entry = self.document.get(etype)
        if isinstance(entry, Mapping):
            allow = entry.get("allow")
            if isinstance(allow, Mapping):
                return allow
        return {}

    def _binds_for(self, etype: str) -> _Binds:
        binds = self._binds.get(etype)
        if binds is not None:
            return binds
        entry = self.document.get(etype)
        own = entry.get("bind") if isinstance(entry, Mapping) else None
        if etype != "$default" and own is None:
            binds = self._binds_for("$default")
        else:
            merged: dict[str, _Bind] = {}
            defaults = self.document.get("$default")
            default_binds = defaults.get("bind") if isinstance(defaults, Mapping) else None
            if etype != "$default" and default_binds is not None:
                merged.update(_parse_binds(default_binds, "$default"))
            if own is not None:
                # A name bound on the etype replaces the same name from $default.
                merged.update(_parse_binds(own, etype))
            binds = _Binds(merged) if merged else _NO_BINDS
        self._binds[etype] = binds
        return binds

    def _expression(
        self, etype: str, action: str, path: tuple[Any, ...], rule: str | bool
    ) -> tuple[Expression, str]:
        binds = self._binds_for(etype)
        # Etypes without binds of their own share one compiled copy of each rule they
        # take from $default.
        scope = "$default" if binds is self._binds_for("$default") else etype
        key = (scope, path, action)
        cached = self._expressions.get(key)
        if cached is None:
            text = _rule_text(rule)
            tree, code = binds.expand(parse_rule(text, list(path)), text)
            cached = (_compile(tree, action, list(path)), code)
            self._expressions[key] = cached
        return cached

    def _program(self, etype: str, action: str, path: tuple[Any, ...], rule: str | bool) -> Program:
        try:
            expression, code = self._expression(etype, action, path, rule)
        except (_RuleError, _RuleErrors) as exc:
            # Only reachable for an etype the document does not name, whose rules were
            # all checked at load time; kept so a surprise is a clear error, not a crash.
            problems = exc.problems if isinstance(exc, _RuleErrors) else [exc]
            raise errors.validation_failed(
                "permission", list(path), [{"message": p.message} for p in problems]
            ) from None
        return Program(etype, action, code, rule, expression)

    def _validate(self) -> None:
        problems: list[_RuleError] = []
        for etype, entry in self.document.items():
            problems.extend(self._entry_problems(etype, entry))
        if problems:
            unique: dict[tuple[str, str], _RuleError] = {}
            for problem in problems:
                unique.setdefault((problem.message, json.dumps(problem.path)), problem)
            raise _validation_failed(self.document, list(unique.values()))

    def _entry_problems(self, etype: Any, entry: Any) -> Iterator[_RuleError]:
        if etype == _RATE_LIMITS_KEY:
            # Bucket definitions are inert unless a rule calls rateLimit, which we refuse.
            return
        if not isinstance(etype, str) or not etype:
            yield _RuleError("namespace names must be non-empty strings", [etype])
            return
        if etype.startswith("$") and etype not in _RULE_NAMESPACES:
            yield _RuleError(
                f"The {etype} namespace is a reserved internal namespace that does not yet "
                "support rules.",
                [etype],
            )
            return
        if not isinstance(entry, Mapping):
            yield _RuleError(
                f"the rules for {etype} must be an object with allow, bind or fields", [etype]
            )
            return
        for key in entry:
            if key not in _ENTRY_KEYS:
                yield _RuleError(
                    f"unknown key {key!r} in the rules for {etype}: expected allow, bind or fields",
                    [etype, key],
                )
        try:
            binds = self._binds_for(etype)
            if entry.get("bind") is not None or etype == "$default":
                # Checked where binds are written; a cycle in $default.bind is reported
                # once, on $default, not on every etype that inherits it.
                binds.check_cycles()
        except _RuleError as exc:
            yield _RuleError(exc.message, exc.path or [etype, "bind"])
            return
        yield from self._allow_problems(etype, entry.get("allow"))
        yield from self._field_problems(etype, entry.get("fields"))
        if etype != "$default":
            # $default rules are compiled with this etype's binds too, as the server does.
            for action in ACTIONS:
                for name in (action, "$default"):
                    rule = self._allow("$default").get(name)
                    path = ("$default", "allow", name)
                    yield from self._compile_problems(etype, action, path, rule)

    def _compile_problems(
        self, etype: str, action: str, path: tuple[Any, ...], rule: Any
    ) -> Iterator[_RuleError]:
        if rule is None:
            return
        if not isinstance(rule, (str, bool)):
            yield _RuleError("a rule must be a CEL string or a boolean", list(path))
            return
        try:
            self._expression(etype, action, path, rule)
        except _RuleError as exc:
            yield _RuleError(exc.message, exc.path or list(path))
        except _RuleErrors as exc:
            yield from exc.problems

    def _allow_problems(self, etype: str, allow: Any) -> Iterator[_RuleError]:
        if allow is None:
            return
        if not isinstance(allow, Mapping):
            yield _RuleError(f"{etype}.allow must be an object of action to rule", [etype, "allow"])
            return
        for action, rule in allow.items():
            path: tuple[Any, ...] = (etype, "allow", action)
            if action not in _ALLOW_KEYS:
                yield _RuleError(
                    f"unknown action {action!r} in {etype}.allow: expected one of "
                    f"{', '.join(_ALLOW_KEYS)}",
                    list(path),
                )
            elif action in LINK_ACTIONS:
                yield from self._link_problems(etype, action, rule)
            elif etype == "$users" and action == "delete" and rule not in (None, "false", False):
                yield _RuleError(
                    "The $users namespace doesn't support permissions for delete. "
                    'Set `$users.allow.delete` to `"false"`.',
                    list(path),
                )
            elif action == "$default":
                # A $default rule serves every action, so it must compile for each.
                for served in ACTIONS:
                    yield from self._compile_problems(etype, served, path, rule)
            else:
                yield from self._compile_problems(etype, action, path, rule)

    def _link_problems(self, etype: str, action: str, rules: Any) -> Iterator[_RuleError]:
        if rules is None:
            return
        if not isinstance(rules, Mapping):
            yield _RuleError(
                f"{etype}.allow.{action} must be an object of link label to rule",
                [etype, "allow", action],
            )
            return
        for label, rule in rules.items():
            yield from self._compile_problems(etype, action, (etype, "allow", action, label), rule)

    def _field_problems(self, etype: str, fields: Any) -> Iterator[_RuleError]:
        if fields is None:
            return
        if not isinstance(fields, Mapping):
            yield _RuleError(
                f"{etype}.fields must be an object of attribute to rule", [etype, "fields"]
            )
            return
        for label, rule in fields.items():
            if label == "id":
                yield _RuleError(
                    f"You cannot set field rules for `id`. Use {etype} -> allow -> view instead",
                    [etype, "fields"],
                )
                continue
            yield from self._compile_problems(etype, "view", (etype, "fields", label), rule)


def _validation_failed(document: Any, problems: list[_RuleError]) -> ServerError:
    listed = [{"message": p.message, "in": p.path} for p in problems]
    located = [
        f"{'.'.join(str(part) for part in p.path)}: {p.message}" if p.path else p.message
        for p in problems
    ]
    return errors.validation_failed(
        "rule", document, listed, message="Validation failed for rule: " + ", ".join(located)
    )


class _RuleSetCache:
    """Compiled rule sets by canonical JSON, so equal documents compile once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, RuleSet] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, document: Mapping[str, Any]) -> RuleSet:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        # A private copy, in the order given, so later changes to the caller's dict do
        # not leak in and errors list the rules in the order they were written.
        rule_set = RuleSet(json.loads(json.dumps(document)))
        with self._lock:
            self._entries[key] = rule_set
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return rule_set


_CACHE = _RuleSetCache(64)


_EMPTY = RuleSet({})
