"""Hypothesis strategies for hostile input: InstaQL queries, InstaML steps, request
bodies and headers, and the Python values a user might hand the SDK.

Each strategy mixes three kinds of input: well-formed (so the fuzz reaches the code past
validation), nearly well-formed (one field wrong, the most revealing), and junk. Names
come from a small vocabulary that matches `FUZZ_SCHEMA`, so queries and steps hit real
attributes, links, checked types and unique constraints most of the time.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "ENTITY_IDS",
    "FUZZ_RULES",
    "FUZZ_SCHEMA",
    "OUT_OF_RANGE_NUMBERS",
    "header_sets",
    "json_texts",
    "json_values",
    "python_values",
    "queries",
    "request_bodies",
    "transaction_steps",
    "well_formed_queries",
]

FUZZ_SCHEMA = {
    "attrs": {
        "goals": {
            "title": {"type": "string", "unique": True, "indexed": True},
            "rank": {"type": "number", "indexed": True},
            "done": {"type": "boolean"},
            "due": {"type": "date", "indexed": True},
            "meta": {"type": "json"},
            "owner": {"type": "string"},
        },
        "todos": {"text": {"type": "string"}, "n": {"type": "number", "indexed": True}},
    },
    "links": {
        "goalTodos": {
            "forward": {"on": "goals", "label": "todos", "has": "many"},
            "reverse": {"on": "todos", "label": "goal", "has": "one"},
        }
    },
}

# Rules that reach every CEL feature the engine evaluates per entity: data, newData,
# auth, ruleParams, ref() through a link, and fields.
FUZZ_RULES = {
    "goals": {
        "allow": {
            "view": "data.owner == null || data.owner == auth.email || ruleParams.k == 'open'",
            "create": "auth.id != null || newData.title != 'locked'",
            "update": "data.owner == null || data.owner == auth.email",
            "delete": "'x' in data.ref('todos.text') || auth.id != null",
        },
        "fields": {"meta": "auth.id != null"},
    },
    "todos": {"allow": {"view": "size(data.ref('goal.title')) >= 0", "$default": "true"}},
}

NAMESPACES = ["goals", "todos", "$users", "$files", "nope", "", "$", "goals.title", "$default"]
ATTRS = ["title", "rank", "done", "due", "meta", "owner", "text", "n", "id", "todos", "goal"]
ATTRS += ["goal.title", "todos.n", "$id", "", "nope", "email", "path"]
ENTITY_IDS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 9)]

_any_text = st.text(max_size=12)
_names = st.one_of(st.sampled_from(ATTRS), _any_text)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _any_text,
    st.sampled_from(["now", "2024-01-02", "2024-01-02T03:04:05Z", "today", "x", "%", "a%b_"]),
    st.sampled_from(ENTITY_IDS),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, nested a few levels."""
    return st.recursive(
        _scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


# Valid JSON numbers no double holds: floats that overflow to infinity, and integers past
# the largest double. Python values cannot carry them (float("1e400") is an infinity,
# which json.dumps writes as the non-JSON `Infinity`), so they go in as text.
OUT_OF_RANGE_NUMBERS = [
    "1e400",
    "-1e400",
    "1e999",
    "2E+308",
    "1.8e308",
    "-179.77e306",
    "1" + "0" * 309,
    "-" + "9" * 400 + ".5",
    "9" * 5000,  # past Python's own int() digit limit too
]

# A JSON string (skipped) or a number token, in text json.dumps wrote.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')


def with_numbers_out_of_range(draw: Callable[[st.SearchStrategy[Any]], Any], text: str) -> str:
    """``text`` (JSON) with none, one or a few of its numbers, wherever they sit, replaced
    by literals from `OUT_OF_RANGE_NUMBERS`. ``draw`` is a composite's ``draw`` or
    ``data.draw``."""
    numbers = [m.span() for m in _JSON_TOKEN.finditer(text) if not m.group().startswith('"')]
    if not numbers:
        return text
    chosen = draw(st.sets(st.integers(0, len(numbers) - 1), max_size=2))
    pieces, end = [], 0
    for index in sorted(chosen):
        start, stop = numbers[index]
        pieces += [text[end:start], draw(st.sampled_from(OUT_OF_RANGE_NUMBERS))]
        end = stop
    return "".join([*pieces, text[end:]])


def json_texts(values: st.SearchStrategy[Any], **dumps_options: Any) -> st.SearchStrategy[str]:
    """The JSON text of ``values``, some of its numbers out of a double's range."""

    @st.composite
    def texts(draw: st.DrawFn) -> str:
        return with_numbers_out_of_range(draw, json.dumps(draw(values), **dumps_options))

    return texts()


_operators = st.sampled_from(
    ["$in", "$not", "$ne", "$gt", "$gte", "$lt", "$lte", "$like", "$ilike", "$isNull", "$bad"]
)


def _where() -> st.SearchStrategy[Any]:
    operand = st.one_of(_scalars, st.lists(_scalars, max_size=3))
    condition = st.one_of(_scalars, st.dictionaries(_operators, operand, max_size=2))
    clause = st.dictionaries(_names, condition, max_size=3)
    return st.recursive(
        clause,
        lambda inner: st.one_of(
            st.fixed_dictionaries({"and": st.lists(inner, max_size=3)}),
            st.fixed_dictionaries({"or": st.lists(inner, max_size=3)}),
            st.dictionaries(_names, inner, max_size=2),
        ),
        max_leaves=6,
    )


def _options() -> st.SearchStrategy[Any]:
    # Past a Java long as well: the real server's limit, and SQLite's.
    small_ints = st.one_of(st.integers(-3, 30), st.sampled_from([2**63, -(2**63) - 1]), _scalars)
    cursor = st.one_of(
        st.lists(_scalars, min_size=4, max_size=4),
        st.tuples(
            st.sampled_from(ENTITY_IDS), _scalars, _scalars, st.one_of(_scalars, json_values(2))
        ).map(list),
        json_values(4),
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "where": st.one_of(_where(), json_values(4)),
            "limit": small_ints,
            "offset": small_ints,
            "first": small_ints,
            "last": small_ints,
            "after": cursor,
            "before": cursor,
            "order": st.one_of(
                st.dictionaries(_names, st.sampled_from(["asc", "desc", "up", 1]), max_size=2),
                _scalars,
            ),
            "fields": st.one_of(st.lists(_names, max_size=3), _scalars),
            "aggregate": st.sampled_from(["count", "sum", None, 1]),
        },
    )


