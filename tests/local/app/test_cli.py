"""instantdb-local serve | env | run | init."""

from __future__ import annotations

import os
import queue
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from instantdb_local.cli import _is_loopback, main

TIMEOUT = 30


def _read_lines(stream, count: int) -> list[str]:
    # Read in a thread so a server that never prints cannot hang the test.
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for _ in range(count):
            lines.put(stream.readline())

    threading.Thread(target=pump, daemon=True).start()
    return [lines.get(timeout=TIMEOUT) for _ in range(count)]


def _exports(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        assert line.startswith("export ")
        key, _, value = line.removeprefix("export ").partition("=")
        pairs[key] = value
    return pairs


def test_serve_prints_exports_first_then_serves_then_env_repeats_them(tmp_path):
    data = tmp_path / "data"
    project = tmp_path / "project"
    project.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "instantdb_local",
            "serve",
            "--port",
            "0",
            "--data",
            str(data),
            "--project",
            str(project),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = _exports("".join(_read_lines(process.stdout, 3)))
        assert list(first) == ["INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI"]
        assert first["INSTANT_API_URI"].startswith("http://127.0.0.1:")
        health = httpx.get(first["INSTANT_API_URI"] + "/health", timeout=TIMEOUT)
        assert health.status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert "magic-code emails are not sent" in stderr
    assert first["INSTANT_APP_ADMIN_TOKEN"] not in stderr
    assert _env_of(data) == first


def _env_of(data: Path) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "instantdb_local", "env", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return _exports(result.stdout)


def test_env_without_data_is_a_clear_error(tmp_path, capsys):
    assert main(["env", "--data", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "no local Instant data" in err
    assert "instantdb-local serve --data" in err


def test_serve_on_a_busy_port_fails_clearly(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "instantdb_local",
                "serve",
                "--port",
                str(port),
                "--data",
                str(tmp_path / "d"),
                "--project",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "instantdb-local: error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_passes_credentials_and_the_exit_code(tmp_path, capfd):
    data = tmp_path / "data"
    script = (
        "import os, sys, urllib.request\n"
        "uri = os.environ['INSTANT_API_URI']\n"
        "print(os.environ['INSTANT_APP_ID'])\n"
        "print(urllib.request.urlopen(uri + '/health', timeout=10).status)\n"
        "sys.exit(3)\n"
    )
    code = main(
        ["run", "--data", str(data), "--project", str(tmp_path), "--", sys.executable, "-c", script]
    )
    assert code == 3
    out = capfd.readouterr().out.split()
    assert out[1] == "200"
    assert out[0] == _env_of(data)["INSTANT_APP_ID"]


def test_run_needs_a_command(tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path / "d"), "--"]) == 1
    assert "run needs a command" in capsys.readouterr().err


def test_run_reports_a_missing_program(tmp_path, capsys):
    code = main(
        [
            "run",
            "--data",
            str(tmp_path / "d"),
            "--project",
            str(tmp_path),
            "--",
            "definitely-not-a-program-xyz",
        ]
    )
    assert code == 1
    assert "cannot run 'definitely-not-a-program-xyz'" in capsys.readouterr().err


def test_init_writes_a_starter_with_the_data_dirs_credentials(tmp_path):
    target = tmp_path / "my-app"
    assert main(["init", str(target)]) == 0
    names = {p.name for p in target.iterdir()}
    assert {"main.py", ".env", "instant.schema.ts", "instant.perms.ts", "README.md"} <= names
    env_file = target / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1)
        for line in env_file.read_text().splitlines()
        if line and not line.startswith("#")
    )
    exported = _env_of(target / ".instant-local")
    assert values == exported
    compile((target / "main.py").read_text(), "main.py", "exec")
    assert "instantdb-local serve --data .instant-local" in (target / "README.md").read_text()


def test_init_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    target = tmp_path / "app"
    target.mkdir()
    (target / "main.py").write_text("# mine\n")
    assert main(["init", str(target)]) == 1
    assert "main.py already exist" in capsys.readouterr().err
    assert (target / "main.py").read_text() == "# mine\n"
    assert not (target / ".env").exists()
    assert main(["init", str(target), "--force"]) == 0
    assert "Instant" in (target / "main.py").read_text()


