"""Opening an explorer page in a real headless browser: the system's Chromium driven by
playwright's Python API (never a browser playwright downloads). The browser test, the
benchmark's open time and the README's screenshot all go through ``open_page``, so they
measure and show the same thing.

Needs the optional ``playwright`` package and a ``chromium`` (or ``chromium-browser``,
``google-chrome``) on PATH; ``unavailable()`` says what is missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHROMIUM_ARGS", "chromium", "unavailable", "open_page", "Opened"]

# headless, and nothing the browser would fetch by itself: a request the test sees is the page's
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]    # containers with a 64 MB /dev/shm
VIEWPORT = (1400, 820)
READY_TIMEOUT_MS = 30_000     # far above the 2 s target: a slow CI machine fails the time check,
                              # not the load


def chromium() -> str | None:
    """The path of the system's Chromium, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    if chromium() is None:
        return "no Chromium on PATH (apt-get install chromium)"
    return None


@dataclass
class Opened:
    """A page that has drawn: ``page`` (playwright's), the console errors and page errors
    seen, every URL it requested, and the open time: ``ready_ms`` measured by the page
    itself (``performance.now()`` when the first drawing was done, from navigation start)
    and ``wall_s`` from the request to the ready flag, seen from Python."""

    page: object
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    ready_ms: float = 0.0
    wall_s: float = 0.0


@dataclass
class _Log:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def open_page(path, viewport: tuple[int, int] = VIEWPORT) -> Iterator[Opened]:
    """Open the explorer at ``path`` in headless Chromium and wait for its ready flag.

    Raises
    ------
    RuntimeError
        When no browser can be driven (the message says what is missing).
    """
    why = unavailable()
    if why:
        raise RuntimeError(f"cannot open a browser: {why}")
    from playwright.sync_api import sync_playwright

    url = Path(path).resolve().as_uri()
    log = _Log()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: m.type == "error" and log.errors.append(m.text))
            page.on("pageerror", lambda e: log.errors.append(str(e)))
            page.on("request", lambda r: log.requests.append(r.url))
            start = time.perf_counter()
            page.goto(url)
            # a selector, not wait_for_function: the page's CSP forbids the eval that
            # polling a function needs, which would turn a page that never gets ready into
            # a misleading "unsafe-eval" error instead of a timeout
            page.wait_for_selector("html[data-ready=true]", state="attached",
                                   timeout=READY_TIMEOUT_MS)
            wall = time.perf_counter() - start
            ready = page.evaluate("window.msgpassReady")
            yield Opened(page, log.errors, log.requests, float(ready), wall)
        finally:
            browser.close()
