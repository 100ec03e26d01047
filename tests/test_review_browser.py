"""The review page in a real browser (Debian's chromium, headless, driven by Playwright) against
the review server on 127.0.0.1: it shows each pair, the keyboard approves and rejects (and the
catalog says so), `f` flips original and render in place, and `archiver release` then archives
exactly the approved ones. The static export (`--html`) opens in the same browser.

The catalogue is the tiny `memorized` one (four images, seconds to sweep), not the 48-image example.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import MEMORIZED, cli
from support.review import reviewing, states, sweep_for_review
from support.servers import chromium

from archiver.catalog.models import AssetState


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def current_key(page: Any) -> str:
    return str(page.locator("#key").inner_text())


def wait_for_pair(page: Any) -> None:
    page.wait_for_selector("#flip img", timeout=60_000)
    page.wait_for_selector("#render img", timeout=60_000)
    page.wait_for_selector("#colour img", timeout=60_000)


def test_keyboard_review_then_release(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    browser: Any,
) -> None:
    sweep_for_review(capsys, memorized, source)
    # the static page first, while every original is hot
    code, out, err = cli(capsys, "review", "--html", str(tmp_path / "site"), "--state", "pending")
    assert code == 0 and "4 assets" in out, err
    page = browser.new_page()
    page.goto((tmp_path / "site" / "index.html").as_uri())
    assert page.locator("#list li").count() == len(MEMORIZED)
    wait_for_pair(page)
    assert "verified exact" in page.locator("#render figcaption").inner_text()
    page.keyboard.press("g")  # the contact sheet: every pair's thumbnails
    page.wait_for_function("[...document.querySelectorAll('#sheet img')].every(i => i.complete)")
    sheet = page.eval_on_selector_all("#sheet img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert len(sheet) == 2 * len(MEMORIZED) and all(ok and width == 64 for ok, width in sheet)
    page.close()

    decided: dict[str, str] = {}
    with reviewing(env, reviewer="grace") as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#list li")
        page.select_option("#state", "pending")
        assert page.locator("#list li").count() == len(MEMORIZED)
        wait_for_pair(page)
        assert page.locator("table.checks tr.nearest").count() == 1
        assert "verified exact" in page.locator("#render figcaption").inner_text()
        assert "original: hot" in page.locator("#where").inner_text()
        # f flips the first panel between original and render, in place
        original_src = page.locator("#flip img").get_attribute("src")
        render_src = page.locator("#render img").get_attribute("src")
        assert original_src != render_src
        page.keyboard.press("f")
        assert page.locator("#flip").get_attribute("data-showing") == "render"
        assert page.locator("#flip img").get_attribute("src") == render_src
        page.keyboard.press("f")
        assert page.locator("#flip img").get_attribute("src") == original_src
        # a, r, a, a: each decision lands in the catalog and the page moves on
        for key_press, decision in zip("araa", ("approved", "rejected", "approved", "approved"), strict=True):
            wait_for_pair(page)
            key = current_key(page)
            page.keyboard.press(key_press)
            page.wait_for_function(
                "([key, want]) => [...document.querySelectorAll('#list li')].some("
                "li => li.querySelector('.k').textContent === key && "
                "li.querySelector('.badge').textContent.startsWith(want))",
                arg=[key, decision],
                timeout=30_000,
            )
            decided[key] = decision
        page.close()
    assert set(decided) == MEMORIZED
    approved = {key for key, d in decided.items() if d == "approved"}
    (rejected,) = set(decided) - approved
    assert states(env)[rejected] == (AssetState.REJECTED, "reviewer")

    code, out, err = cli(capsys, "release")
    assert code == 0, err
    after = states(env)
    assert {key for key, (state, _) in after.items() if state == AssetState.ARCHIVED} == approved
    assert {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()} & MEMORIZED == {
        rejected
    }
