"""Restoring members of a pack: the reader downloads a pack once for all its members, keeps at
most PACKS_KEPT packs, and lets one thread download a pack while the others wait for its bytes.

Packs are built with the vault's own format and put into a real vault (a local directory, and
GLACIER on moto's S3 server); the catalog rows are the ones a sweep commits. GETs are counted by
a `CountingVault` around the real vault, on S3 also by a botocore hook on the client (one per
HTTP request, retries included), and for the CLI by moto's own request log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import cli

from archiver.catalog import queries
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.models import AssetState, RestoreMode
from archiver.catalog.queries import request_restore
from archiver.errors import NotRestored
from archiver.read.reader import PACKS_KEPT, AssetReader, snapshot
from archiver.restore.run import JobView, RestoreRunner
from archiver.storage import (
    HotStore,
    ObjectInfo,
    RestoreState,
    RestoreTier,
    Vault,
    VaultCopy,
    make_s3_client,
    open_hot_store,
    open_vault,
)
from archiver.storage.vault_format import build_pack, original_key, pack_key

MEMBERS = 40


class CountingVault:
    """A real vault that counts the GETs made through it, by key; `gate`, when set, holds every
    GET until it is set, so tests can line threads up behind one download."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.gets: Counter[str] = Counter()
        self.running = 0  # GETs under way now
        self.most_running = 0
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.vault.url

    @property
    def storage_class(self) -> str:
        return self.vault.storage_class

    def put(self, key: str, data: bytes, **options: Any) -> VaultCopy:
        return self.vault.put(key, data, **options)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.vault.list(prefix)

    def head(self, key: str) -> ObjectInfo:
        return self.vault.head(key)

    def restore_state(self, key: str) -> RestoreState:
        return self.vault.restore_state(key)

    def request_restore(self, key: str, tier: RestoreTier, days: int) -> RestoreState:
        return self.vault.request_restore(key, tier, days)

    def get(self, key: str) -> bytes:
        with self._lock:
            self.gets[key] += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                assert self.gate.wait(30), "the test never opened the gate"
            return self.vault.get(key)
        finally:
            with self._lock:
                self.running -= 1

    def delete(self, key: str) -> None:
        self.vault.delete(key)


def originals(prefix: str, count: int, seed: int) -> dict[str, bytes]:
    """`count` small originals of different sizes (random bytes: the vault does not care)."""
    rng = random.Random(seed)
    return {f"{prefix}{n:02d}.png": rng.randbytes(rng.randrange(200, 5000)) for n in range(count)}


def archive(catalog: Catalog, hot_url: str, vault: Vault, files: dict[str, bytes], *, pack: bool) -> str:
    """Put `files` into `vault`, as one pack or as one single original each, and commit them
    archived with the rows a sweep commits; returns the vault key of the pack (or the last single)."""
    now = datetime.now(UTC)
    objects: list[tuple[VaultCopy, dict[str, tuple[int, int] | None]]]
    if pack:
        data, members = build_pack(list(files.items()))
        copy = vault.put(pack_key(hashlib.sha256(data).hexdigest()), data)
        objects = [(copy, {m.key: (m.offset, m.length) for m in members})]
    else:
        objects = [
            (vault.put(original_key(hashlib.sha256(data).hexdigest()), data), {key: None})
            for key, data in files.items()
        ]
    with catalog.begin() as session:
        source = queries.get_or_add_source(session, hot_url)
        for copy, spans in objects:
            row = queries.add_vault_object(session, **asdict(copy), is_pack=pack, confirmed_at=now)
            for key, span in spans.items():
                asset = queries.add_asset(
                    session, source, key=key, size=len(files[key]), etag=None, last_modified=now
                )
                asset.sha256 = hashlib.sha256(files[key]).hexdigest()
                asset.vault_object_id = row.id
                asset.vault_offset, asset.vault_length = span or (None, None)
                queries.set_state(session, asset, AssetState.ARCHIVED)
    return objects[-1][0].key