def test_init_with_a_named_data_dir(tmp_path):
    data = tmp_path / "shared-data"
    assert main(["init", str(tmp_path / "a"), "--data", str(data)]) == 0
    assert f"--data {data}" in (tmp_path / "a" / "README.md").read_text()
    token = _env_of(data)["INSTANT_APP_ADMIN_TOKEN"]
    assert f"INSTANT_APP_ADMIN_TOKEN={token}" in (tmp_path / "a" / ".env").read_text()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.0.2.1", False),
        ("example.test", False),
    ],
)
def test_loopback_detection_for_the_warning(host, loopback):
    assert _is_loopback(host) is loopback


def test_module_entry_point_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "instantdb_local", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ},
    )
    assert result.returncode == 0
    for command in ("serve", "env", "run", "init"):
        assert command in result.stdout


def test_run_forwards_sigterm_to_the_command_and_stops_the_server(tmp_path):
    import signal

    marker = tmp_path / "started"
    script = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        f"pathlib.Path({str(marker)!r}).write_text('x')\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "instantdb_local",
            "run",
            "--data",
            str(tmp_path / "d"),
            "--project",
            str(tmp_path),
            "--",
            sys.executable,
            "-c",
            script,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(300):
            if marker.exists():
                break
            process.poll()
            assert process.returncode is None, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 7
    finally:
        process.kill()
        process.communicate(timeout=TIMEOUT)


def test_ephemeral_days_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--ephemeral-days", "0"])
    assert "positive number of days" in capsys.readouterr().err


def test_run_honours_ephemeral_days(tmp_path, capfd):
    script = (
        "import json, os, urllib.request\n"
        "req = urllib.request.Request(os.environ['INSTANT_API_URI'] + '/dash/apps/ephemeral',"
        " data=b'{\"title\": \"t\"}', headers={'content-type': 'application/json'})\n"
        "body = json.load(urllib.request.urlopen(req, timeout=10))\n"
        "print(body['expires_ms'])\n"
    )
    before_ms = time.time() * 1000
    code = main(
        [
            "run",
            "--data",
            str(tmp_path / "d"),
            "--project",
            str(tmp_path),
            "--ephemeral-days",
            "0.5",
            "--",
            sys.executable,
            "-c",
            script,
        ]
    )
    assert code == 0
    expires_ms = int(capfd.readouterr().out.strip())
    # Half a day after creation, which happened after before_ms.
    assert before_ms + 43_200_000 <= expires_ms <= time.time() * 1000 + 43_200_000


# -- the banner ------------------------------------------------------------------------------


def test_the_banner_lists_the_routes_that_answer_501_from_their_table(monkeypatch):
    from instantdb_local.cli import banner
    from instantdb_local.routes import unsupported

    text = banner("app", "http://127.0.0.1:1", Path("/data"), None)
    for methods, path, feature in unsupported.PENDING:
        assert feature in text
        for method in methods:
            assert f"{method} {path}" in text
    # Features that are implemented are not listed (the old banner said these were not).
    for implemented in ("rooms", "subscriptions", "webhooks", "/admin/storage/upload"):
        assert implemented not in text
    # Derived from the table, so a route added to it (or removed) shows at once.
    monkeypatch.setattr(
        unsupported, "PENDING", [*unsupported.PENDING, (("PUT",), "/admin/new", "New thing")]
    )
    assert "New thing: PUT /admin/new" in banner("app", "u", Path("/data"), None)


def _serve_command(data: Path, project: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "instantdb_local", "serve", "--port", "0"),
        *("--data", str(data), "--project", str(project)),
    ]


def _serve_stderr_until_listening(data: Path, project: Path) -> str:
    process = subprocess.Popen(
        _serve_command(data, project),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_lines(process.stdout, 3)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=TIMEOUT)
    return stderr


def test_serve_shows_the_banner(tmp_path):
    from instantdb_local.cli import banner

    stderr = _serve_stderr_until_listening(tmp_path / "d", tmp_path)
    not_implemented = banner("x", "x", Path("x"), None).split("501 unsupported:\n")[1]
    assert not_implemented in stderr
    assert "GET /admin/soft_deleted_attrs" in stderr


