"""The review page's screenshot for the docs (docs/review.png), on the real example.

Writes the rumba catalogue (with distractors under trained keys), registers the shipped model,
sweeps with --require-review into a throwaway home, serves the review page on 127.0.0.1 and has
Debian's chromium (headless, Playwright) take the picture of the pending asset nearest a threshold,
flipped back to its original, after one approval and one rejection by keyboard. Prints the timings.

    .venv/bin/python scripts/review_screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "review.png"
    work = Path(tempfile.mkdtemp(prefix="review-shot-"))
    for name in [n for n in os.environ if n.startswith("ARCHIVER_")]:
        del os.environ[name]
    # One seed per pipeline call: the shipped model memorized its images at seed 0, so the search
    # stops after one render instead of a batch of four (the verdicts are the same).
    os.environ.update(
        {
            "ARCHIVER_HOME": str(work / "home"),
            "HF_HUB_OFFLINE": "1",
            "ARCHIVER_DEVICE": "cpu",
            "ARCHIVER_SEED_SEARCH_BATCH": "1",
        }
    )
    from archiver.cli import main as archiver

    started = time.perf_counter()
    assert archiver(["example", "rumba", str(work / "catalogue"), "--under-trained-keys"]) == 0
    assert archiver(["model", "add", str(REPO / "examples" / "rumba" / "model"), "--name", "rumba"]) == 0
    assert archiver(["sweep", str(work / "catalogue"), "--model", "rumba", "--require-review", "--json"]) == 0
    swept = time.perf_counter()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from archiver.catalog.database import open_catalog
    from archiver.http.review.app import create_app
    from archiver.http.review.server import build
    from archiver.http.server import bind, config, url_of
    from archiver.settings import load_settings
    from archiver.storage import open_hot_store, open_vault

    settings = load_settings()
    catalog = open_catalog(settings.catalog_url)
    vault = open_vault(settings.vault_url, settings.vault_storage_class)
    service = build(settings, catalog, vault, open_hot_store, reviewer="docs")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(config(create_app(service, state="pending")))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1480, "height": 900})
            page.goto(url_of(sock) + "/")
            page.wait_for_selector("#colour img", timeout=120_000)
            first = time.perf_counter()
            timings = []
            for key in "ar":  # one approval and one rejection, by keyboard, as a reviewer would
                shown = page.locator("#key").inner_text()
                t = time.perf_counter()
                page.keyboard.press(key)
                page.wait_for_function(
                    "k => document.querySelector('#key').textContent !== k", arg=shown, timeout=60_000
                )
                page.wait_for_selector("#colour img", timeout=120_000)
                timings.append(time.perf_counter() - t)
            page.wait_for_timeout(300)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(30)
        service.close()
        catalog.close()
    print(
        f"sweep --require-review of the example: {swept - started:.1f} s; first pair shown "
        f"{first - swept:.1f} s after; decide-and-show-next {', '.join(f'{t:.2f}' for t in timings)} s; "
        f"wrote {out}"
    )


if __name__ == "__main__":
    main()
