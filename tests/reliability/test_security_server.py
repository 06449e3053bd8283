"""The local server binds 127.0.0.1 unless told otherwise, and then warns (CLI serve, CLI
run and LocalServer alike); its data dir and the file holding the admin tokens are
created readable by their owner only, whatever the umask.

No test here listens on anything but 127.0.0.1: the non-loopback cases replace the
socket binding with a loopback one and check what the server says.

Regression: ``instantdb-local run --host 0.0.0.0`` and ``LocalServer(host="0.0.0.0")``
listened on every interface without the warning ``serve`` prints (the docs promised it
for both commands).
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instantdb_local import LocalServer, cli, server
from instantdb_local.instance import Instance
from tests.reliability._process import ServerProcess

EXPOSED = "reachable from other machines"


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (Linux /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        assert path.exists(), "these checks read the kernel's socket table (Linux)"
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc prints IPv6 addresses as four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


# -- where it listens ------------------------------------------------------------------------


def test_local_server_listens_on_loopback_only() -> None:
    with LocalServer() as running:
        assert listening_addresses(running.port) == {"127.0.0.1"}


def test_serve_listens_on_loopback_by_default(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path / "data")
    creds = process.start()
    try:
        assert creds.api_uri.startswith("http://127.0.0.1:")
        assert listening_addresses(process.port) == {"127.0.0.1"}
    finally:
        process.terminate()
    assert EXPOSED not in process.log()


def test_the_cli_defaults_to_loopback() -> None:
    parser = cli._parser()
    for command in (["serve"], ["run", "--", "true"]):
        assert parser.parse_args(command).host == "127.0.0.1"


@pytest.fixture
def loopback_instead(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Whatever host is asked for, bind 127.0.0.1; records the hosts asked for."""
    asked: list[str] = []
    real_bind = server.bind_socket

    def bind(host: str, port: int) -> socket.socket:
        asked.append(host)
        return real_bind("127.0.0.1", port)

    monkeypatch.setattr(server, "bind_socket", bind)
    return asked


@pytest.mark.parametrize(
    ("host", "warned"), [("0.0.0.0", True), ("::", True), ("localhost", False)]
)
def test_local_server_warns_when_exposed(
    loopback_instead: list[str], caplog: pytest.LogCaptureFixture, host: str, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="instantdb_local"), LocalServer(host=host):
        pass
    assert loopback_instead == [host]
    assert any(EXPOSED in r.getMessage() for r in caplog.records) is warned


def test_run_warns_when_exposed(
    loopback_instead: list[str], capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(
        [
            "run",
            "--host",
            "0.0.0.0",
            "--data",
            str(tmp_path / "d"),
            "--project",
            str(tmp_path),
            "--",
            sys.executable,
            "-c",
            "pass",
        ]
    )
    assert code == 0
    assert loopback_instead == ["0.0.0.0"]
    assert EXPOSED in capfd.readouterr().err


def test_serve_warns_when_exposed(
    loopback_instead: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    class NotServing:
        def run(self, sockets: Any) -> None:
            for sock in sockets:
                sock.close()

    monkeypatch.setattr(server, "uvicorn_server", lambda app, log_level: NotServing())
    code = cli.main(
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--data",
            str(tmp_path / "d"),
            "--project",
            str(tmp_path),
        ]
    )
    assert code == 0
    captured = capfd.readouterr()
    assert EXPOSED in captured.err
    assert "INSTANT_APP_ADMIN_TOKEN" not in captured.err  # credentials only on stdout


# -- file modes -------------------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    # The most permissive umask: whatever is private now was made so on purpose.
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_token_file_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "nested" / "data"
    with Instance.open(data) as instance:
        instance.engine(instance.default_app.id)
        ephemeral = instance.create_ephemeral_app("t")
        instance.engine(ephemeral.id)
    assert _mode(data) == 0o700
    assert _mode(data / "instance.sqlite3") == 0o600  # holds every app's admin token
    for parent in ("apps", "ephemeral"):
        assert _mode(data / parent) == 0o700
        for app_dir in (data / parent).iterdir():
            assert _mode(app_dir) == 0o700
    # The app databases inside keep SQLite's own modes: the 0700 directories above are
    # what keeps them private.


def test_a_token_file_left_readable_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Instance.open(data):
        pass
    (data / "instance.sqlite3").chmod(0o644)
    with Instance.open(data):
        pass
    assert _mode(data / "instance.sqlite3") == 0o600


def test_init_writes_the_env_file_owner_only(tmp_path: Path, open_umask: None) -> None:
    assert cli.main(["init", str(tmp_path / "proj")]) == 0
    assert _mode(tmp_path / "proj" / ".env") == 0o600
    assert _mode(tmp_path / "proj" / ".instant-local") == 0o700
    assert _mode(tmp_path / "proj" / "main.py") == 0o644