_VALUES = {
    "goals": {
        "title": st.text(max_size=6),
        "rank": st.one_of(st.integers(-5, 5), st.floats(-10, 10)),
        "done": st.booleans(),
        "due": st.one_of(
            st.integers(0, 2**41),
            st.sampled_from(["2024-01-02", "2024-01-02T03:04:05Z", "2024-13-45", "soon"]),
        ),
        "meta": json_values(4),
        "owner": st.sampled_from(["a@b.co", "b@c.de", None]),
    },
    "todos": {"text": st.text(max_size=6), "n": st.integers(-5, 5)},
}
_ORDERABLE = {"goals": ["rank", "due", "title", "serverCreatedAt"], "todos": ["n"]}
_CHILD = {"goals": "todos", "todos": "goal"}


def _typed_where(namespace: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = _VALUES[namespace]

    def clause(label: str) -> st.SearchStrategy[Any]:
        value = fields[label]
        return st.one_of(
            value,
            st.fixed_dictionaries({"$in": st.lists(value, max_size=3)}),
            st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$lte", "$not"]), value),
            st.fixed_dictionaries({"$isNull": st.booleans()}),
            st.fixed_dictionaries({"$like": st.sampled_from(["g%", "%1", "_", "t%"])}),
        )

    return st.sampled_from(sorted(fields)).flatmap(
        lambda label: st.fixed_dictionaries({label: clause(label)})
    )


def _typed_query(namespace: str, depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    options = st.fixed_dictionaries(
        {},
        optional={
            "where": _typed_where(namespace),
            "order": st.sampled_from(_ORDERABLE[namespace]).flatmap(
                lambda label: st.fixed_dictionaries({label: st.sampled_from(["asc", "desc"])})
            ),
            "limit": st.integers(1, 5),
        },
    )
    child = _CHILD[namespace]
    child_namespace = "todos" if namespace == "goals" else "goals"
    children = (
        st.fixed_dictionaries({}, optional={child: _typed_query(child_namespace, depth - 1)})
        if depth
        else st.just({})
    )
    return st.builds(lambda opts, kids: ({"$": opts} if opts else {}) | kids, options, children)


def well_formed_queries() -> st.SearchStrategy[dict[str, Any]]:
    """Queries that pass validation most of the time, to reach the planner and the rules."""
    return st.fixed_dictionaries(
        {},
        optional={"goals": _typed_query("goals"), "todos": _typed_query("todos")},
    )


def queries() -> st.SearchStrategy[Any]:
    """InstaQL queries: well-formed half the time, else shaped right with junk anywhere."""
    subquery = st.recursive(
        st.fixed_dictionaries({}, optional={"$": _options()}),
        lambda inner: st.builds(
            lambda options, children: {**options, **children},
            st.fixed_dictionaries({}, optional={"$": _options()}),
            st.dictionaries(_names, inner, max_size=2),
        ),
        max_leaves=4,
    )
    shaped = st.dictionaries(
        st.one_of(st.sampled_from(NAMESPACES), _any_text),
        st.one_of(subquery, json_values(3)),
        max_size=3,
    )
    with_params = st.builds(lambda q, params: {**q, "$$ruleParams": params}, shaped, json_values(4))
    good = well_formed_queries()
    return st.one_of(good, good, good, shaped, with_params, json_values(6))


_actions = st.sampled_from(
    [
        "update",
        "merge",
        "create",
        "link",
        "unlink",
        "delete",
        "add-attr",
        "delete-attr",
        "update-attr",
        "rule-params",
        "nope",
    ]
)
_entity_refs = st.one_of(
    st.sampled_from(ENTITY_IDS),
    st.builds(lambda a, v: [a, v], _names, _scalars),  # a lookup
    st.builds(lambda v: f"lookup__title__{v}", _any_text),
    _scalars,
)


def _step_args() -> st.SearchStrategy[Any]:
    link_targets = st.one_of(
        st.sampled_from(ENTITY_IDS), st.lists(st.sampled_from(ENTITY_IDS), max_size=3), _scalars
    )
    return st.one_of(
        st.dictionaries(_names, json_values(6), max_size=4),
        st.dictionaries(st.sampled_from(["todos", "goal", "nope", "$user"]), link_targets),
        json_values(4),
    )


def _attr_definition() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"id": st.sampled_from([*ENTITY_IDS, "x"])},
        optional={
            "forward-identity": st.lists(_any_text, max_size=3),
            "value-type": st.sampled_from(["blob", "ref", "x"]),
            "cardinality": st.sampled_from(["one", "many", "x"]),
            "unique?": st.booleans(),
            "index?": st.booleans(),
            "checked-data-type": st.sampled_from(["string", "number", "date", None, "x"]),
        },
    )


