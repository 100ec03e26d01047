"""The review page on a slow machine (issue 28, items 25-27), in Debian's chromium: a render that
outlives the server's wait is asked for again when the server says (503 + Retry-After), in the page
and in the contact sheet, instead of staying "still rendering"; the key help stays clear of the
pictures; a refused decision's reason shows above the pictures, where it is seen."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import MEMORIZED, cli
from support.review import reviewing, states, sweep_for_review
from support.servers import chromium


def test_a_slow_render_is_asked_for_again_and_shown(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep_for_review(capsys, memorized, source)  # 4 held for a person: vaulted, their hot copies kept
    # No render finishes within a millisecond: every first ask is 503 "still rendering", Retry-After 5.
    monkeypatch.setenv("ARCHIVER_SERVE_RENDER_TIMEOUT", "0.001")
    # The page opens on the four held for a person (each has a record), so no render was asked for
    # before the one shown: its first ask is the one that waits.
    with reviewing(env, state="pending") as url, chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        waiting = page.wait_for_selector("#render .missing:has-text('asking again')", timeout=30_000)
        assert waiting is not None and "asking again in 5 s" in waiting.inner_text()
        shown = page.wait_for_selector("#render img", timeout=60_000)  # the second ask: from the cache
        assert shown is not None and "verified exact" in page.locator("#render figcaption").inner_text()
        assert page.eval_on_selector("#render img", "i => i.complete && i.naturalWidth > 0")
        # The contact sheet asks for every render at once: each arrives, none left broken.
        page.keyboard.press("g")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#sheet img')].length === 8 && "
            "[...document.querySelectorAll('#sheet img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=90_000,
        )
        assert page.locator("#sheet img.missing").count() == 0
        page.keyboard.press("g")
        # The key help does not cover the pictures.
        page.keyboard.press("?")
        helpbox, diff = page.locator("#help").bounding_box(), page.locator("#diff").bounding_box()
        assert helpbox and diff
        overlap_x = min(helpbox["x"] + helpbox["width"], diff["x"] + diff["width"]) - max(
            helpbox["x"], diff["x"]
        )
        overlap_y = min(helpbox["y"] + helpbox["height"], diff["y"] + diff["height"]) - max(
            helpbox["y"], diff["y"]
        )
        assert overlap_x <= 0 or overlap_y <= 0, (helpbox, diff)
        page.keyboard.press("?")
        # A decision refused (the asset was released meanwhile) says why above the pictures.
        first = page.locator("#key").inner_text()
        page.keyboard.press("a")  # approve it; the page moves on
        page.wait_for_function(f"() => document.getElementById('key').textContent !== {first!r}")
        assert cli(capsys, "release")[0] == 0  # archived: its hot copy swapped for its record
        page.keyboard.press("k")
        page.wait_for_function(f"() => document.getElementById('key').textContent === {first!r}")
        page.keyboard.press("r")
        page.wait_for_selector("#message.error", timeout=30_000)
        message = page.locator("#message")
        assert "already released" in message.inner_text()
        said, pictures = message.bounding_box(), page.locator("#flip").bounding_box()
        assert said and pictures and said["y"] + said["height"] <= pictures["y"]


def test_a_decision_on_a_restored_asset_says_so_without_advising_a_restore_already_run(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import httpx

    from archiver.catalog.models import AssetState

    sweep_for_review(capsys, memorized, source)
    key = sorted(MEMORIZED)[0]
    with reviewing(env) as url:
        items = httpx.get(f"{url}/api/items", params={"review": "pending"}, timeout=30).json()["items"]
        asset_id = next(i["id"] for i in items if i["key"] == key)
        assert (
            httpx.post(f"{url}/api/items/{asset_id}/decision", json={"decision": "approve"}).status_code
            == 200
        )
        assert cli(capsys, "release")[0] == 0
        assert cli(capsys, "restore", key, "--original", "--wait")[0] == 0  # the original is hot again
        assert states(env)[key][0] == AssetState.RESTORED
        refused = httpx.post(f"{url}/api/items/{asset_id}/decision", json={"decision": "reject"}, timeout=30)
    assert refused.status_code == 409
    assert "the original is hot again" in refused.text and "--original" not in refused.text
