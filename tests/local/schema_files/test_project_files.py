"""Whole project directories: the starter files, JSON twins, and what may not coexist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from instantdb_local.perms import RuleSet
from instantdb_local.schema_files import ProjectFiles, SchemaFileError, load_project

STARTER = Path(__file__).resolve().parent / "data" / "starter"


def _attr(
    kind: str, *, unique: bool = False, indexed: bool = False, required: bool = True
) -> dict[str, object]:
    return {"type": kind, "unique": unique, "indexed": indexed, "required": required}


STARTER_SCHEMA = {
    "attrs": {
        "$files": {
            "path": _attr("string", unique=True, indexed=True),
            "url": _attr("string"),
        },
        "$users": {
            "email": _attr("string", unique=True, indexed=True, required=False),
            "imageURL": _attr("string", required=False),
            "type": _attr("string", required=False),
        },
        "goals": {"title": _attr("string"), "createdAt": _attr("date", indexed=True)},
        "todos": {
            "text": _attr("string"),
            "done": _attr("boolean"),
            "priority": _attr("number", indexed=True, required=False),
        },
    },
    "links": {
        "$usersLinkedPrimaryUser": {
            "forward": {
                "on": "$users",
                "label": "linkedPrimaryUser",
                "has": "one",
                "onDelete": "cascade",
            },
            "reverse": {"on": "$users", "label": "linkedGuestUsers", "has": "many"},
        },
        "goalsTodos": {
            "forward": {"on": "goals", "label": "todos", "has": "many"},
            "reverse": {"on": "todos", "label": "goal", "has": "one", "onDelete": "cascade"},
        },
        "goalsOwner": {
            "forward": {"on": "goals", "label": "owner", "has": "one"},
            "reverse": {"on": "$users", "label": "goals", "has": "many"},
        },
    },
}

STARTER_RULES = {
    "goals": {
        "allow": {
            "view": "isOwner",
            "create": "isOwner",
            "update": "isOwner",
            "delete": "isOwner",
        },
        "bind": ["isOwner", "auth.id != null && auth.id in data.ref('owner.id')"],
    },
    "todos": {"allow": {"$default": "auth.id in data.ref('goal.owner.id')"}},
}


def test_the_starter_project_loads() -> None:
    project = load_project(STARTER)
    assert project == ProjectFiles(
        STARTER_SCHEMA,
        STARTER_RULES,
        (STARTER / "instant.schema.ts", STARTER / "instant.perms.ts"),
    )
    # The rules are ready for the engine, compiled and cached.
    program = RuleSet.from_document(project.rules).program("todos", "update")
    assert program is not None
    assert program.display_code == "auth.id in data.ref('goal.owner.id')"


def test_json_twins_load_the_same(tmp_path: Path) -> None:
    (tmp_path / "instant.schema.json").write_text(json.dumps(STARTER_SCHEMA), encoding="utf-8")
    (tmp_path / "instant.perms.json").write_text(json.dumps(STARTER_RULES), encoding="utf-8")
    project = load_project(tmp_path)
    assert project.schema == STARTER_SCHEMA
    assert project.rules == STARTER_RULES
    assert project.sources == (tmp_path / "instant.schema.json", tmp_path / "instant.perms.json")


def test_a_directory_may_hold_only_one_file_or_none(tmp_path: Path) -> None:
    assert load_project(tmp_path) == ProjectFiles(None, None, ())
    shutil.copy(STARTER / "instant.perms.ts", tmp_path)
    project = load_project(tmp_path)
    assert project.schema is None
    assert project.rules == STARTER_RULES


def test_ts_and_json_twins_together_are_refused(tmp_path: Path) -> None:
    shutil.copy(STARTER / "instant.schema.ts", tmp_path)
    (tmp_path / "instant.schema.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SchemaFileError) as caught:
        load_project(tmp_path)
    assert caught.value.path == tmp_path
    assert "both instant.schema.ts and instant.schema.json exist; keep only one of them" in str(
        caught.value
    )


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SchemaFileError, match="no such directory"):
        load_project(tmp_path / "nope")


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "instant.perms.ts").write_bytes(b"export default {'\xff': 1}")
    with pytest.raises(SchemaFileError, match="not UTF-8") as caught:
        load_project(tmp_path)
    assert caught.value.path == tmp_path / "instant.perms.ts"


def test_errors_name_the_file_line_and_column(tmp_path: Path) -> None:
    perms = tmp_path / "instant.perms.ts"
    perms.write_text(
        'const rules = {\n  goals: {\n    allow: {\n      view: "newData.x == 1",\n'
        "    },\n  },\n};\nexport default rules;\n",
        encoding="utf-8",
    )
    with pytest.raises(SchemaFileError) as caught:
        load_project(tmp_path)
    error = caught.value
    assert (error.path, error.line, error.column) == (perms, 4, 13)
    assert str(error) == (
        f"{perms}:4:13: Validation failed for rule: goals.allow.view: "
        "undeclared reference to 'newData' (in container '')"
    )


def test_json_rule_errors_point_into_the_file(tmp_path: Path) -> None:
    perms = tmp_path / "instant.perms.json"
    perms.write_text('{\n  "goals": {\n    "bind": ["a"]\n  }\n}\n', encoding="utf-8")
    with pytest.raises(SchemaFileError) as caught:
        load_project(tmp_path)
    assert (caught.value.line, caught.value.column) == (3, 13)
    assert "bind should have an even number of elements" in caught.value.message
