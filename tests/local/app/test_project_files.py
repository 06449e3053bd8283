"""Project files (instant.schema.* / instant.perms.*) apply to the default app at start
and again when they change. At start a file that cannot be applied stops the server; on a
reload a bad file keeps what the last good one applied, and a permissions file that never
loaded locks the app rather than leaving it without rules."""

from __future__ import annotations

import json
import logging
import os

import pytest

from instantdb_local import schema_files
from instantdb_local.errors import LocalServerError, ProjectFileError
from instantdb_local.instance import LOCKED_RULES, Instance
from tests.local.app.fakes import FakeEngine


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _json_only_loader(monkeypatch):
    # Stand-ins for the schema_files loaders that read the JSON forms only, as they are,
    # so these tests exercise the reload logic whatever the parsers support.
    def loader(name):
        def load(directory):
            path = directory / name
            if not path.exists():
                return None
            try:
                return path, json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise schema_files.SchemaFileError(
                    exc.msg, path=path, line=exc.lineno, column=exc.colno
                ) from None

        return load

    monkeypatch.setattr(schema_files, "load_schema_file", loader("instant.schema.json"))
    monkeypatch.setattr(schema_files, "load_perms_file", loader("instant.perms.json"))


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


def _project(tmp_path):
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    return project


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("instant.perms.json", '{\n  "a": oops\n}', "instant.perms.json:2:8"),
        ("instant.schema.json", '{"attrs":\n\n  [}', "instant.schema.json:3:4"),
        ("instant.perms.json", json.dumps({"broken": {}}), "instant.perms.json: "),
    ],
    ids=["perms-syntax", "schema-syntax", "rules-the-engine-rejects"],
)
def test_a_file_that_cannot_be_applied_at_start_stops_the_start(tmp_path, name, text, where):
    project = _project(tmp_path)
    _write(project / name, text, tick=1)
    with pytest.raises(ProjectFileError) as caught:
        Instance.open(tmp_path / "data", project_dir=project, engine_factory=FakeEngine)
    message = str(caught.value)
    assert where in message
    assert "Fix the project file and start the server again" in message
    assert isinstance(caught.value, LocalServerError)


def test_a_bad_schema_at_start_is_fatal_even_when_the_rules_are_good(tmp_path):
    # Schema and rules load independently, but the start needs both.
    project = _project(tmp_path)
    _write(project / "instant.schema.json", "{", tick=1)
    _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=1)
    with pytest.raises(ProjectFileError, match=r"instant\.schema\.json:1:2"):
        Instance.open(tmp_path / "data", project_dir=project, engine_factory=FakeEngine)


def test_a_failed_start_leaves_the_data_dir_usable(tmp_path):
    project = _project(tmp_path)
    _write(project / "instant.perms.json", "{", tick=1)
    with pytest.raises(ProjectFileError):
        Instance.open(tmp_path / "data", project_dir=project, engine_factory=FakeEngine)
    _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=2)
    with Instance.open(tmp_path / "data", project_dir=project, engine_factory=FakeEngine) as ok:
        assert ok.engine(ok.default_app.id).rules == {"a": {"allow": {"view": "true"}}}


def test_a_bad_reload_logs_its_location_and_keeps_the_rules_last_loaded(tmp_path, caplog):
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
        assert "the rules last loaded stay in force" in caplog.text


@pytest.mark.parametrize(
    "text", ['{\n  "a": oops\n}', json.dumps({"broken": {}})], ids=["syntax", "rejected"]
)
def test_a_perms_file_that_never_loaded_locks_the_app(tmp_path, caplog, text):
    # Started without a permissions file (no rules: everyone may do everything), then
    # one is added with a mistake: keeping "no rules" would ignore what it asks for.
    clock = Clock()
    project, instance = _open(tmp_path, clock)
    with instance:
        engine = instance.engine(instance.default_app.id)
        assert engine.rules is None
        _write(project / "instant.perms.json", text, tick=1)
        clock.now += 2
        with caplog.at_level(logging.ERROR, logger="instantdb_local"):
            instance.engine(instance.default_app.id)
        assert engine.rules == LOCKED_RULES
        assert "refuses every request not made with the admin token" in caplog.text
        assert "instant.perms.json" in caplog.text
        # Fixed: its rules apply and the lock is gone.
        _write(project / "instant.perms.json", {"a": {"allow": {"view": "true"}}}, tick=2)
        clock.now += 2
        instance.engine(instance.default_app.id)
        assert engine.rules == {"a": {"allow": {"view": "true"}}}


def test_a_schema_typo_does_not_hold_back_good_rules_on_reload(tmp_path, caplog):
    clock = Clock()
    project, instance = _open(tmp_path, clock)
    with instance:
        engine = instance.engine(instance.default_app.id)
        _write(project / "instant.schema.json", '{"attrs": ', tick=1)
        _write(project / "instant.perms.json", {"a": {"allow": {"view": "false"}}}, tick=1)
        clock.now += 2
        with caplog.at_level(logging.ERROR, logger="instantdb_local"):
            instance.engine(instance.default_app.id)
        assert engine.rules == {"a": {"allow": {"view": "false"}}}
        assert engine.schema is None
        assert "Schema not applied" in caplog.text
        assert "instant.schema.json:1:11" in caplog.text


def test_deleting_a_perms_file_that_locked_the_app_removes_the_lock(tmp_path):
    clock = Clock()
    project, instance = _open(tmp_path, clock)
    with instance:
        engine = instance.engine(instance.default_app.id)
        _write(project / "instant.perms.json", "{", tick=1)
        clock.now += 2
        instance.engine(instance.default_app.id)
        assert engine.rules == LOCKED_RULES
        (project / "instant.perms.json").unlink()
        clock.now += 2
        instance.engine(instance.default_app.id)
        assert engine.rules is None


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
