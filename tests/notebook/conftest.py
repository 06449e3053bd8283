"""Fixtures for the notebook layer: an in-process IPython shell with the extension."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

ENVIRONMENT = ("INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No developer credentials leak into a test (tests set what they need)."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def shell(
    clean_env: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InteractiveShell]:
    """IPython's test shell with ``%load_ext instantdb_notebook``; unloaded afterwards.

    The working directory is an empty temporary one, so no pyproject.toml is picked up.
    """
    from IPython.testing.globalipapp import get_ipython

    clean_env.chdir(tmp_path_factory.mktemp("cwd"))
    ip = get_ipython()
    assert ip is not None
    ip.run_line_magic("load_ext", "instantdb_notebook")
    before = set(ip.user_ns)
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "instantdb_notebook")
        # %config settings live in the shell's config, which outlives the extension.
        ip.config.pop("InstantMagic", None)
        for name in set(ip.user_ns) - before:
            del ip.user_ns[name]
