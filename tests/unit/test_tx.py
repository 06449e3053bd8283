"""The db.tx builder: every form's wire steps, immutability, validation, flattening."""

from __future__ import annotations

import copy
import json
import pickle
import uuid
from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb import InstantEncodeError, InstantTypeError, InstantValueError, TxChunk, lookup
from instantdb._tx import TxBuilder, steps_of, with_rule_params

GOAL = "60a10000-0000-4000-8000-000000000001"
GOAL_2 = "60a10000-0000-4000-8000-000000000002"
TODO = "70d00000-0000-4000-8000-000000000001"
TODO_2 = "70d00000-0000-4000-8000-000000000002"
FILE = "f0000000-0000-4000-8000-000000000001"
EMAIL = "alyssa@instantdb.com"

tx = TxBuilder()


# The expected steps are those the official SDK put on the wire for the same calls
# (conformance vectors transact_*), and the table in the wire protocol spec §4.2.
WIRE_CASES = {
    "update": (
        tx.goals[GOAL].update({"title": "Get fit"}),
        [["update", "goals", GOAL, {"title": "Get fit"}]],
    ),
    "update with opts": (
        tx.goals[GOAL].update({"title": "x"}, {"upsert": False}),
        [["update", "goals", GOAL, {"title": "x"}, {"upsert": False}]],
    ),
    "update with empty opts keeps the fifth element": (
        tx.goals[GOAL].update({"title": "x"}, {}),
        [["update", "goals", GOAL, {"title": "x"}, {}]],
    ),
    "merge": (
        tx.goals[GOAL].merge({"meta": {"progress": {"week1": 3}}, "tags": ["health"]}),
        [["merge", "goals", GOAL, {"meta": {"progress": {"week1": 3}}, "tags": ["health"]}]],
    ),
    "merge with opts": (
        tx.goals[GOAL].merge({"a": 1}, {"upsert": True}),
        [["merge", "goals", GOAL, {"a": 1}, {"upsert": True}]],
    ),
    "create": (
        tx.todos[TODO].create(
            {"title": "Run", "done": False, "priority": 2, "score": 1.5, "notes": None}
        ),
        [
            [
                "create",
                "todos",
                TODO,
                {"title": "Run", "done": False, "priority": 2, "score": 1.5, "notes": None},
            ]
        ],
    ),
    "delete": (tx.goals[GOAL].delete(), [["delete", "goals", GOAL, None]]),
    "link list and unlink single": (
        [tx.goals[GOAL].link({"todos": [TODO, TODO_2]}), tx.goals[GOAL_2].unlink({"todos": TODO})],
        [
            ["link", "goals", GOAL, {"todos": [TODO, TODO_2]}],
            ["unlink", "goals", GOAL_2, {"todos": TODO}],
        ],
    ),
    "lookup as entity": (
        tx.users[lookup("email", EMAIL)].update({"name": "Alyssa"}),
        [["update", "users", ["email", EMAIL], {"name": "Alyssa"}]],
    ),
    "lookup inside link args is sent verbatim": (
        tx.goals[GOAL].link({"owner": lookup("email", EMAIL)}),
        [["link", "goals", GOAL, {"owner": 'lookup__email__"alyssa@instantdb.com"'}]],
    ),
    "subscript namespace": (tx["$files"][FILE].delete(), [["delete", "$files", FILE, None]]),
    "rule_params chained": (
        tx["goals"][GOAL]
        .rule_params({"knownTitle": "Get fit"})
        .update({"title": "Get fit"})
        .link({"todos": TODO}),
        [
            ["ruleParams", "goals", GOAL, {"knownTitle": "Get fit"}],
            ["update", "goals", GOAL, {"title": "Get fit"}],
            ["link", "goals", GOAL, {"todos": TODO}],
        ],
    ),
    "datetime and date values": (
        tx.goals[GOAL].update(
            {
                "dueAt": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                "startDay": date(2024, 1, 1),
            }
        ),
        [
            [
                "update",
                "goals",
                GOAL,
                {"dueAt": "2024-01-02T03:04:05+00:00", "startDay": "2024-01-01"},
            ]
        ],
    ),
    "the docs' writing example": (
        [
            tx.goals[GOAL].update({"title": "Get fit"}),
            tx.todos[TODO].update({"title": "Run"}),
            tx.goals[GOAL].link({"todos": TODO}),
            tx.users[lookup("email", EMAIL)].update({"name": "Alyssa"}),
        ],
        [
            ["update", "goals", GOAL, {"title": "Get fit"}],
            ["update", "todos", TODO, {"title": "Run"}],
            ["link", "goals", GOAL, {"todos": TODO}],
            ["update", "users", ["email", EMAIL], {"name": "Alyssa"}],
        ],
    ),
    "namespace lookup() equals a lookup() entity": (
        tx.users.lookup("email", EMAIL).update({"name": "Alyssa"}),
        [["update", "users", ["email", EMAIL], {"name": "Alyssa"}]],
    ),
    "UUID entity and link target become strings": (
        tx.goals[uuid.UUID(GOAL)].link({"todos": uuid.UUID(TODO)}),
        [["link", "goals", GOAL, {"todos": TODO}]],
    ),
    "(attribute, value) pair entity": (
        tx.users[("email", EMAIL)].delete(),
        [["delete", "users", ["email", EMAIL], None]],
    ),
}


