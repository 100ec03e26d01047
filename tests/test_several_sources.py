"""One key held by several sources (issue 28, items 9-12): the README's own flow sweeps one catalogue
from two places, so every key is in two sources. One rule (`queries.resolve_key`): a bare key names
the oldest source's asset everywhere (`show`, `restore`, the mount, the origin), `--source URL`
names another, and whatever answers says which source it is and which others hold the key;
listings that span several sources name each row's source; the review page addresses items by
asset id. Real parts throughout: the `memorized` catalogue swept from two directories into one
SQLite catalog, the CLI in process, a uvicorn origin on 127.0.0.1 with httpx, a FUSE mount, and
the static review page in headless chromium.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import MEMORIZED, cli, register, sweep_memorized
from support.servers import chromium, serving_app

from archiver.catalog.database import open_catalog
from archiver.catalog.models import Asset
from archiver.http.origin.server import build
from archiver.settings import load_settings
from archiver.storage import open_vault

KEY = "shoes/tiny-red.png"


@dataclass
class Two:
    first: Path  # swept first: the older source
    second: Path
    urls: tuple[str, str]  # (older, newer), as the catalog names them


def source_urls(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    code, out, err = cli(capsys, "sources", "--json")
    assert code == 0, err
    urls = [json.loads(line)["url"] for line in out.splitlines()]
    assert len(urls) == 2, urls
    return urls[0], urls[1]  # oldest first


def copy_tree(source: Path, to: Path) -> Path:
    shutil.copytree(source, to)
    return to


@pytest.fixture
def two(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Two:
    """The `memorized` catalogue archived from two directories: each of MEMORIZED in both sources."""
    monkeypatch.setenv("COLUMNS", "400")  # rich tables: long temporary paths stay on one line
    second = copy_tree(source, tmp_path / "second")
    sweep_memorized(capsys, memorized, source)
    code, out, err = cli(capsys, "sweep", str(second), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["archived"] == len(MEMORIZED), err
    return Two(source, second, source_urls(capsys))


def test_ls_names_each_rows_source_when_the_listing_spans_several(
    two: Two, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = two.urls
    code, out, err = cli(capsys, "ls", KEY, "--json")
    assert code == 0, err
    assert [(row["key"], row["source"]) for row in map(json.loads, out.splitlines())] == [
        (KEY, older),
        (KEY, newer),
    ]
    code, out, err = cli(capsys, "ls", "shoes/")
    assert code == 0, err
    header = next(line for line in out.splitlines() if " key " in line)
    assert "source" in header
    lines = [line for line in out.splitlines() if KEY in line]
    assert len(lines) == 2 and older in lines[0] and newer in lines[1]
    code, out, err = cli(capsys, "ls", "shoes/", "--source", newer)  # one source: no column
    assert code == 0 and out.count(KEY) == 1 and older not in out and newer not in out, err
    header = next(line for line in out.splitlines() if " key " in line)
    assert "source" not in header
    code, out, err = cli(capsys, "sources")
    assert code == 0 and older in out and newer in out, err


def test_show_names_the_oldest_sources_asset_and_the_others(
    two: Two, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = two.urls
    code, out, err = cli(capsys, "show", KEY)
    assert code == 0, err
    first, second = out.splitlines()[:2]
    assert f"{KEY} in {older}: archived" in first
    assert second == f"{KEY} is also in {newer}: pass --source URL for another source's"
    code, out, err = cli(capsys, "show", KEY, "--json")
    info = json.loads(out)
    assert code == 0 and (info["source"], info["other_sources"]) == (older, [newer]), err
    code, out, err = cli(capsys, "show", KEY, "--source", newer, "--json")
    info = json.loads(out)
    assert code == 0 and (info["source"], info["other_sources"]) == (newer, [older]), err
    code, out, err = cli(capsys, "show", "shoes/nothing.png")
    assert code == 6 and "no asset 'shoes/nothing.png'" in err


def test_restore_key_restores_the_oldest_sources_asset_and_says_so(
    two: Two, capsys: pytest.CaptureFixture[str], memorized: dict[str, object]
) -> None:
    older, newer = two.urls
    assert not (two.first / KEY).exists() and not (two.second / KEY).exists()  # both archived
    code, out, err = cli(capsys, "restore", KEY)
    assert code == 0, err
    assert f"restoring the one in {older}; {KEY} is also in {newer}" in err
    assert (two.first / KEY).read_bytes() == memorized["files"][KEY]  # type: ignore[index]
    assert not (two.second / KEY).exists()
    code, out, err = cli(capsys, "restore", KEY, "--source", newer, "--json")
    assert code == 0, err
    (job,) = json.loads(out)["jobs"]
    assert (job["source"], job["state"]) == (newer, "done")
    assert (two.second / KEY).read_bytes() == memorized["files"][KEY]  # type: ignore[index]


# --- the origin: a real uvicorn server on 127.0.0.1, driven by httpx ---


@contextmanager
def origin(home: Path, source: str | None = None) -> Iterator[str]:
    settings = load_settings(home=home, device="cpu")
    catalog = open_catalog(settings.catalog_url)
    vault = open_vault(settings.vault_url, settings.vault_storage_class)
    served = build(settings, catalog, vault, source=source)
    try:
        with serving_app(served.app, "the origin") as url:
            yield url
    finally:
        served.close()
        catalog.close()


def test_the_origin_serves_the_oldest_sources_asset_and_names_the_sources(two: Two, env: Path) -> None:
    older, newer = two.urls
    assets = {(a.key, a.source.url): a for a in _assets(env)}
    with origin(env) as url, httpx.Client(base_url=url, timeout=120) as http:
        got = http.get(f"/{KEY}")
        assert got.status_code == 200
        assert (got.headers["x-archiver-source"], got.headers["x-archiver-other-sources"]) == (older, newer)
        record = assets[KEY, older].record
        assert record is not None and got.headers["etag"] == f'"{record.rendered_sha256}"'
        head = http.head(f"/{KEY}")
        assert head.status_code == 200 and head.headers["x-archiver-source"] == older
        assert http.get("/shoes/nothing.png").status_code == 404
    with origin(env, source=newer) as url, httpx.Client(base_url=url, timeout=120) as http:
        got = http.get(f"/{KEY}")
        assert got.status_code == 200
        assert (got.headers["x-archiver-source"], got.headers["x-archiver-other-sources"]) == (newer, older)


def _assets(home: Path) -> list[Asset]:
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        found = list(session.query(Asset).all())
        for a in found:
            _ = a.record, a.source
    catalog.close()
    return found


# --- the mount: a real FUSE mount of the same catalog ---


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount") is None and shutil.which("fusermount3") is None:
        return "fusermount is not installed (scripts/setup.sh installs it)"
    try:
        import fusefs.adapter  # noqa: F401
    except (OSError, ImportError) as exc:
        return f"mfusepy cannot load libfuse 3: {exc}"
    return None


@contextmanager
def mounted(point: Path, log: Path, *argv: str) -> Iterator[Path]:
    point.mkdir()
    env = os.environ | {"ARCHIVER_DEVICE": "cpu"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "mount", str(point), "--foreground", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(point):
            assert process.poll() is None, log.read_text()[-800:]
            assert time.monotonic() < deadline, "the mount did not come up"
            time.sleep(0.05)
        yield point
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if os.path.ismount(point):
            subprocess.run(["fusermount", "-u", "-z", str(point)], capture_output=True)


@pytest.mark.fuse
def test_the_mount_shows_the_oldest_sources_asset_and_names_the_sources_in_xattrs(
    two: Two, env: Path, tmp_path: Path
) -> None:
    if (reason := _fuse_missing()) is not None:
        pytest.skip(f"FUSE mount tests skipped: {reason}")
    older, newer = two.urls
    log = tmp_path / "mount.log"
    with mounted(tmp_path / "mp", log) as point:
        path = point / KEY
        assert os.getxattr(path, "user.archiver.source") == older.encode()
        assert os.getxattr(path, "user.archiver.other_sources") == newer.encode()
        # Not read here: a read right after the mount comes up failed with "DDIMScheduler is not
        # in this diffusers" (a race with the models' preload, reported); test_mount reads bytes.
        assert os.stat(path).st_size > 0
        assert sorted(os.listdir(point / "shoes")) == sorted(k.split("/")[1] for k in MEMORIZED)
    assert f"{len(MEMORIZED)} keys shown from an older source" in log.read_text()
    with mounted(tmp_path / "mp2", tmp_path / "mount2.log", "--source", newer) as point:
        assert os.getxattr(point / KEY, "user.archiver.source") == newer.encode()
        assert os.getxattr(point / KEY, "user.archiver.other_sources") == older.encode()


# --- the static review page: items addressed by asset id, named with their source ---


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def test_the_static_review_page_keeps_its_place_between_identical_keys(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    browser: Any,
) -> None:
    second = copy_tree(source, tmp_path / "second")
    register(capsys, memorized)
    for hot in (source, second):
        code, out, err = cli(capsys, "sweep", str(hot), "--model", "tiny", "--require-review", "--json")
        assert code == 0 and json.loads(out)["held"] == len(MEMORIZED), err
    older, newer = source_urls(capsys)
    code, out, err = cli(capsys, "review", "--html", str(tmp_path / "site"), "--state", "pending")
    assert code == 0, err
    page = browser.new_page()
    page.goto((tmp_path / "site" / "index.html").as_uri())
    page.select_option("#sort", "key")
    names = page.eval_on_selector_all("#list li .k", "els => els.map(e => e.textContent)")
    red = [n for n in names if n.startswith(KEY)]
    assert red == [f"{KEY} ({older})", f"{KEY} ({newer})"]  # both, each named with its source
    page.locator("#list li", has_text=f"{KEY} ({older})").click()
    assert page.locator("#key").inner_text() == f"{KEY} ({older})"
    page.keyboard.press("r")  # reject the older source's; the page moves on to the newer one's
    page.wait_for_function(f"document.getElementById('message').textContent === 'rejected: {KEY} ({older})'")
    assert page.locator("#key").inner_text() == f"{KEY} ({newer})"
    page.keyboard.press("a")
    page.wait_for_function(f"document.getElementById('message').textContent === 'approved: {KEY} ({newer})'")
    with page.expect_download() as download:
        page.click("#download")
    decisions = tmp_path / "decisions.csv"
    download.value.save_as(decisions)
    rows = list(csv.DictReader(io.StringIO(decisions.read_text())))
    assert sorted((r["key"], r["source"], r["decision"]) for r in rows) == [
        (KEY, older, "reject"),
        (KEY, newer, "approve"),
    ]
    page.close()
    code, out, err = cli(capsys, "review", "--apply", str(decisions), "--reviewer", "ada")
    assert code == 0, err
    for review, url in (("rejected", older), ("approved", newer)):
        code, out, err = cli(capsys, "ls", "--review", review, "--json")
        assert code == 0, err
        assert [(r["key"], r["source"]) for r in map(json.loads, out.splitlines())] == [(KEY, url)]
