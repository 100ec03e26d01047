"""A real uvicorn server on 127.0.0.1 (a free port) in a thread of this process, built with the
origin's own `config` as `archiver serve` and `archiver review` build theirs; and Debian's chromium
through Playwright, for the pages they serve."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from archiver.http.server import bind, config, url_of

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def serving_app(app: Any, what: str = "the server") -> Iterator[str]:
    """Serve the ASGI `app` until the block ends; yields its URL once it is listening."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.01)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright; skips the test with the reason where it is
    missing or cannot start here."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except sync_api.Error as error:
            pytest.skip(f"chromium cannot start here: {str(error).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()
