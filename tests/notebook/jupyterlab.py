"""JupyterLab as Binder runs it, for the browser check: from the Binder venv, through
binder/start, bound to 127.0.0.1 with a random token and its own state directories."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "binder" / "start"
VARIABLES = ("INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI")


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root_dir: Path
    data_dir: Path
    log: Path

    def page(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_lab(venv: Path, notebooks: list[Path], workdir: Path, timeout: float) -> Iterator[Lab]:
    """JupyterLab serving copies of ``notebooks`` (the originals are never autosaved).

    binder/start launches the local server first (data in ``workdir/data``). Stopped
    with SIGTERM, then SIGKILL, all bounded; the hook's server stops with it.
    """
    root = workdir / "notebooks"
    root.mkdir()
    for path in notebooks:
        shutil.copy2(path, root / path.name)
    state = workdir / "jupyter"
    # No "get notified about Jupyter news?" toast over the notebook in the screenshot.
    notification = state / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        INSTANT_LOCAL_DATA=str(workdir / "data"),
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        IPYTHONDIR=str(state / "ipython"),
    )
    command = [
        str(START),
        str(venv / "bin" / "jupyter"),
        "lab",
        "--allow-root",  # CI runs as root
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # the test drives window.jupyterapp
        "--LabApp.news_url=",  # nothing to fetch: there is no network
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = workdir / "jupyterlab.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, workdir / "data", log)
    try:
        wait_until_serving(lab, process, timeout)
        yield lab
    finally:
        stop(process)


def wait_until_serving(lab: Lab, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({process.returncode}): see {lab.log}")
        try:
            answer = httpx.get(f"{lab.url}/api/status", params={"token": lab.token}, timeout=2)
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer within {timeout} s: see {lab.log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # Jupyter shuts its kernels down
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
