"""`archiver serve`, the HTTP origin: the swept `memorized` catalogue over real HTTP, driven by httpx.

The catalogue is swept once per session with the real gate (pretrained LPIPS trunk) into a home of
its own (`memorized_home`, tests/support/homes.py); each test copies that home and runs a real
uvicorn server on 127.0.0.1 (a free port), in a thread of this process built exactly as `archiver
serve` builds it (archiver/http/origin/server.py), or `archiver serve` itself in a subprocess. No mocks:
render counts come from the origin's own /metrics; the only scripted part is a render held back to
fill the queue.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import MEMORIZED
from support.homes import SweptHome
from support.processes import base_env
from support.servers import serving_app

from archiver.cache import DiskCache
from archiver.catalog import queries
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.models import AssetState, RestoreMode
from archiver.errors import NotFound
from archiver.http.origin.assets import CatalogAssets
from archiver.http.origin.semantics import ByteRange, RangeNotSatisfiable, byte_range
from archiver.http.origin.server import Origin, build
from archiver.read.policy import ReadPolicy
from archiver.read.reader import ArchivedAsset, AssetReader, Rendered
from archiver.settings import Settings, load_settings
from archiver.storage import open_vault

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def swept(memorized_home: SweptHome) -> SweptHome:
    """The session's sweep of the `memorized` catalogue; each test serves a copy of its home."""
    return memorized_home


@pytest.fixture
def home(swept: SweptHome, archiver_env: Path) -> Path:
    """A copy of the swept home (catalog and vault) with an empty cache; ARCHIVER_* cleared."""
    return swept.copy_home(archiver_env)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_sha(swept: SweptHome, key: str) -> str:
    record = swept.assets[key].record
    assert record is not None
    return record.rendered_sha256


@dataclass
class Running:
    url: str
    origin: Origin
    catalog: Catalog

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the origin's /metrics, read over HTTP."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = rf"^{re.escape(name)}{re.escape('{' + want + '}') if want else ''} (\S+)$"
        found = re.search(pattern, text, re.MULTILINE)
        assert found is not None, f"{name}{labels} not in /metrics"
        return float(found.group(1))

    def renders(self) -> int:
        return int(sum(self.metric("archiver_origin_renders_total", result=r) for r in ("ok", "failed")))


@contextmanager
def serving(home: Path, *, reader: type[AssetReader] | None = None, **settings: Any) -> Iterator[Running]:
    """A real uvicorn server on 127.0.0.1 in a thread, over an origin built like `archiver serve`'s."""
    conf: Settings = load_settings(home=home, device="cpu", **settings)
    catalog = open_catalog(conf.catalog_url)
    vault = open_vault(conf.vault_url, conf.vault_storage_class)
    custom = None if reader is None else reader(catalog, vault)
    origin = build(conf, catalog, vault, reader=custom)
    try:
        with serving_app(origin.app, "the origin") as url:
            yield Running(url, origin, catalog)
    finally:
        origin.close()
        catalog.close()


def last_modified(swept: SweptHome, key: str) -> str:
    return format_datetime(swept.assets[key].last_modified.astimezone(UTC), usegmt=True)


# --- what a GET carries ---


