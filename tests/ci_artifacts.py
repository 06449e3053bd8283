"""Files a test keeps for CI (screenshots), named in pytest's terminal summary.

A test's own ``print`` is captured and only shown when it fails, so a test that keeps a
file says so through the `ci_artifact` fixture instead; the paths are listed under
"CI artifacts" at the end of the run, passed or failed, whatever ``-r`` says.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_KEPT = pytest.StashKey[list[tuple[str, Path]]]()


def artifacts_dir() -> Path:
    """``$CI_ARTIFACTS_DIR``, else ``build/ci-artifacts``; created if missing."""
    directory = Path(os.environ.get("CI_ARTIFACTS_DIR") or ROOT / "build" / "ci-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def ci_artifact(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``ci_artifact(name)``: the path to write artifact ``name`` to, named in the
    terminal summary once the run ends."""

    def keep(name: str) -> Path:
        path = artifacts_dir() / name
        request.config.stash.setdefault(_KEPT, []).append((request.node.nodeid, path))
        return path

    return keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    kept = terminalreporter.config.stash.get(_KEPT, [])
    if not kept:
        return
    terminalreporter.section("CI artifacts")
    for nodeid, path in kept:
        state = "" if path.exists() else " (not written: the test stopped before it)"
        terminalreporter.write_line(f"{path}{state}  [{nodeid}]")
