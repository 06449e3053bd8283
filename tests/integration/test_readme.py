"""The README's Python blocks run as written, in order, against a fresh app.

A new user copies them first; a block that fails (a missing import, a renamed call) is
the first thing they would meet.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from instantdb_local import AppCredentials

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks() -> None:
    # Guards the pattern: were it to stop matching, the test below would run nothing.
    assert len(readme_blocks()) >= 4


@pytest.mark.parametrize("number", range(len(readme_blocks())))
def test_readme_python_block_runs(
    number: int, instant_app: AppCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in instant_app.env.items():
        monkeypatch.setenv(name, value)
    source = readme_blocks()[number]
    namespace: dict[str, object] = {"__name__": f"readme_block_{number}"}
    exec(compile(source, f"README.md python block {number + 1}", "exec"), namespace)