@pytest.mark.parametrize("case", list(WIRE_CASES))
def test_builder_produces_the_wire_steps(case: str) -> None:
    chunks, expected = WIRE_CASES[case]
    assert [list(step) for step in steps_of(chunks)] == expected
    # and exactly this JSON (tuples become arrays, None becomes null)
    assert json.loads(json.dumps(steps_of(chunks))) == expected


def test_attribute_and_subscript_namespaces_are_the_same() -> None:
    assert tx.goals[GOAL].update({"a": 1}) == tx["goals"][GOAL].update({"a": 1})


def test_chunks_are_immutable() -> None:
    base = tx.goals[GOAL]
    updated = base.update({"title": "a"})
    linked = updated.link({"todos": TODO})
    assert base.steps == []
    assert len(updated.steps) == 1
    assert [step[0] for step in linked.steps] == ["update", "link"]
    with pytest.raises(AttributeError, match="immutable"):
        updated._steps = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        updated.namespace = "todos"  # type: ignore[misc]


def test_a_chunk_keeps_its_own_copy_of_the_args() -> None:
    args = {"title": "before", "meta": {"n": 1}}
    chunk = tx.goals[GOAL].update(args)
    args["title"] = "after"
    args["meta"]["n"] = 2  # type: ignore[index]
    assert chunk.steps[0][3] == {"title": "before", "meta": {"n": 1}}


def test_underscore_attributes_are_not_namespaces() -> None:
    with pytest.raises(AttributeError, match=r"db\.tx\['_private'\]"):
        _ = tx._private
    assert tx["_private"][GOAL].delete().steps == [["delete", "_private", GOAL, None]]
    assert not hasattr(tx, "__deepcopy__")


@pytest.mark.parametrize(
    "action", ["update", "merge", "create", "delete", "link", "unlink", "rule_params"]
)
def test_a_chunk_action_on_a_namespace_says_to_pick_an_entity(action: str) -> None:
    from instantdb import InstantError

    with pytest.raises(InstantError, match=rf"db\.tx\.goals\[id\(\)\]\.{action}") as caught:
        getattr(tx.goals, action)
    assert isinstance(caught.value, AttributeError)  # hasattr() and getattr(..., d) still work
    assert not hasattr(tx.goals, action)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tx.goals.nope


def test_builder_objects_survive_deepcopy_and_pickle() -> None:
    chunk = tx.goals[GOAL].update({"when": date(2024, 1, 1)}).link({"todos": [TODO]})
    for clone in (copy.deepcopy(chunk), pickle.loads(pickle.dumps(chunk))):
        assert clone == chunk
        assert clone.steps == chunk.steps
    assert pickle.loads(pickle.dumps(tx.goals)) == tx.goals
    assert isinstance(copy.deepcopy(tx), TxBuilder)
    assert isinstance(pickle.loads(pickle.dumps(tx)), TxBuilder)


def test_chunk_equality_and_repr() -> None:
    one = tx.goals[GOAL].update({"a": 1})
    assert one == tx.goals[GOAL].update({"a": 1})
    assert one != tx.goals[GOAL].update({"a": 2})
    assert one != "not a chunk"
    assert repr(one) == f"<TxChunk goals[{GOAL!r}]: update>"
    assert repr(tx.goals[GOAL]) == f"<TxChunk goals[{GOAL!r}]: no steps yet>"
    with pytest.raises(TypeError):
        hash(one)


def test_dir_lists_known_namespaces_without_io() -> None:
    names = ["goals", "$files", "todos"]
    builder = TxBuilder(lambda: names)
    listing = dir(builder)
    assert "goals" in listing
    assert "todos" in listing
    assert "$files" not in listing  # not reachable by attribute
    assert builder._ipython_key_completions_() == ["$files", "goals", "todos"]
    assert "goals" not in dir(TxBuilder())


def test_transact_level_rule_params_cover_each_entity_once() -> None:
    steps = steps_of(
        [
            tx.goals[GOAL].update({"a": 1}),
            tx.goals[GOAL].link({"todos": TODO}),
            tx.users[lookup("email", EMAIL)].update({"b": 2}),
        ]
    )
    assert [list(step) for step in with_rule_params(steps, {"r": 1})] == [
        ["ruleParams", "goals", GOAL, {"r": 1}],
        ["ruleParams", "users", ["email", EMAIL], {"r": 1}],
        ["update", "goals", GOAL, {"a": 1}],
        ["link", "goals", GOAL, {"todos": TODO}],
        ["update", "users", ["email", EMAIL], {"b": 2}],
    ]


def test_nested_lists_and_any_iterable_are_flattened_in_order() -> None:
    a = tx.goals["a"].delete()
    b = tx.goals["b"].delete()
    c = tx.goals["c"].delete()
    expected = [["delete", "goals", name, None] for name in "abc"]
    assert [list(s) for s in steps_of([a, [b, [c]]])] == expected
    assert [list(s) for s in steps_of(chunk for chunk in (a, b, c))] == expected
    assert [list(s) for s in steps_of((a, iter([b]), [[c]]))] == expected
    assert steps_of([]) == []


