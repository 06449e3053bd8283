"""A real Jupyter kernel for tests: run cells, collect iopub messages in order."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel


@dataclass
class CellRun:
    """What one cell produced: its stdout and every iopub message seen while it ran."""

    stdout: str = ""
    error: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    def comm_updates(self, comm_id: str) -> list[dict[str, Any]]:
        return [
            m["content"]["data"]["state"]
            for m in self.messages
            if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"
        ]


class Kernel:
    def __init__(self, manager: KernelManager, client: BlockingKernelClient) -> None:
        self.manager = manager
        self.client = client

    def run(self, code: str, timeout: float = 60.0) -> CellRun:
        """Execute ``code``; raise if it fails or does not finish within ``timeout``."""
        msg_id = self.client.execute(code)
        run = CellRun()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish within {timeout} s: {code[:60]!r}")
            try:
                message = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            run.messages.append(message)
            parent = message.get("parent_header", {}).get("msg_id")
            kind = message["msg_type"]
            if parent == msg_id and kind == "stream" and message["content"]["name"] == "stdout":
                run.stdout += message["content"]["text"]
            elif parent == msg_id and kind == "error":
                run.error = message["content"]
            elif (
                parent == msg_id
                and kind == "status"
                and message["content"]["execution_state"] == "idle"
            ):
                break
        if run.error is not None:
            raise AssertionError("cell failed:\n" + "\n".join(run.error["traceback"]))
        return run


@contextmanager
def running_kernel(env: dict[str, str] | None = None) -> Iterator[Kernel]:
    """A fresh ipykernel with this interpreter; shut down (bounded) afterwards."""
    import os

    environment = {**os.environ, **(env or {})}
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60, env=environment)
    try:
        yield Kernel(manager, client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