def test_get_serves_the_verified_bytes_with_immutable_validators_and_logs_each_request(
    home: Path, swept: SweptHome, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="archiver.origin.access")
    with serving(home) as origin, origin.client() as http:
        for key in sorted(MEMORIZED):
            got = http.get(f"/{key}")
            assert got.status_code == 200, got.text
            assert sha256(got.content) == record_sha(swept, key)  # the bytes hash to the record
            assert got.headers["etag"] == f'"{record_sha(swept, key)}"'
            assert got.headers["cache-control"] == IMMUTABLE
            assert got.headers["last-modified"] == last_modified(swept, key)
            assert got.headers["content-type"] == ("image/png" if key.endswith(".png") else "image/jpeg")
            assert int(got.headers["content-length"]) == len(got.content)
            assert got.headers["accept-ranges"] == "bytes"
            assert got.headers["x-archiver-served"] == "rehydrated"
            assert got.headers["x-archiver-verified"] == "exact"  # this machine swept them
            # both hashes by name: the served bytes' (ETag, Repr-Digest) and the original's
            digest = base64.b64encode(hashlib.sha256(got.content).digest()).decode()
            assert got.headers["repr-digest"] == f"sha-256=:{digest}:"
            assert got.headers["x-archiver-original-sha256"] == swept.assets[key].sha256
            assert int(got.headers["x-archiver-original-size"]) == swept.assets[key].size
        assert origin.renders() == len(MEMORIZED)
        assert origin.metric("archiver_origin_reads_verified_total", mode="exact") == len(MEMORIZED)
        again = http.get("/shoes/tiny-red.png")
        assert again.content == http.get("/shoes/tiny-red.png").content and origin.renders() == len(MEMORIZED)
        assert origin.metric("archiver_origin_cache_hits_total", layer="memory") >= 2
    lines = [r.getMessage() for r in caplog.records if r.name == "archiver.origin.access"]
    gets = [line for line in lines if '"GET /shoes/' in line]
    assert len(gets) == len(MEMORIZED) + 2 and all(" 200 " in line for line in gets)
    assert '127.0.0.1 "GET /shoes/tiny-blue.jpg" 200 ' in lines[0]


def test_head_answers_from_the_record_without_rendering(home: Path, swept: SweptHome) -> None:
    with serving(home) as origin, origin.client() as http:
        for key in MEMORIZED:
            head = http.head(f"/{key}")
            record = swept.assets[key].record
            assert record is not None
            assert head.status_code == 200 and head.content == b""
            assert head.headers["etag"] == f'"{record.rendered_sha256}"'
            assert int(head.headers["content-length"]) == record.rendered_size
            assert head.headers["cache-control"] == IMMUTABLE
            assert head.headers["last-modified"] == last_modified(swept, key)
        assert origin.renders() == 0
        got = http.get("/shoes/tiny-green.png")
        head = http.head("/shoes/tiny-green.png")
        assert origin.renders() == 1
        same = ("etag", "cache-control", "last-modified", "content-type", "content-length", "repr-digest")
        for name in (*same, "x-archiver-original-sha256", "x-archiver-original-size"):
            assert head.headers[name] == got.headers[name], name


def test_conditional_requests_answer_304_with_the_validators_if_none_match_first(
    home: Path, swept: SweptHome
) -> None:
    key = "shoes/tiny-pink.jpg"
    etag, modified = f'"{record_sha(swept, key)}"', swept.assets[key].last_modified
    later = format_datetime((modified + timedelta(days=1)).astimezone(UTC), usegmt=True)
    earlier = format_datetime((modified - timedelta(days=1)).astimezone(UTC), usegmt=True)
    with serving(home) as origin, origin.client() as http:

        def status(method: str = "GET", **headers: str) -> httpx.Response:
            return http.request(
                method, f"/{key}", headers={k.replace("_", "-"): v for k, v in headers.items()}
            )

        fresh = status(if_none_match=etag)
        assert fresh.status_code == 304 and fresh.content == b""
        assert fresh.headers["etag"] == etag and fresh.headers["cache-control"] == IMMUTABLE
        assert fresh.headers["last-modified"] == last_modified(swept, key)
        assert origin.renders() == 0  # a revalidation never renders
        assert status(if_none_match=f'"{"0" * 64}", {etag}').status_code == 304
        assert status(if_none_match=f"W/{etag}").status_code == 304  # If-None-Match compares weakly
        assert status(if_none_match="*").status_code == 304
        assert status("HEAD", if_none_match=etag).status_code == 304
        assert status(if_none_match=f'"{"0" * 64}"').status_code == 200
        by_date = status(if_modified_since=last_modified(swept, key))
        assert by_date.status_code == 304 and by_date.headers["etag"] == etag
        assert status(if_modified_since=later).status_code == 304
        assert status(if_modified_since=earlier).status_code == 200
        assert status(if_modified_since="not a date").status_code == 200
        # If-None-Match wins: when it is present, If-Modified-Since is not looked at
        assert status(if_none_match=f'"{"0" * 64}"', if_modified_since=later).status_code == 200
        assert status(if_none_match=etag, if_modified_since=earlier).status_code == 304
        assert status(if_match=f'"{"0" * 64}"').status_code == 412
        assert status(if_match=etag).status_code == 200
        assert status(if_unmodified_since=earlier).status_code == 412


