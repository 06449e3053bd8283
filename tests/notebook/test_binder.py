"""binder/: the pins against pyproject.toml, the start hook run for real, and the
notebooks executed through it in a venv made from binder/requirements.txt (as Binder
installs it: `make binder-venv`)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def requirement_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def declared_requirements() -> dict[str, Requirement]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    found = [Requirement(text) for text in project["dependencies"]]
    for extra in ("notebook", "local"):
        found += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return {canonicalize_name(req.name): req for req in found}


def test_only_binder_dir_is_used_for_configuration() -> None:
    # repo2docker refuses a repository with both binder/ and .binder/.
    assert BINDER.is_dir()
    assert not (ROOT / ".binder").exists()


def test_runtime_is_a_python_the_project_supports() -> None:
    text = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(3\.\d+)", text)
    assert match, text
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert Version(match.group(1)) in SpecifierSet(project["requires-python"])
    assert match.group(1) in ("3.11", "3.12")


def test_the_repository_is_installed_with_the_notebook_and_local_extras() -> None:
    local = [line for line in requirement_lines() if line.startswith(".")]
    assert len(local) == 1
    extras = re.fullmatch(r"\.\[([a-z,]+)\]", local[0])
    assert extras, local[0]
    assert set(extras.group(1).split(",")) >= {"notebook", "local"}


def test_every_other_line_is_an_exact_pin() -> None:
    for line in requirement_lines():
        if line.startswith("."):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, line
        assert specifiers[0].operator == "==", line


def test_pins_satisfy_pyproject() -> None:
    declared = declared_requirements()
    pinned = {
        canonicalize_name(Requirement(line).name): Requirement(line)
        for line in requirement_lines()
        if not line.startswith(".")
    }
    # Every direct dependency of the installed extras is pinned, so a build is repeatable.
    assert set(declared) <= set(pinned), sorted(set(declared) - set(pinned))
    for name, requirement in declared.items():
        (pin,) = pinned[name].specifier
        assert Version(pin.version) in requirement.specifier, (name, str(requirement), pin)
    assert "jupyterlab" in pinned  # the interface Binder opens
    assert "ipykernel" in pinned


def test_the_notebooks_binder_opens_exist() -> None:
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


# -- binder/start, run for real ----------------------------------------------------------

START = BINDER / "start"
NOTEBOOKS = ROOT / "notebooks"
VARIABLES = ("INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI")
SHOW = """\
import json, os, sys
import httpx
uri = os.environ.get("INSTANT_API_URI")
health = httpx.get(uri + "/health", timeout=5).json() if uri else None
print(json.dumps({"pid": os.getpid(), "health": health,
                  "env": {k: os.environ.get(k) for k in sys.argv[1:]}}))
sys.exit(3)
"""


def hook_environment(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This environment less any INSTANT_* variable, with ``bin_dir`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def run_hook(
    command: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``binder/start COMMAND`` in a session of its own, killed whole on timeout."""
    process = subprocess.Popen(
        [str(START), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    result.pid = process.pid  # type: ignore[attr-defined]
    return result


def credentials_in(data: Path) -> dict[str, str]:
    """What ``instantdb-local env`` says about a data directory."""
    from instantdb_local.instance import Instance

    with Instance.open(data, exclusive=False) as instance:  # as `env`: no lock
        app = instance.default_app
        return {
            "INSTANT_APP_ID": app.id,
            "INSTANT_APP_ADMIN_TOKEN": app.admin_token,
            "INSTANT_API_URI": str(instance.last_api_uri()),
        }


def refuses_connections(uri: str, timeout: float = 10.0) -> bool:
    """Whether the server at ``uri`` is gone (polled, bounded)."""
    host, port = uri.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_start_is_executable_and_execs_its_arguments() -> None:
    assert os.access(START, os.X_OK)
    lines = [line.strip() for line in START.read_text().splitlines() if line.strip()]
    assert lines[-1] == 'exec "$@"'


def test_start_runs_a_server_exports_its_variables_and_becomes_the_command(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = hook_environment(Path(sys.executable).parent, INSTANT_LOCAL_DATA=str(data))
    result = run_hook([sys.executable, "-c", SHOW, *VARIABLES], env, timeout=60)
    assert result.returncode == 3, result.stderr  # the command's own exit code
    seen = json.loads(result.stdout)
    assert seen["pid"] == result.pid  # exec'd: the command replaced the hook's process
    assert seen["env"] == credentials_in(data)
    assert seen["health"]["server"] == "instantdb-local"  # it answered while we ran
    assert f"local Instant server at {seen['env']['INSTANT_API_URI']}" in result.stderr
    assert seen["env"]["INSTANT_APP_ADMIN_TOKEN"] not in result.stderr
    # The server does not outlive the command it was started for.
    assert refuses_connections(seen["env"]["INSTANT_API_URI"])


def test_start_leaves_an_app_named_in_the_environment_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    given = {"INSTANT_APP_ID": "my-app", "INSTANT_APP_ADMIN_TOKEN": "secret"}
    env = hook_environment(Path(sys.executable).parent, INSTANT_LOCAL_DATA=str(data), **given)
    result = run_hook([sys.executable, "-c", SHOW, *VARIABLES], env, timeout=60)
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["env"] == {**given, "INSTANT_API_URI": None}
    assert not data.exists()
    assert result.stderr == ""


def test_start_still_starts_jupyter_when_the_server_cannot_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = hook_environment(Path(sys.executable).parent, INSTANT_LOCAL_DATA=str(blocker))
    result = run_hook([sys.executable, "-c", SHOW, *VARIABLES], env, timeout=60)
    assert result.returncode == 3
    assert json.loads(result.stdout)["env"] == dict.fromkeys(VARIABLES)
    assert "the local Instant server did not start" in result.stderr


def binder_venv() -> Path:
    """The venv made from binder/requirements.txt (``make binder-venv``)."""
    venv = Path(os.environ.get("INSTANTDB_BINDER_VENV", ROOT / "build" / "binder-venv"))
    if not (venv / "bin" / "jupyter").exists():
        pytest.fail(
            f"No Binder environment in {venv}: run `make binder-venv` (it installs "
            "binder/requirements.txt into a venv of its own), or set INSTANTDB_BINDER_VENV."
        )
    return venv


@pytest.mark.slow
def test_the_notebooks_run_through_start_in_the_binder_environment(tmp_path: Path) -> None:
    venv = binder_venv()
    data, out = tmp_path / "data", tmp_path / "out"
    env = hook_environment(venv / "bin", INSTANT_LOCAL_DATA=str(data))
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    command = [
        str(venv / "bin" / "jupyter"),
        "nbconvert",
        "--to=notebook",
        "--execute",
        "--ExecutePreprocessor.timeout=60",
        f"--output-dir={out}",
        *map(str, notebooks),
    ]
    result = run_hook(command, env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    credentials = credentials_in(data)
    for path in notebooks:
        executed = nbformat.read(out / path.name, as_version=4)
        shown = json.dumps([cell.get("outputs", []) for cell in executed.cells])
        # Every notebook used the hook's server, from the variables it exported.
        assert f"api_uri='{credentials['INSTANT_API_URI']}'" in shown, path.name
        assert f"app_id='{credentials['INSTANT_APP_ID']}'" in shown, path.name
        assert credentials["INSTANT_APP_ADMIN_TOKEN"] not in shown, path.name
    # The hook's server applied notebooks/instant.perms.ts: Bob's edit was refused.
    permissions = (out / "04_permissions_and_auth.ipynb").read_text()
    assert "InstantPermissionError (400)" in permissions
    assert refuses_connections(credentials["INSTANT_API_URI"])
