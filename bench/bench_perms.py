"""Permission rules evaluated per entity, as a query over thousands of rows does.

Baselines, measured in the same run:

- the same condition written as a plain Python function (the floor any rule engine
  pays on top of), and
- for the compiled rules, celpy's own evaluator on the same rule (what we would pay had
  we used cel-python end to end).
"""

from __future__ import annotations

from typing import Any

from _harness import Result, best_of

from instantdb_local.perms import RuleContext, RuleSet

_RULES = {
    "todos": {
        "allow": {
            "view": "auth.id == data.ownerId || data.public == true",
            "update": "isOwner && request.modifiedFields.all(f, f in ['title', 'done'])",
        },
        "bind": ["isOwner", "auth.id == data.ownerId"],
        "fields": {"secret": "auth.id == data.ownerId"},
    },
    "goals": {"allow": {"view": "'open' in data.ref('project.status')"}},
}
_USER = {"id": "00000000-0000-4000-8000-000000000301", "email": "alice@example.com"}


def _rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "title": f"todo {i}",
            "public": i % 3 == 0,
            "ownerId": _USER["id"] if i % 2 else "someone-else",
            "secret": "s",
        }
        for i in range(count)
    ]


def _no_refs(etype: str, entity_id: str | None, path: str) -> list[Any]:
    return ["open"]


def run(quick: bool) -> list[Result]:
    rows = _rows(200 if quick else 5000)
    rules = RuleSet.from_document(_RULES)
    view = rules.program("todos", "view")
    update = rules.program("todos", "update")
    ref_view = rules.program("goals", "view")
    assert view is not None
    assert update is not None
    assert ref_view is not None
    repeat = 2 if quick else 5

    def plain() -> int:
        return sum(1 for row in rows if _USER["id"] == row["ownerId"] or row["public"] is True)

    def compiled_view() -> int:
        return sum(
            1 for row in rows if view.passes(RuleContext("todos", _no_refs, data=row, auth=_USER))
        )

    def compiled_update() -> int:
        request = {"modifiedFields": ["title"]}
        return sum(
            1
            for row in rows
            if update.passes(RuleContext("todos", _no_refs, data=row, auth=_USER, request=request))
        )

    def compiled_ref() -> int:
        return sum(1 for row in rows if ref_view.passes(RuleContext("goals", _no_refs, data=row)))

    assert plain() == compiled_view()
    per_row = len(rows)
    floor = best_of(plain, repeat=repeat) / per_row
    ours = best_of(compiled_view, repeat=repeat) / per_row
    results = [
        Result(
            f"perms: view rule per entity ({per_row} rows)",
            ours,
            floor,
            note="baseline: the same condition as a Python function",
        ),
        Result(
            "perms: update rule with bind, request and all() per entity",
            best_of(compiled_update, repeat=repeat) / per_row,
            floor,
        ),
        Result(
            "perms: view rule calling data.ref() per entity",
            best_of(compiled_ref, repeat=repeat) / per_row,
            floor,
        ),
        Result(
            "perms: RuleSet.from_document, cached",
            best_of(lambda: RuleSet.from_document(_RULES), repeat=repeat, number=200),
            floor,
            note="per call; the document is compiled once",
        ),
    ]
    results.append(_celpy_comparison(rows[: 50 if quick else 500], ours))
    return results


def _celpy_comparison(rows: list[dict[str, Any]], ours: float) -> Result:
    import celpy

    environment = celpy.Environment()
    program = environment.program(
        environment.compile("auth.id == data.ownerId || data.public == true")
    )
    auth = celpy.json_to_cel(_USER)

    def interpreted() -> None:
        for row in rows:
            program.evaluate({"data": celpy.json_to_cel(row), "auth": auth})

    theirs = best_of(interpreted, repeat=2) / len(rows)
    return Result(
        "perms: celpy's own evaluator on the view rule",
        theirs,
        ours,
        note="baseline: our compiled rule; the ratio is how much slower celpy is",
    )
