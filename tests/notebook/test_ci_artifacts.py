"""The browser check's screenshot path reaches the CI log: a kept artifact is named in
pytest's terminal summary, even though the test's own output is captured."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_kept_artifacts_are_named_in_the_terminal_summary(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("CI_ARTIFACTS_DIR", str(artifacts))
    pytester.makeconftest('pytest_plugins = ["tests.ci_artifacts"]')
    pytester.makepyfile(
        """
        def test_writes(ci_artifact):
            ci_artifact("shot.png").write_bytes(b"png")
            print("captured, never shown for a passing test")

        def test_stops_first(ci_artifact):
            ci_artifact("never.png")
            raise RuntimeError("before the screenshot")
        """
    )
    result = pytester.runpytest("-q", "-rN")  # -rN: no short summary, as a quiet run
    result.assert_outcomes(passed=1, failed=1)
    lines = result.stdout.lines
    section = next(n for n, line in enumerate(lines) if " CI artifacts " in line)
    module = "test_kept_artifacts_are_named_in_the_terminal_summary.py"
    assert lines[section + 1 : section + 3] == [
        f"{artifacts / 'shot.png'}  [{module}::test_writes]",
        f"{artifacts / 'never.png'} (not written: the test stopped before it)  "
        f"[{module}::test_stops_first]",
    ]
    assert (artifacts / "shot.png").read_bytes() == b"png"
    assert "captured, never shown" not in result.stdout.str()


def test_no_section_when_nothing_was_kept(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.ci_artifacts"]')
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)
    assert "CI artifacts" not in result.stdout.str()
