"""The data directory: credentials that survive restarts, private file modes, ephemeral
apps that expire, engines closed on shutdown."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from instantdb_local import errors
from instantdb_local.instance import Instance, api_uri
from tests.local.app.fakes import FakeEngine


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_app_and_address_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    with Instance.open(data, engine_factory=FakeEngine) as first:
        app = first.default_app
        first.record_address("127.0.0.1", 4321)
    with Instance.open(data, engine_factory=FakeEngine) as second:
        assert second.default_app == app
        assert second.default_app.admin_token == app.admin_token
        assert second.last_api_uri() == "http://127.0.0.1:4321"
        second.check_admin_token(app.id, app.admin_token)


def test_files_and_directories_are_private(tmp_path):
    data = tmp_path / "data"
    with Instance.open(data, engine_factory=FakeEngine) as instance:
        instance.engine(instance.default_app.id)
        ephemeral = instance.create_ephemeral_app("e")
        assert _mode(data) == 0o700
        assert _mode(data / "instance.sqlite3") == 0o600
        assert _mode(data / "apps") == 0o700
        assert _mode(data / "apps" / instance.default_app.id) == 0o700
        assert _mode(data / "ephemeral" / ephemeral.id) == 0o700


def test_repr_never_shows_tokens(tmp_path):
    with Instance.open(tmp_path / "d", engine_factory=FakeEngine) as instance:
        app = instance.default_app
        assert app.admin_token not in repr(app)
        assert app.admin_token not in repr(instance)


def test_wrong_token_and_unknown_app_answer_alike(tmp_path):
    with Instance.open(tmp_path / "d", engine_factory=FakeEngine) as instance:
        app = instance.default_app
        for app_id, token in [
            (app.id, "x"),
            ("00000000-0000-4000-8000-000000000000", app.admin_token),
        ]:
            with pytest.raises(errors.ServerError) as caught:
                instance.check_admin_token(app_id, token)
            assert caught.value.hint["record-type"] == "app-admin-token"


def test_ephemeral_apps_expire_and_are_removed(tmp_path):
    clock = Clock()
    data = tmp_path / "d"
    with Instance.open(
        data, engine_factory=FakeEngine, clock=clock, ephemeral_ttl=timedelta(hours=1)
    ) as instance:
        record = instance.create_ephemeral_app("short")
        engine = instance.engine(record.id)
        assert (data / "ephemeral" / record.id / "app.sqlite3").exists()
        clock.now += 3599
        assert instance.find_app(record.id) == record
        clock.now += 2
        assert instance.find_app(record.id) is None
        assert engine.closed
        assert not (data / "ephemeral" / record.id).exists()
        with pytest.raises(errors.ServerError) as caught:
            instance.engine(record.id)
        assert caught.value.message == "Record not found: app"
        # The default app never expires.
        assert instance.find_app(instance.default_app.id) is not None


def test_expired_apps_are_swept_when_the_data_dir_is_reopened(tmp_path):
    clock = Clock()
    data = tmp_path / "d"
    with Instance.open(data, engine_factory=FakeEngine, clock=clock) as instance:
        record = instance.create_ephemeral_app("old")
        instance.engine(record.id)
    clock.now += timedelta(days=15).total_seconds()
    with Instance.open(data, engine_factory=FakeEngine, clock=clock) as instance:
        assert instance.find_app(record.id) is None
    assert not (data / "ephemeral" / record.id).exists()


def test_periodic_sweep_removes_apps_nobody_asks_for(tmp_path):
    clock = Clock()
    with Instance.open(
        tmp_path / "d", engine_factory=FakeEngine, clock=clock, ephemeral_ttl=timedelta(seconds=5)
    ) as instance:
        stale = instance.create_ephemeral_app("stale")
        clock.now += 120
        instance.find_app(instance.default_app.id)  # any lookup may trigger the sweep
        assert stale.id not in instance._apps


def test_close_closes_every_engine_and_is_idempotent(tmp_path):
    instance = Instance.open(tmp_path / "d", engine_factory=FakeEngine)
    engines = [instance.engine(instance.default_app.id)]
    engines.append(instance.engine(instance.create_ephemeral_app("e").id))
    instance.close()
    instance.close()
    assert all(engine.closed for engine in engines)


def test_bad_arguments_are_refused_before_any_io(tmp_path):
    with pytest.raises(ValueError, match="ephemeral_ttl"):
        Instance.open(tmp_path / "d", ephemeral_ttl=timedelta(0))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        Instance.open(tmp_path / "d", project_dir=tmp_path / "missing")
    assert not (tmp_path / "d").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        Instance.open(tmp_path / "file")


def test_a_corrupt_registry_is_reported_clearly(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "instance.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RuntimeError, match="not a usable instance database"):
        Instance.open(data)


@pytest.mark.parametrize(
    ("host", "uri"),
    [
        ("127.0.0.1", "http://127.0.0.1:80"),
        ("0.0.0.0", "http://127.0.0.1:80"),
        ("::1", "http://[::1]:80"),
        ("::", "http://[::1]:80"),
        ("localhost", "http://localhost:80"),
    ],
)
def test_api_uri(host, uri):
    assert api_uri(host, 80) == uri


# -- one server per data directory ----------------------------------------------------------


def test_a_second_open_of_a_data_dir_fails_at_once_naming_it(tmp_path):
    data = tmp_path / "data"
    with Instance.open(data, engine_factory=FakeEngine):
        with pytest.raises(errors.DataDirInUseError) as caught:
            Instance.open(data, engine_factory=FakeEngine)
        message = str(caught.value)
        assert str(data.resolve()) in message
        assert f"pid {os.getpid()}" in message
        assert "in this process" in message
        assert "Stop that server first" in message
        assert caught.value.pid == os.getpid()
        assert isinstance(caught.value, errors.LocalServerError)
        # The lock file names the holder and is private.
        assert (data / "instance.lock").read_text().strip() == str(os.getpid())
        assert _mode(data / "instance.lock") == 0o600
    # Closed, the directory is free again.
    with Instance.open(data, engine_factory=FakeEngine) as again:
        assert again.default_app is not None


def test_a_failed_open_releases_the_lock(tmp_path):
    data = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        Instance.open(data, project_dir=tmp_path / "missing", engine_factory=FakeEngine)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "instant.perms.json").write_text("{")
    with pytest.raises(errors.ProjectFileError):
        Instance.open(data, project_dir=tmp_path / "project", engine_factory=FakeEngine)
    Instance.open(data, engine_factory=FakeEngine).close()


def test_a_reader_opens_next_to_the_server_without_the_lock(tmp_path):
    # `instantdb-local env` reads credentials while the server runs.
    data = tmp_path / "data"
    clock = Clock()
    with Instance.open(data, engine_factory=FakeEngine, clock=clock) as server:
        expiring = server.create_ephemeral_app("e")
        clock.now += 15 * 24 * 3600
        with Instance.open(data, engine_factory=FakeEngine, clock=clock, exclusive=False) as reader:
            assert reader.default_app == server.default_app
            # Sweeping is the server's job: a reader leaves expired apps to it.
            assert (data / "ephemeral" / expiring.id).is_dir()
        with pytest.raises(errors.DataDirInUseError):
            Instance.open(data, engine_factory=FakeEngine)


def test_the_lock_module_imports_and_does_nothing_without_fcntl(tmp_path):
    # Windows has no fcntl: importing the server must not break there, and the lock is
    # then a no-op. Simulated in a child process.
    code = (
        "import contextlib, os, pathlib, sys\n"
        "sys.modules['fcntl'] = None\n"
        "sys.platform = 'win32'\n"
        "from instantdb_local._disk import ExclusiveLock\n"
        "lock = ExclusiveLock(pathlib.Path(sys.argv[1]))\n"
        "lock.acquire(); ExclusiveLock(pathlib.Path(sys.argv[1])).acquire(); lock.release()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "lock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
