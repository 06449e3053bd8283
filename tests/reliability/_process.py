"""``instantdb-local serve`` as a child process that tests can kill with SIGKILL and start
again on the same data dir and port, the way a crashed server comes back.

The server's stderr goes to a file in the data dir's parent (a pipe nobody reads would
fill up and stall it); stdout is read for the three ``export`` lines and then left alone.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from instantdb_local.instance import AppCredentials

__all__ = ["ServerProcess"]

START_TIMEOUT = 30.0


class ServerProcess:
    """One ``instantdb-local serve`` on 127.0.0.1, restartable on the same port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        entry: str = "instantdb_local",
    ) -> None:
        """``env`` is added to the child's environment; ``entry`` is the module run with
        ``python -m`` (`tests.reliability._crash_serve` wraps the CLI with crash points)."""
        self.data_dir = data_dir
        self.env = dict(env or {})
        self.entry = entry
        self.log_path = log_path or data_dir.with_name(data_dir.name + ".log")
        self.port = 0  # 0 until the first start picks one
        self.credentials: AppCredentials | None = None
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def start(self) -> AppCredentials:
        assert self._process is None, "already running"
        self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in _reap
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.entry,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data",
                str(self.data_dir),
                "--project",
                str(self.data_dir.parent),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **self.env},
        )
        try:
            exports = _exports(_first_lines(self._process, 3))
        except BaseException:
            self.kill()
            raise
        creds = AppCredentials(
            exports["INSTANT_APP_ID"],
            exports["INSTANT_APP_ADMIN_TOKEN"],
            exports["INSTANT_API_URI"],
        )
        self.port = int(creds.api_uri.rsplit(":", 1)[1])
        self.credentials = creds
        # The socket listens before the lines are printed; check it answers anyway.
        assert httpx.get(creds.api_uri + "/health", timeout=START_TIMEOUT).status_code == 200
        return creds

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed that was not already."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: uvicorn's graceful shutdown."""
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signum)
        try:
            process.wait(START_TIMEOUT)
        finally:
            self._reap()

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def _first_lines(process: subprocess.Popen[str], count: int) -> list[str]:
    # Read in a thread, so a server that never prints fails the test instead of hanging it.
    lines: queue.Queue[str] = queue.Queue()
    stream = process.stdout
    assert stream is not None

    def pump() -> None:
        for _ in range(count):
            lines.put(stream.readline())

    threading.Thread(target=pump, daemon=True).start()
    try:
        return [lines.get(timeout=START_TIMEOUT) for _ in range(count)]
    except queue.Empty:
        raise AssertionError(
            f"instantdb-local serve printed no credentials within {START_TIMEOUT}s "
            f"(exit code {process.poll()})"
        ) from None


def _exports(lines: list[str]) -> dict[str, str]:
    pairs = {}
    for line in lines:
        assert line.startswith("export "), f"unexpected output from serve: {line!r}"
        key, _, value = line.removeprefix("export ").strip().partition("=")
        pairs[key] = value
    return pairs