def test_ranges_answer_206_and_416_and_several_ranges_get_everything(home: Path, swept: SweptHome) -> None:
    key = "shoes/tiny-red.png"
    with serving(home) as origin, origin.client() as http:
        whole = http.get(f"/{key}").content
        size = len(whole)
        for spec, (first, last) in {
            "bytes=0-9": (0, 9),
            "bytes=10-": (10, size - 1),
            "bytes=-5": (size - 5, size - 1),
            f"bytes={size - 3}-{size + 100}": (size - 3, size - 1),
        }.items():
            part = http.get(f"/{key}", headers={"range": spec})
            assert part.status_code == 206, spec
            assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
            assert part.content == whole[first : last + 1] and part.headers["etag"] == f'"{sha256(whole)}"'
        for spec in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
            refused = http.get(f"/{key}", headers={"range": spec})
            assert refused.status_code == 416 and refused.headers["content-range"] == f"bytes */{size}", spec
        several = http.get(f"/{key}", headers={"range": "bytes=0-1,5-6"})
        assert several.status_code == 200 and several.content == whole
        etag = f'"{sha256(whole)}"'
        assert http.get(f"/{key}", headers={"range": "bytes=0-1", "if-range": etag}).status_code == 206
        stale = http.get(f"/{key}", headers={"range": "bytes=0-1", "if-range": '"other"'})
        assert stale.status_code == 200 and stale.content == whole
        assert origin.renders() == 1


def test_unknown_keys_404_bad_keys_400_other_methods_405(home: Path) -> None:
    with serving(home) as origin, origin.client() as http:
        assert http.get("/shoes/nope.png").status_code == 404
        assert http.head("/shoes").status_code == 404  # a prefix is not an asset
        for bad in (
            "/shoes/%2e%2e/%2e%2e/etc/passwd",
            "/shoes/%2E%2E",
            "/shoes/%00x.png",
            "/shoes/a%0Ab.png",  # a newline: no route matched it once, a bare 404 (issue 28, item 7)
            "/shoes/a%0D.png",
            "//etc/passwd",
            "/",
        ):
            got = httpx.get(origin.url + bad)  # not through base_url, which would strip the leading "//"
            assert got.status_code == 400 and "bad key" in got.text, bad
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            refused = http.request(method, "/shoes/tiny-red.png", content=b"x")
            assert refused.status_code == 405, method
            assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD"}
        deadline = time.monotonic() + 60
        while (health := http.get("/healthz")).status_code == 503:  # the model still loading
            assert health.text == "not ready: loading models (4 keys)\n" and time.monotonic() < deadline
            time.sleep(0.05)
        assert health.text == "ok: 4 keys\n"
        assert origin.metric("archiver_origin_requests_total", status="400") == 7
        assert origin.renders() == 0


# --- concurrency and back-pressure ---


def test_32_concurrent_gets_of_a_cold_key_get_identical_bytes_from_one_render(
    home: Path, swept: SweptHome
) -> None:
    key = "shoes/tiny-blue.jpg"
    with serving(home) as origin:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=origin.url, timeout=60) as http:
                return await asyncio.gather(*(http.get(f"/{key}") for _ in range(32)))

        responses = asyncio.run(burst())
        assert [r.status_code for r in responses] == [200] * 32
        assert len({r.content for r in responses}) == 1
        assert sha256(responses[0].content) == record_sha(swept, key)
        assert origin.renders() == 1
        assert origin.origin.assets.policy.renders[swept.assets[key].id] == 1


