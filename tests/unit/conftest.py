from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.mock_api import ClientHarness


@pytest.fixture(autouse=True)
def _no_instant_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real credentials must never leak into (or change) a unit test.
    for name in ("INSTANT_APP_ID", "INSTANT_APP_ADMIN_TOKEN", "INSTANT_API_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Iterator[ClientHarness]:
    """Both clients: every test using this runs once with Instant, once with AsyncInstant."""
    h = ClientHarness(request.param)
    yield h
    h.shutdown()
