"""A real Jupyter kernel for tests: run cells, collect iopub messages in order."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel


@dataclass
class CellRun:
    """What one cell produced: its stdout and every iopub message seen while it ran."""

    msg_id: str = ""
    stdout: str = ""
    error: dict[str, Any] | None = None
    done: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)

    def comm_updates(self, comm_id: str) -> list[dict[str, Any]]:
        return [
            m["content"]["data"]["state"]
            for m in self.messages
            if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"
        ]

    def take(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message.get("parent_header", {}).get("msg_id") != self.msg_id:
            return
        kind = message["msg_type"]
        if kind == "stream" and message["content"]["name"] == "stdout":
            self.stdout += message["content"]["text"]
        elif kind == "error":
            self.error = message["content"]
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            self.done = True


class Kernel:
    def __init__(self, manager: KernelManager, client: BlockingKernelClient) -> None:
        self.manager = manager
        self.client = client

    @property
    def pid(self) -> int:
        process = getattr(self.manager.provisioner, "process", None)
        assert process is not None, "the kernel runs in no local process"
        return int(process.pid)

    def start(self, code: str, *, cell_id: str | None = None) -> CellRun:
        """Send ``code`` for execution and return at once.

        ``cell_id`` goes in the request's metadata as JupyterLab sends it.
        """
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        metadata = {"cellId": cell_id} if cell_id is not None else {}
        message = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(message)
        return CellRun(msg_id=message["header"]["msg_id"])

    def follow(
        self,
        run: CellRun,
        until: Callable[[CellRun], bool],
        timeout: float,
        what: str = "the cell to finish",
    ) -> CellRun:
        """Read iopub into ``run`` until ``until(run)`` holds; raise after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not until(run):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout} s")
            try:
                run.take(self.client.get_iopub_msg(timeout=min(remaining, 1.0)))
            except queue.Empty:
                continue
        return run

    def run(self, code: str, timeout: float = 60.0, *, cell_id: str | None = None) -> CellRun:
        """Execute ``code``; raise if it fails or does not finish within ``timeout``."""
        run = self.follow(
            self.start(code, cell_id=cell_id),
            lambda r: r.done,
            timeout,
            f"end of the cell {code[:60]!r}",
        )
        if run.error is not None:
            raise AssertionError("cell failed:\n" + "\n".join(run.error["traceback"]))
        return run


@contextmanager
def running_kernel(
    env: dict[str, str] | None = None, *, stderr: IO[bytes] | None = None
) -> Iterator[Kernel]:
    """A fresh ipykernel with this interpreter; shut down (bounded) afterwards."""
    environment = {**os.environ, **(env or {})}
    options: dict[str, Any] = {"stderr": stderr} if stderr is not None else {}
    manager, client = start_new_kernel(
        kernel_name="python3", startup_timeout=60, env=environment, **options
    )
    try:
        yield Kernel(manager, client)
    finally:
        client.stop_channels()
        if manager.is_alive():
            manager.shutdown_kernel(now=True)


def open_sockets_to(pid: int, port: int) -> int:
    """How many established TCP connections process ``pid`` has to ``port`` (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            if established and remote_port == port and fields[9] in inodes:
                count += 1
    return count
