"""Project files (instant.schema.* / instant.perms.*) apply to the default app at start
and again when they change; a bad file keeps the previous schema and rules."""

from __future__ import annotations

import json
import logging
import os

import pytest

from instantdb_local import schema_files
from instantdb_local.instance import Instance
from tests.local.app.fakes import FakeEngine


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _json_only_loader(monkeypatch):
    # A stand-in for schema_files.load_project that reads the JSON forms only, so these
    # tests exercise the reload logic whatever the TypeScript parser supports.
    def load_project(directory):
        schema = rules = None
        sources = []
        for name in ("instant.schema.json", "instant.perms.json"):
            path = directory / name
            if not path.exists():
                continue
            try:
                doc = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise schema_files.SchemaFileError(
                    exc.msg, path=path, line=exc.lineno, column=exc.colno
                ) from None
            sources.append(path)
            if "schema" in name:
                schema = doc
            else:
                rules = doc
        return schema_files.ProjectFiles(schema, rules, tuple(sources))

    monkeypatch.setattr(schema_files, "load_project", load_project)


def _write(path, doc, *, tick):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    # Make the change visible to the mtime poll however coarse the filesystem clock is.
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))


def _open(tmp_path, clock):
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    return project, Instance.open(
        tmp_path / "data", project_dir=project, engine_factory=FakeEngine, clock=clock
    )


def test_files_apply_at_start_and_after_a_change(tmp_path):
    clock = Clock()
    project = tmp_path / "project"
    project.mkdir()
    _write(project / "instant.schema.json", {"attrs": {"a": {}}}, tick=1)
    _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=1)
    project, instance = _open(tmp_path, clock)
    with instance:
        engine = instance.engine(instance.default_app.id)
        assert engine.schema == {"attrs": {"a": {}}}
        assert engine.rules == {"a": {"allow": {"view": "true"}}}
        _write(project / "instant.perms.json", {"a": {"allow": {"view": "false"}}}, tick=2)
        # Not polled again within the same second...
        instance.engine(instance.default_app.id)
        assert engine.rules == {"a": {"allow": {"view": "true"}}}
        # ...but on the first request after it.
        clock.now += 1.5
        instance.engine(instance.default_app.id)
        assert engine.rules == {"a": {"allow": {"view": "false"}}}


def test_a_bad_file_logs_its_location_and_keeps_the_previous_rules(tmp_path, caplog):
    clock = Clock()
    project, instance = _open(tmp_path, clock)
    with instance:
        _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=1)
        clock.now += 2
        engine = instance.engine(instance.default_app.id)
        assert engine.rules == {"a": {"allow": {"view": "true"}}}
        _write(project / "instant.perms.json", '{\n  "a": oops\n}', tick=2)
        clock.now += 2
        with caplog.at_level(logging.ERROR, logger="instantdb_local"):
            instance.engine(instance.default_app.id)
        assert engine.rules == {"a": {"allow": {"view": "true"}}}
        assert "instant.perms.json:2:8" in caplog.text
        assert "previous schema and rules stay in force" in caplog.text


def test_rules_the_engine_rejects_are_logged_and_not_applied(tmp_path, caplog):
    clock = Clock()
    project, instance = _open(tmp_path, clock)
    with instance, caplog.at_level(logging.ERROR, logger="instantdb_local"):
        _write(project / "instant.perms.json", {"broken": {}}, tick=1)
        clock.now += 2
        engine = instance.engine(instance.default_app.id)
        assert engine.rules is None
        assert "broken rule" in caplog.text


def test_removing_the_perms_file_removes_the_rules(tmp_path):
    clock = Clock()
    project = tmp_path / "project"
    project.mkdir()
    _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=1)
    project, instance = _open(tmp_path, clock)
    with instance:
        engine = instance.engine(instance.default_app.id)
        (project / "instant.perms.json").unlink()
        clock.now += 2
        instance.engine(instance.default_app.id)
        assert engine.rules is None


def test_ephemeral_apps_do_not_get_project_files(tmp_path):
    clock = Clock()
    project = tmp_path / "project"
    project.mkdir()
    _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=1)
    project, instance = _open(tmp_path, clock)
    with instance:
        other = instance.create_ephemeral_app("e")
        assert instance.engine(other.id).rules is None


def test_no_project_dir_never_touches_rules(tmp_path):
    with Instance.open(tmp_path / "d", engine_factory=FakeEngine) as instance:
        assert instance.refresh_project(force=True) is False