def restore_originals(
    catalog: Catalog, reader: AssetReader, open_store: Callable[[str], HotStore], prefix: str
) -> list[JobView]:
    """What `archiver restore --prefix PREFIX --original --wait` does: file the jobs, then advance
    them all until each is finished."""
    with catalog.begin() as session:
        job_ids = [
            request_restore(session, asset, RestoreMode.ORIGINAL, tier="Standard", days=1).id
            for asset in queries.list_assets(session, prefix)
        ]
    runner = RestoreRunner(catalog, reader, open_store)
    for _ in range(5):
        jobs = runner.advance(job_ids)
        if all(job.finished for job in jobs):
            return jobs
    raise AssertionError(f"restore jobs still open: {[(j.key, j.state) for j in jobs]}")


@dataclass
class Backend:
    """A vault and a hot store of one kind; `http_gets` lists the vault client's GetObject
    requests as sent over HTTP (S3 only)."""

    vault: Vault
    hot_url: str
    open_store: Callable[[str], HotStore]
    http_gets: list[str] | None = None


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        hot = tmp_path / "hot"
        hot.mkdir()
        return Backend(open_vault(str(tmp_path / "vault"), "GLACIER"), str(hot), open_hot_store)
    moto_server: str = request.getfixturevalue("moto_server")
    s3_client: Any = request.getfixturevalue("s3_client")
    hot, cold = request.getfixturevalue("bucket"), request.getfixturevalue("bucket")
    # Its own client, so the hook sees this vault's requests and nothing else.
    client = make_s3_client(endpoint_url=moto_server, max_attempts=2)
    http_gets: list[str] = []
    client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: http_gets.append(request.url.split("?")[0])
    )
    return Backend(
        open_vault(f"s3://{cold}/vault", "GLACIER", client_factory=lambda: client),
        f"s3://{hot}",
        lambda url: open_hot_store(url, client_factory=lambda: s3_client),
        http_gets,
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield catalog
    catalog.close()


def test_restoring_every_member_of_a_pack_gets_the_pack_once(backend: Backend, catalog: Catalog) -> None:
    files = originals("packed/img-", MEMBERS, seed=1)
    packed = archive(catalog, backend.hot_url, backend.vault, files, pack=True)
    vault = CountingVault(backend.vault)
    jobs = restore_originals(catalog, AssetReader(catalog, vault), backend.open_store, "packed/")
    assert len(jobs) == MEMBERS and {(j.mode, j.state) for j in jobs} == {("original", "done")}
    assert vault.gets == {packed: 1}
    if backend.http_gets is not None:
        (sent,) = backend.http_gets  # one HTTP request: no retry, no second download
        assert sent.endswith(f"/vault/{packed}")
    hot = backend.open_store(backend.hot_url)
    for key, data in files.items():
        assert hot.get(key) == data
    with catalog.begin() as session:
        assert {a.state for a in queries.list_assets(session, "packed/")} == {AssetState.RESTORED}


def test_cli_restore_of_a_whole_pack_sends_one_get_to_s3(
    env: Path,
    s3_client: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`archiver restore --prefix --original --wait` on GLACIER in moto: its request log shows one
    GET of the pack for the 40 members."""
    hot = bucket
    cold = f"{bucket}-cold"
    s3_client.create_bucket(Bucket=cold)
    vault_url = f"s3://{cold}/vault"
    files = originals("packed/img-", MEMBERS, seed=2)
    env.mkdir(parents=True)
    catalog = open_catalog(f"sqlite:///{env / 'catalog.db'}")
    try:
        packed = archive(catalog, f"s3://{hot}", open_vault(vault_url, "GLACIER"), files, pack=True)
    finally:
        catalog.close()
    caplog.set_level(logging.INFO, logger="werkzeug")  # the moto server's access log
    code, out, err = cli(
        capsys, "--vault", vault_url, "restore", "--prefix", "packed/", "--original", "--wait", "--json"
    )
    assert code == 0, err
    assert {j["state"] for j in json.loads(out)["jobs"]} == {"done"}
    requests = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    gets = [r for r in requests if f'"GET /{cold}/vault/{packed} ' in r]
    assert len(gets) == 1 and '" 200 ' in gets[0], gets
    for key, data in files.items():
        assert s3_client.get_object(Bucket=hot, Key=key)["Body"].read() == data


def test_threads_reading_one_pack_share_one_download(tmp_path: Path, catalog: Catalog) -> None:
    files = originals("packed/img-", 8, seed=3)
    real = open_vault(str(tmp_path / "vault"), "GLACIER")
    packed = archive(catalog, str(tmp_path / "hot"), real, files, pack=True)
    real.request_restore(packed, "Standard", 1)
    vault = CountingVault(real)
    vault.gate = threading.Event()
    reader = AssetReader(catalog, vault)
    with catalog.begin() as session:
        assets = [snapshot(a) for a in queries.list_assets(session, "packed/")]
    read: dict[str, bytes] = {}
    threads = [
        threading.Thread(target=lambda a=asset: read.__setitem__(a.key, reader.original(a)))
        for asset in assets
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # every thread asks while the first download is held at the gate
    vault.gate.set()
    for thread in threads:
        thread.join(30)
    assert read == files
    assert vault.gets == {packed: 1}


def test_a_failed_pack_download_is_not_kept(tmp_path: Path, catalog: Catalog) -> None:
    files = originals("packed/img-", 2, seed=4)
    real = open_vault(str(tmp_path / "vault"), "GLACIER")
    packed = archive(catalog, str(tmp_path / "hot"), real, files, pack=True)
    reader = AssetReader(catalog, real)
    with catalog.begin() as session:
        first = snapshot(queries.list_assets(session, "packed/")[0])
    with pytest.raises(NotRestored):
        reader.original(first)
    real.request_restore(packed, "Standard", 1)
    assert reader.original(first) == files[first.key]


def test_the_reader_keeps_at_most_packs_kept_and_never_keeps_singles(
    tmp_path: Path, catalog: Catalog
) -> None:
    real = open_vault(str(tmp_path / "vault"), "GLACIER_IR")  # readable without a restore
    packs = [
        archive(catalog, str(tmp_path / "hot"), real, originals(f"pack{n}/", 2, seed=10 + n), pack=True)
        for n in range(PACKS_KEPT + 1)
    ]
    single = archive(catalog, str(tmp_path / "hot"), real, originals("single/", 1, seed=5), pack=False)
    vault = CountingVault(real)
    reader = AssetReader(catalog, vault)
    with catalog.begin() as session:
        first = {p: snapshot(queries.list_assets(session, f"pack{n}/")[0]) for n, p in enumerate(packs)}
        second = {p: snapshot(queries.list_assets(session, f"pack{n}/")[1]) for n, p in enumerate(packs)}
        (alone,) = [snapshot(a) for a in queries.list_assets(session, "single/")]
    for key in packs:  # one more pack than is kept: the first one read goes
        reader.original(first[key])
    for key in packs[1:]:
        reader.original(second[key])
    assert vault.gets == dict.fromkeys(packs, 1)
    reader.original(second[packs[0]])
    assert vault.gets[packs[0]] == 2
    reader.original(alone)
    reader.original(alone)
    assert vault.gets[single] == 2


def test_at_most_packs_kept_downloads_run_at_once(tmp_path: Path, catalog: Catalog) -> None:
    real = open_vault(str(tmp_path / "vault"), "GLACIER_IR")
    count = PACKS_KEPT + 2
    for n in range(count):
        archive(catalog, str(tmp_path / "hot"), real, originals(f"pack{n}/", 1, seed=20 + n), pack=True)
    vault = CountingVault(real)
    vault.gate = threading.Event()
    reader = AssetReader(catalog, vault)
    with catalog.begin() as session:
        assets = [snapshot(queries.list_assets(session, f"pack{n}/")[0]) for n in range(count)]
    threads = [threading.Thread(target=reader.original, args=(asset,)) for asset in assets]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        assert vault.running == PACKS_KEPT  # the others wait for a download slot, holding no pack
    finally:
        vault.gate.set()
        for thread in threads:
            thread.join(30)
    assert vault.most_running == PACKS_KEPT and sum(vault.gets.values()) == count
