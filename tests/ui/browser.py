"""Headless Chromium for the UI tests: Debian's, installed when missing, driven with Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from include.run.runconfig import STATE_DIR

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling out, and this machine's closed
# network refuses it.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]


def ensure_chromium() -> Path:
    """Debian's chromium (and its driver), installed with apt-get when missing (CI on a fresh machine)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        raise RuntimeError("chromium is missing and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        done = subprocess.run(sudo + cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        raise RuntimeError("apt-get installed chromium but /usr/bin/chromium is missing")
    return CHROMIUM


LOOPBACK = ("127.0.0.1", "localhost", "::1")
SCREENSHOTS = STATE_DIR / "screenshots"


def keep(path: Path, name: str) -> None:
    """A copy of a screenshot for a person to look at (state/screenshots/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / name)


@contextmanager
def serving(app, port: int) -> Iterator[str]:
    """An ASGI app on a loopback port in a thread, for as long as the block runs; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="ui-test-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Browser:
    """One headless Chromium page, driven by Playwright (a maintained browser library) on Debian's
    Chromium, so a test can log in, read the rendered DOM and take screenshots like a person would."""

    def __init__(self, width: int = 1440, height: int = 1000):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=str(ensure_chromium()), args=FLAGS)
            self.page = self._browser.new_page(viewport={"width": width, "height": height})
        except BaseException:
            self._playwright.stop()
            raise
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))

    def only_loopback(self) -> list[str]:
        """Refuse every request to a host other than this machine's loopback; the list returned
        fills with the URLs refused (a page meant to work offline leaves it empty)."""
        outside: list[str] = []

        def route(route) -> None:
            url = route.request.url
            if urlsplit(url).scheme in ("data", "blob", "about", "file") or urlsplit(url).hostname in LOOPBACK:
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        self.page.route("**/*", route)
        return outside

    def js(self, expression: str, timeout: float = 30):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        self.page.set_default_timeout(timeout * 1000)
        return self.page.evaluate(expression)

    def goto(self, url: str, timeout: float = 60) -> None:
        self.page.goto(url, timeout=timeout * 1000)

    def wait_for(self, condition: str, timeout: float = 60) -> None:
        """Until the JavaScript `condition` holds in the page."""
        self.page.wait_for_function(condition, timeout=timeout * 1000)

    def click(self, role: str, name: str, timeout: float = 30) -> None:
        """A real pointer click on the element with that ARIA role and name, once it is visible and
        stable (a menu still opening moves its items, and a script click then may land on nothing)."""
        self.page.get_by_role(role, name=name, exact=True).click(timeout=timeout * 1000)

    def type_into(self, selector: str, text: str) -> None:
        self.page.locator(selector).fill(text)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()