class HeldReader(AssetReader):
    """A real reader whose renders of one key wait until the test lets them go."""

    held_key = "shoes/tiny-red.png"
    release = threading.Event()

    def rehydrate(self, asset: ArchivedAsset) -> Rendered:
        if asset.key == self.held_key:
            self.release.wait(60)
        return super().rehydrate(asset)


@pytest.fixture
def held() -> Iterator[threading.Event]:
    HeldReader.release.clear()
    yield HeldReader.release
    HeldReader.release.set()  # whatever failed, no render stays held


def test_a_full_render_queue_answers_503_at_once_and_joins_the_key_in_flight(
    home: Path, swept: SweptHome, held: threading.Event
) -> None:
    with serving(home, reader=HeldReader, render_workers=1, serve_render_queue=0) as origin:
        results: dict[int, httpx.Response] = {}

        def get(slot: int) -> None:
            results[slot] = httpx.get(f"{origin.url}/{HeldReader.held_key}", timeout=60)

        first = threading.Thread(target=get, args=(1,))
        first.start()
        deadline = time.monotonic() + 30
        while origin.metric("archiver_origin_render_queue_depth") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        joined = threading.Thread(target=get, args=(2,))  # the key in flight: joined, not refused
        joined.start()
        started = time.monotonic()
        refused = httpx.get(f"{origin.url}/shoes/tiny-green.png", timeout=60)
        assert refused.status_code == 503 and time.monotonic() - started < 2
        assert refused.headers["retry-after"] == "1" and refused.headers["cache-control"] == "no-store"
        held.set()
        first.join(60)
        joined.join(60)
        assert results[1].status_code == results[2].status_code == 200
        assert results[1].content == results[2].content
        assert sha256(results[1].content) == record_sha(swept, HeldReader.held_key)
        assert httpx.get(f"{origin.url}/shoes/tiny-green.png", timeout=60).status_code == 200
        assert origin.renders() == 2 and origin.metric("archiver_origin_requests_total", status="503") == 1


# --- failures: a model changed on disk, a vault copy still in the archive tier ---


def test_an_unrenderable_key_answers_503_and_files_one_restore_then_serves_the_vault_original(
    home: Path, swept: SweptHome
) -> None:
    key = "shoes/tiny-blue.jpg"
    asset = swept.assets[key]
    assert asset.vault_object is not None
    config_file = swept.model / "unet" / "config.json"
    before = config_file.read_bytes()
    config_file.write_bytes(before + b" ")  # still valid JSON, but not the registered model any more
    try:
        with serving(home) as origin, origin.client() as http:
            for _ in range(2):
                refused = http.get(f"/{key}")
                assert refused.status_code == 503 and refused.headers["cache-control"] == "no-store"
                assert int(refused.headers["retry-after"]) > 0
                assert "archive tier" in refused.text and "restore requested" in refused.text
            with origin.catalog.begin() as session:
                jobs = queries.restore_jobs(session, [asset.id])
                assert [(j.mode, j.tier) for j in jobs] == [(RestoreMode.ORIGINAL, "Standard")]  # one
                assert (jobs[0].reason or "").startswith("origin read: ModelError")
            assert origin.renders() == 1  # the second request went straight to the vault

            open_vault(str(home / "vault"), "GLACIER").request_restore(asset.vault_object.key, "Standard", 1)
            got = http.get(f"/{key}")
            assert got.status_code == 200 and got.headers["x-archiver-served"] == "original"
            assert sha256(got.content) == asset.sha256 and got.headers["etag"] == f'"{asset.sha256}"'
            assert got.headers["x-archiver-original-sha256"] == asset.sha256  # the served bytes, now
            digest = base64.b64encode(bytes.fromhex(asset.sha256 or "")).decode()
            assert got.headers["repr-digest"] == f"sha-256=:{digest}:"
            assert got.headers["content-type"] == "image/jpeg"
            head = http.head(f"/{key}")
            assert head.headers["etag"] == f'"{asset.sha256}"'
            assert int(head.headers["content-length"]) == asset.size
    finally:
        config_file.write_bytes(before)


# --- `archiver serve` itself ---


