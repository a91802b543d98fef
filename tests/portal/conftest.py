"""The browser test harness: the app served over HTTP from a thread, and Debian's Chromium
driven through Playwright (never ``playwright install``: the browser is the system one).

``live_portal`` serves ``create_app(platform)`` with werkzeug on a free port; ``browser_page``
is a fresh 1280 px wide page that fails the test on any script error. Screenshots go to
``tests/artifacts/screenshots/<name>.png`` (gitignored) so a person can look at them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api_client import Api
from tests.conftest import service_missing
from tests.servers import serve_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class LivePortal:
    url: str
    api: Api


@pytest.fixture
def portal_config() -> dict[str, Any]:
    """Config overrides for ``live_portal``; a test module overrides this fixture to add some."""
    return {}


@pytest.fixture
def live_portal(make_api: Callable[..., Api], portal_config: dict[str, Any]) -> Iterator[LivePortal]:
    """The app on SQLite, served over real HTTP (the SDK and the browser both talk to it)."""
    api = make_api(portal_config, db="sqlite")
    with serve_app(api.app) as url:
        yield LivePortal(url, api)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the portal tests.

    Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main
    thread while it is open, and later tests (Ray Serve's handles) refuse to run inside one."""
    if not CHROMIUM.exists():
        service_missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def expected_console_errors() -> list[str]:
    """Substrings of console errors a test expects (e.g. a page it answers with 400 on purpose)."""
    return []


@pytest.fixture
def browser_page(chromium: Any, expected_console_errors: list[str]) -> Iterator[Any]:
    """A fresh context and page at 1280 x 900; script errors and failed requests fail the test."""
    context = chromium.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []

    def console(message: Any) -> None:
        if message.type == "error" and not any(text in message.text for text in expected_console_errors):
            problems.append(f"console error: {message.text} ({message.location.get('url')})")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", console)
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, "runs-table")`` saves the whole page to tests/artifacts/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
