"""Browser fixtures: Debian chromium driven by Playwright (no browser download)."""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_pages_in_chromium import CHROMIUM_FLAGS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian chromium is not installed: `make test` installs it (scripts/ensure-chromium.sh)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()




@pytest.fixture(autouse=True)
def _journey_duration(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every browser test's wall-clock time, kept in test-artifacts/journeys.json."""
    from tests.e2e.journey import record_duration
    started = time.monotonic()
    yield
    record_duration(request.node.name, time.monotonic() - started)
