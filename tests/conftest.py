"""Shared test configuration.

Hypothesis runs a bounded profile in CI (``HYPOTHESIS_PROFILE=ci``, set by ``.ci/run``)
and a deeper one when asked for (``HYPOTHESIS_PROFILE=thorough``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The `ci_artifact` fixture, and the "CI artifacts" section of the terminal summary.
pytest_plugins = ["tests.ci_artifacts"]
