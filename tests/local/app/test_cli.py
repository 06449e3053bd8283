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
