"""Debian's chromium driven by Playwright (never a downloaded browser), one profile per test: the
``page`` and ``screenshot_dir`` fixtures of every browser test (imported by their conftest or module)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(profile_dir: Path) -> Iterator:
    """A Playwright page in a fresh chromium profile at ``profile_dir`` (1400x900 viewport).

    Playwright's sync API runs an event loop in the calling thread, which makes Prefect's sync
    calls there return coroutines: a test that also drives Prefect opens the page in another thread.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (make system-deps)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(profile_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def page(tmp_path: Path):
    """A Playwright page in a fresh chromium profile under tmp_path (:func:`chromium_page`)."""
    with chromium_page(tmp_path / "chromium-profile") as opened:
        yield opened


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where a test saves its screenshot: ``$CURVEWATCH_SCREENSHOT_DIR`` (to look at them) or tmp_path."""
    path = Path(os.environ.get("CURVEWATCH_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path