def test_archiver_serve_in_a_subprocess_serves_logs_and_stops_cleanly_on_sigterm(
    home: Path, swept: SweptHome, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "serve", "--port", "0"],
            env=base_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while (found := re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())) is None:
            assert process.poll() is None, log.read_text()[-800:]
            assert time.monotonic() < deadline, "archiver serve did not start"
            time.sleep(0.1)
        url = found.group(1)
        with httpx.Client(base_url=url, timeout=60) as http:
            # it listened at once; /healthz says 503 "not ready" until the preload loaded the model
            while (health := http.get("/healthz")).status_code != 200:
                assert health.status_code == 503 and health.text.startswith("not ready"), health.text
                assert time.monotonic() < deadline, "archiver serve never became ready"
                time.sleep(0.05)
            assert "model tiny loaded on cpu" in log.read_text()
            for key in MEMORIZED:
                got = http.get(f"/{key}")
                assert got.status_code == 200 and sha256(got.content) == record_sha(swept, key)
            assert "archiver_origin_renders_total" in http.get("/metrics").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert text.count('"GET /shoes/') == len(MEMORIZED) and text.rstrip().endswith("stopped")
    assert text.count("rendered shoes/") == len(MEMORIZED)


# --- lower layers: the key index and byte ranges ---


def test_a_key_held_by_several_sources_names_the_oldest_ones_unless_the_origin_serves_one(
    tmp_path: Path,
) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    when = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    with catalog.begin() as session:
        model = queries.add_model(session, name="m", sha256="ab" * 32, path="/m", pipeline_class="P")
        profile = queries.get_or_add_profile(session, "cd" * 32, "PNG", b"{}")
        for url, key in [("file:///a", "x.png"), ("s3://b/c", "x.png"), ("s3://b/c", "y.png")]:
            source = queries.get_or_add_source(session, url)
            asset = queries.add_asset(session, source, key=key, size=1, etag=None, last_modified=when)
            fields = dict(pipeline_class="P", scheduler_class="S", scheduler_config={}, prompt="p", seed=1)
            fields |= dict(steps=2, guidance_scale=1.0, width=8, height=8, dtype="float32", software={})
            queries.save_record(
                session,
                asset,
                model_id=model.id,
                encoding_profile_id=profile.id,
                rendered_sha256="ef" * 32,
                rendered_size=1,
                gate_report={},
                **fields,
            )
            queries.set_state(session, asset, AssetState.ARCHIVED)
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")

    def assets(source: str | None) -> CatalogAssets:
        policy = ReadPolicy(catalog, AssetReader(catalog, vault), DiskCache(tmp_path / "cache", 10**6))
        found = CatalogAssets(catalog, policy, source=source)
        found.refresh()
        return found

    everything = assets(None)
    oldest = everything.lookup("x.png")  # the one rule (queries.resolve_key): the oldest source's
    assert (oldest.source, oldest.others) == ("file:///a", ("s3://b/c",))
    assert everything.lookup("y.png").key == "y.png" and len(everything) == 2
    newer = assets("s3://b/c").lookup("x.png")
    assert newer.source_id != oldest.source_id and newer.asset_id != oldest.asset_id
    assert (newer.source, newer.others) == ("s3://b/c", ("file:///a",))
    with pytest.raises(NotFound):
        assets("file:///a").lookup("y.png")
    with pytest.raises(NotFound, match="no source"):
        assets("s3://nowhere")
    assert everything.refresh() is False  # nothing changed: no reload
    catalog.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0, 100)),
        ("bytes=90-", ByteRange(90, 99, 100)),
        ("bytes=-200", ByteRange(0, 99, 100)),
        ("bytes=5-4", None),  # invalid: ignored
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=0-1, 3-4", None),
        ("bytes=100-", RangeNotSatisfiable),
        ("bytes=-0", RangeNotSatisfiable),
    ],
)
def test_byte_range(header: str | None, expected: object) -> None:
    if expected is RangeNotSatisfiable:
        with pytest.raises(RangeNotSatisfiable):
            byte_range(header, 100)
    else:
        assert byte_range(header, 100) == expected