@pytest.mark.parametrize(
    ("chunks", "where"),
    [
        ("goals", "chunks is str"),
        ({"goals": {}}, "chunks is dict"),
        ([tx.goals["a"].delete(), 42], r"chunks\[1\] is int"),
        ([[tx.goals["a"].delete(), ["x"]]], r"chunks\[0\]\[1\]\[0\] is str"),
        (tx.goals["a"], None),
    ],
)
def test_transact_rejects_what_is_not_a_chunk(chunks: object, where: str | None) -> None:
    if where is None:  # an empty chunk is a chunk: it simply has no steps
        assert steps_of(chunks) == []  # type: ignore[arg-type]
        return
    with pytest.raises(InstantTypeError, match=where):
        steps_of(chunks)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: tx[""], InstantValueError, "must not be empty"),
        (lambda: tx[3], InstantTypeError, r"takes a namespace name \(str\), got int"),
        (lambda: tx.goals[""], InstantValueError, "entity id must not be empty"),
        (lambda: tx.goals[42], InstantTypeError, "takes an entity id"),
        (lambda: tx.goals[None], InstantTypeError, "got NoneType"),
        (lambda: tx.goals[("a", "b", "c")], InstantTypeError, "takes an entity id"),
        (lambda: tx.goals[(1, "b")], InstantTypeError, "lookup attribute must be a str"),
        (lambda: tx.goals["lookup__email"], InstantValueError, "not a valid lookup"),
        (
            lambda: tx.goals[GOAL].update(["title"]),
            InstantTypeError,
            "update.. takes a dict for args",
        ),
        (lambda: tx.goals[GOAL].update({"a": 1}, "x"), InstantTypeError, "takes a dict for opts"),
        (lambda: tx.goals[GOAL].merge(None), InstantTypeError, "merge.. takes a dict"),
        (lambda: tx.goals[GOAL].create("x"), InstantTypeError, "create.. takes a dict"),
        (lambda: tx.goals[GOAL].rule_params(1), InstantTypeError, "rule_params.. takes a dict"),
        (lambda: tx.goals[GOAL].link(TODO), InstantTypeError, "link label -> id"),
        (lambda: tx.goals[GOAL].link({"todos": 5}), InstantTypeError, "target for 'todos'"),
        (lambda: tx.goals[GOAL].link({"todos": [TODO, 5]}), InstantTypeError, r"'todos\[1\]'"),
        (lambda: tx.goals[GOAL].unlink({"todos": ""}), InstantTypeError, "unlink"),
        (lambda: tx.goals[GOAL].link({"": TODO}), InstantTypeError, "labels must be non-empty"),
        (lambda: tx.goals[GOAL].update({"a": b"x"}), InstantEncodeError, r'args\["a"\]'),
    ],
)
def test_bad_builder_arguments_fail_at_build_time(build, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        build()


def test_encode_errors_name_the_path_inside_the_args() -> None:
    with pytest.raises(InstantEncodeError) as caught:
        tx.goals[GOAL].update({"meta": {"when": float("nan")}})
    assert caught.value.path == 'args["meta"]["when"]'
    assert isinstance(caught.value, ValueError)


# --- properties ---------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
namespaces = st.text(min_size=1, max_size=12)
entity_ids = st.uuids().map(str)
actions = st.sampled_from(["update", "merge", "create", "delete", "link", "unlink", "ruleParams"])


def _apply(chunk: TxChunk, action: str, args: dict[str, object]) -> TxChunk:
    if action == "update":
        return chunk.update(args)
    if action == "merge":
        return chunk.merge(args)
    if action == "create":
        return chunk.create(args)
    if action == "delete":
        return chunk.delete()
    if action == "ruleParams":
        return chunk.rule_params(args)
    targets = {label: str(uuid.UUID(int=len(label))) for label in args}
    return chunk.link(targets) if action == "link" else chunk.unlink(targets)


@given(
    st.lists(
        st.tuples(
            namespaces,
            entity_ids,
            st.lists(
                st.tuples(actions, st.dictionaries(st.text(min_size=1), json_values, max_size=3)),
                min_size=1,
                max_size=4,
            ),
        ),
        max_size=5,
    )
)
def test_steps_round_trip_through_json_in_order(
    plan: list[tuple[str, str, list[tuple[str, dict[str, object]]]]],
) -> None:
    chunks = []
    expected_actions = []
    for namespace, entity, operations in plan:
        chunk = TxBuilder()[namespace][entity]
        for action, args in operations:
            chunk = _apply(chunk, action, args)
            expected_actions.append((action, namespace, entity))
        chunks.append(chunk)
    steps = steps_of(chunks)
    decoded = json.loads(json.dumps(steps, allow_nan=False))
    assert decoded == [list(step) for step in steps]
    assert [(s[0], s[1], s[2]) for s in decoded] == expected_actions