# -- a missing [local] extra ----------------------------------------------------------------

# Runs the CLI with one module made unimportable: a meta path finder that refuses it, as
# an environment without the [local] extra would.
WITHOUT_MODULE = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1] or name.startswith(sys.argv[1] + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for loaded in [m for m in sys.modules if m == sys.argv[1] or m.startswith(sys.argv[1] + ".")]:
    del sys.modules[loaded]
if sys.argv[2] == "plugin":
    from instantdb_local.pytest_plugin import _start_local_server
    try:
        _start_local_server()
    except RuntimeError as exc:
        print(exc)
        sys.exit(3)
from instantdb_local.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MODULE, module, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("module", ["starlette", "uvicorn", "celpy", "anyio"])
@pytest.mark.parametrize("command", ["serve", "run"])
def test_serve_and_run_without_the_local_extra_say_what_to_install(tmp_path, module, command):
    args = [command, "--port", "0", "--data", str(tmp_path / "d"), "--project", str(tmp_path)]
    if command == "run":
        args += ["--", sys.executable, "-c", "pass"]
    result = _without(module, *args)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"instantdb-local: error: instantdb-local {command} needs the local server's "
        f"dependencies, and the {module!r} package is not installed: "
        "pip install 'instantdb[local]'.\n"
    )
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_the_pytest_plugin_gives_the_same_hint():
    result = _without("starlette", "plugin")
    assert result.returncode == 3, result.stderr
    assert result.stdout == (
        "The instant_server fixture needs the local server's dependencies, and the "
        "'starlette' package is not installed: pip install 'instantdb[local]', or set "
        "INSTANT_TEST_API_URI to use another Instant server.\n"
    )


def test_importing_local_server_without_the_extra_says_what_to_install():
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "try:\n"
        "    from instantdb_local import LocalServer\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.stdout == (
        "MissingExtraError instantdb_local.LocalServer needs the local server's dependencies, "
        "and the 'starlette' package is not installed: pip install 'instantdb[local]'.\n"
    )


# -- project files that cannot be applied ---------------------------------------------------


def test_serve_with_a_broken_perms_file_exits_with_its_location(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "instant.perms.ts").write_text(
        'export default {\n  goals: { allow: { view: "auth.id != null &&" } },\n};\n'
    )
    result = subprocess.run(
        _serve_command(tmp_path / "d", project),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # no credentials: nothing is served
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"instantdb-local: error: Cannot apply the project files: {project.resolve()}"
        "/instant.perms.ts:2:27: Validation failed for rule: goals.allow.view: Syntax error"
    )
    assert "Fix the project file and start the server again" in lines[0]


# -- one server per data directory ----------------------------------------------------------


def test_a_second_server_on_a_data_dir_fails_and_a_killed_one_frees_it(tmp_path):
    import signal

    from instantdb_local import LocalServer
    from instantdb_local.errors import DataDirInUseError

    data = tmp_path / "data"
    first = subprocess.Popen(
        _serve_command(data, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = _exports("".join(_read_lines(first.stdout, 3)))
        # Another process: one clear line naming the directory and the server's pid.
        second = subprocess.run(
            _serve_command(data, tmp_path),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert second.returncode == 1
        assert second.stdout == ""
        assert second.stderr == (
            f"instantdb-local: error: The data directory {data.resolve()} is in use by "
            f"another local Instant server (pid {first.pid}). Stop that server first, or "
            "give this one another data directory (--data DIR, or "
            "LocalServer(data_dir=...)); two servers on one directory would each keep "
            "their own live state.\n"
        )
        # This process, through LocalServer: the same error, raised.
        with pytest.raises(DataDirInUseError) as caught:
            LocalServer(data_dir=data).start()
        assert caught.value.pid == first.pid
        # `env` only reads: it works next to the running server.
        assert _env_of(data) == exports
        # SIGKILL gives the server no chance to clean up; the kernel drops its lock.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=TIMEOUT)
        with LocalServer(data_dir=data) as restarted:
            assert restarted.app_id == exports["INSTANT_APP_ID"]
    finally:
        first.kill()
        first.communicate(timeout=TIMEOUT)