_fresh_ids = st.uuids(version=4).map(str)
_some_ids = st.one_of(st.sampled_from(ENTITY_IDS), _fresh_ids)


def _well_formed_step() -> st.SearchStrategy[list[Any]]:
    def writes(namespace: str) -> st.SearchStrategy[list[Any]]:
        return st.builds(
            lambda action, eid, args: [action, namespace, eid, args],
            st.sampled_from(["update", "update", "merge", "create"]),
            _some_ids,
            st.fixed_dictionaries({}, optional=_VALUES[namespace]),
        )

    links = st.builds(
        lambda action, source, label, target: (
            [action, "goals", source, {"todos": target}]
            if label == "todos"
            else [action, "todos", source, {"goal": target}]
        ),
        st.sampled_from(["link", "unlink"]),
        _some_ids,
        st.sampled_from(["todos", "goal"]),
        st.one_of(_some_ids, st.lists(_some_ids, max_size=2)),
    )
    deletes = st.builds(
        lambda ns, eid: ["delete", ns, eid], st.sampled_from(["goals", "todos"]), _some_ids
    )
    by_lookup = st.builds(
        lambda title, args: ["update", "goals", ["title", title], args],
        st.sampled_from(["g0", "g1", "new"]),
        st.fixed_dictionaries({}, optional={"rank": st.integers(0, 3)}),
    )
    return st.one_of(writes("goals"), writes("todos"), links, deletes, by_lookup)


