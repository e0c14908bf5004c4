"""Headless Chromium for the viewer tests: Debian's package (or $TEMTWIN_CHROMIUM) driven by Playwright.

Playwright's own browser download is not used.  Without a browser the tests skip with a message,
unless TEMTWIN_REQUIRE_BROWSER=1 (set by .ci/run, which installs chromium) makes that a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest


def chromium() -> str | None:
    for c in (os.environ.get("TEMTWIN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def need_browser() -> None:
    """Skip (or fail under TEMTWIN_REQUIRE_BROWSER=1) when Playwright or Chromium is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install playwright)"
    else:
        if chromium():
            return
        reason = "no Chromium found (Debian: apt-get install chromium; or set TEMTWIN_CHROMIUM)"
    if os.environ.get("TEMTWIN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (TEMTWIN_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


def launch(p):
    return p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])


def open_page(browser, url, viewport=(1400, 1000)):
    """(page, console errors list) of ``url`` once its Plotly figures exist."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
    return page, errors
