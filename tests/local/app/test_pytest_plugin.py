"""The pytest plugin's fixtures, run in a nested pytest session."""

from __future__ import annotations

import pytest

from instantdb_local import LocalServer
from tests.local.app.fakes import FakeEngine

pytest_plugins = ["pytester"]

TEST_FILE = """
import json
import urllib.request

import pytest

from instantdb_local import LocalServer


def _get(uri):
    with urllib.request.urlopen(uri, timeout=10) as response:
        return json.load(response)


def test_server_is_shared_and_serving(instant_server):
    assert isinstance(instant_server, LocalServer)
    assert _get(instant_server.api_uri + "/health")["status"] == "ok"


def test_app_is_fresh_per_test(instant_app, instant_server):
    assert instant_app.api_uri == instant_server.api_uri
    assert instant_app.app_id != instant_server.app_id
    info = _get(instant_app.api_uri + "/dash/apps/ephemeral/" + instant_app.app_id)
    assert info["app"]["title"] == "test_app_is_fresh_per_test"


@pytest.mark.instant_app(title="named")
def test_marker_sets_the_title(instant_app):
    info = _get(instant_app.api_uri + "/dash/apps/ephemeral/" + instant_app.app_id)
    assert info["app"]["title"] == "named"


@pytest.mark.instant_app(colour="blue")
def test_marker_rejects_unknown_options(instant_app):
    pass
"""


def test_local_fixtures(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.delenv("INSTANT_TEST_API_URI", raising=False)
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*takes schema, rules and title*colour*"])


def test_external_server_from_the_environment(pytester: pytest.Pytester, monkeypatch):
    with LocalServer(engine_factory=FakeEngine) as outside:
        monkeypatch.setenv("INSTANT_TEST_API_URI", outside.api_uri + "/")
        pytester.makepyfile(
            f"""
            def test_uses_the_external_server(instant_server, instant_app):
                assert type(instant_server).__name__ == "ExternalServer"
                assert instant_server.api_uri == {outside.api_uri!r}
                assert instant_app.api_uri == {outside.api_uri!r}
            """
        )
        before = len(outside.instance._apps)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
        result.assert_outcomes(passed=1)
        # The app was made on the outside server, through its ephemeral route.
        assert len(outside.instance._apps) == before + 1


def test_plugin_load_imports_no_server_dependencies(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_loaded():
            for name in ("starlette", "uvicorn", "instantdb_local.server", "instantdb"):
                assert name not in sys.modules, name
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio", timeout=120)
    result.assert_outcomes(passed=1)