def transaction_steps() -> st.SearchStrategy[Any]:
    """InstaML step lists: well-formed half the time, else junk in any position."""
    step = st.one_of(
        st.builds(
            lambda action, ns, eid, args: [action, ns, eid, args],
            _actions,
            st.sampled_from(NAMESPACES[:4]),
            _entity_refs,
            _step_args(),
        ),
        st.builds(lambda attr: ["add-attr", attr], _attr_definition()),
        st.builds(
            lambda action, ns, eid, args, opts: [action, ns, eid, args, opts],
            _actions,
            st.sampled_from(NAMESPACES),
            _entity_refs,
            _step_args(),
            json_values(3),
        ),
        st.lists(_scalars, max_size=6),
        json_values(3),
    )
    good = st.lists(_well_formed_step(), min_size=1, max_size=4)
    return st.one_of(good, good, good, st.lists(step, max_size=5), json_values(4))


def request_bodies() -> st.SearchStrategy[Any]:
    """A JSON body for any route: the fields the routes read, or anything."""
    known = st.fixed_dictionaries(
        {},
        optional={
            "query": queries(),
            "steps": transaction_steps(),
            "inference?": _scalars,
            "throw-on-missing-attrs?": _scalars,
            "rules-override": st.one_of(st.just(FUZZ_RULES), json_values(4)),
            "dangerously-commit-tx": _scalars,
            "ip-override": _scalars,
            "origin-override": _scalars,
            "email": _scalars,
            "id": _scalars,
            "refresh-token": _scalars,
            "app-id": _scalars,
            "title": _scalars,
            "schema": json_values(4),
            "rules": json_values(4),
        },
    )
    return st.one_of(known, json_values(6))


def header_sets(app_id: str, admin_token: str) -> st.SearchStrategy[dict[str, str]]:
    """Credentials and impersonation headers, right, wrong or malformed."""
    # What httpx can send: printable ASCII without surrounding blanks.
    header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
    header_text = header_text.filter(lambda text: text == text.strip())
    return st.fixed_dictionaries(
        {},
        optional={
            "app-id": st.one_of(st.just(app_id), st.sampled_from(ENTITY_IDS), header_text),
            "authorization": st.one_of(
                st.just(f"Bearer {admin_token}"),
                st.just(admin_token),
                st.builds(lambda t: f"Bearer {t}", st.sampled_from(ENTITY_IDS)),
                header_text,
            ),
            "as-guest": st.sampled_from(["true", "false", "1"]),
            "as-email": st.one_of(st.just("a@b.co"), header_text),
            "as-token": st.one_of(st.sampled_from(ENTITY_IDS), header_text),
        },
    )


class Colour(enum.Enum):
    RED = "red"
    NESTED = {"a": 1}  # noqa: RUF012 - an Enum member whose value is a container


class Opaque:
    """An object with no JSON form."""


def python_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """What a user might pass the SDK as a value: JSON-able or not, and tricky either way."""
    leaves = st.one_of(
        _scalars,
        st.floats(),  # NaN and infinities included
        st.binary(max_size=4),
        st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
        st.dates(),
        st.times(),
        st.uuids(),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.sampled_from(
            [Colour.RED, Colour.NESTED, Opaque(), object(), math.nan, decimal.Decimal("1e400")]
        ),
        st.sampled_from([dt.timedelta(1), 1j, range(3), b"x", bytearray(b"y")]),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.lists(inner, max_size=3).map(tuple),
            st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
            st.dictionaries(st.one_of(_names, st.integers(), st.none()), inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )
