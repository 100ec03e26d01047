"""fusefs without mounting: the tree model over a real SQLite catalog, the on-disk cache,
single-flight, and the read policy over a real local vault. Catalog rows are inserted with the
catalog queries (the mount tests use a real sweep and real renders).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from support.fusetree import WHEN, ScriptedReader, add, archived_with_vault_copy

from archiver.cache import DiskCache, SingleFlight
from archiver.catalog import queries
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.models import AssetState, RestoreMode, Source
from archiver.errors import IntegrityError, ModelError
from archiver.read.policy import ReadPolicy, Remote, StillRendering, VaultFailed
from archiver.read.reader import ArchivedAsset
from archiver.storage import open_vault
from fusefs.tree import NoSuchPath, Tree, build_index


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield catalog  # type: ignore[misc]
    catalog.close()


def test_one_source_puts_its_keys_at_the_root_and_shows_only_archived_assets(catalog: Catalog) -> None:
    add(catalog, "file:///hot", "shoes/red.png", size=1234)
    add(catalog, "file:///hot", "shoes/blue.jpg")
    add(catalog, "file:///hot", "top.png")
    add(catalog, "file:///hot", "shoes/pending.png", state=AssetState.VERIFIED)
    add(catalog, "file:///hot", "rejected/x.png", state=AssetState.REJECTED)
    tree = Tree(catalog)
    assert tree.readdir("/") == ["shoes", "top.png"]
    assert tree.readdir("/shoes") == ["blue.jpg", "red.png"]
    st = tree.stat("/shoes/red.png")
    assert st["st_mode"] == stat.S_IFREG | 0o444 and st["st_size"] == 1234
    assert st["st_mtime"] == int(WHEN.timestamp() * 1e9)
    assert tree.stat("/shoes")["st_mode"] == stat.S_IFDIR | 0o555
    assert tree.stat("/")["st_mtime"] == st["st_mtime"]  # directories carry their newest file's time
    assert tree.file("shoes/red.png").key == "shoes/red.png"
    for missing in ("/shoes/pending.png", "/rejected", "/nope", "/shoes/red.png/x"):
        with pytest.raises(NoSuchPath):
            tree.stat(missing)
    with pytest.raises(IsADirectoryError):
        tree.file("/shoes")
    with pytest.raises(NotADirectoryError):
        tree.readdir("/top.png")


def test_paths_are_keys_and_do_not_move_when_another_source_is_swept(catalog: Catalog) -> None:
    """Invariant 6: a file's path is its key, before and after a second source appears, and a
    source whose every image was rejected changes nothing."""
    first = add(catalog, "s3://shop", "shoes/red.png")
    tree = Tree(catalog)
    before = (tree.file("/shoes/red.png").asset_id, tree.readdir("/"), tree.readdir("/shoes"))
    add(catalog, "file:///srv/rejected", "shoes/blue.png", state=AssetState.REJECTED)
    add(catalog, "file:///srv/other", "shoes/red.png")  # the same key in a newer source
    add(catalog, "file:///srv/other", "shoes/green.png")
    tree.refresh()
    assert tree.file("/shoes/red.png").asset_id == first == before[0]  # the oldest source's
    assert tree.readdir("/") == before[1] == ["shoes"]
    assert tree.readdir("/shoes") == ["green.png", "red.png"] and tree.index().shadowed == 1
    with catalog.begin() as session:
        other = next(s.id for s in session.query(Source) if s.url == "file:///srv/other")
    alone = Tree(catalog, source_id=other)  # `archiver mount --source file:///srv/other`
    assert alone.file("/shoes/red.png").asset_id != first
    assert alone.readdir("/shoes") == ["green.png", "red.png"]
    assert alone.xattrs("/shoes/red.png")["user.archiver.source"] == b"file:///srv/other"


def test_keys_that_cannot_be_paths_are_skipped_and_counted(catalog: Catalog) -> None:
    add(catalog, "file:///hot", "a")  # a file named a ...
    add(catalog, "file:///hot", "a/b.png")  # ... so a/ cannot be a directory
    add(catalog, "file:///hot", "x//y.png")
    add(catalog, "file:///hot", "../escape.png")
    add(catalog, "file:///hot", "n" * 256 + ".png")
    add(catalog, "file:///hot", "ok.png")
    tree = Tree(catalog)
    assert tree.readdir("/") == ["a", "ok.png"] and tree.index().skipped == 4


def test_paging_and_a_hundred_thousand_entries_without_per_entry_work() -> None:
    rows = [queries.ArchivedEntry(i, 1, f"big/{i:06d}.png", 10, WHEN, "ef" * 32) for i in range(100_000)]
    started = time.perf_counter()
    index = build_index(rows, ())
    built = time.perf_counter() - started
    assert len(index.dirs["/big"].names) == 100_000 and built < 30  # generous: a shared 2-core box
    names = index.dirs["/big"].names
    assert names[:2] == ["000000.png", "000001.png"] and names == sorted(names)


def test_readdir_pages(catalog: Catalog) -> None:
    for i in range(10):
        add(catalog, "file:///hot", f"d/{i}.png")
    tree = Tree(catalog)
    assert tree.readdir("/d", 0, 4) == ["0.png", "1.png", "2.png", "3.png"]
    assert tree.readdir("/d", 8, 4) == ["8.png", "9.png"]
    assert [len(p) for p in tree.pages("/d", size=4)] == [4, 4, 2]


def test_the_index_is_refreshed_after_its_ttl_and_only_when_the_catalog_changed(catalog: Catalog) -> None:
    now = [0.0]
    add(catalog, "file:///hot", "one.png")
    tree = Tree(catalog, refresh_seconds=30, clock=lambda: now[0])
    assert tree.readdir("/") == ["one.png"]
    add(catalog, "file:///hot", "two.png")
    now[0] = 10
    assert tree.readdir("/") == ["one.png"]  # within the TTL: the snapshot
    now[0] = 31
    assert tree.readdir("/") == ["one.png", "two.png"]
    assert tree.refresh() is False  # nothing changed since: no reload
    assert tree.refresh(force=True) is True


def test_xattrs_say_where_a_file_comes_from(catalog: Catalog) -> None:
    add(catalog, "file:///hot", "shoes/red.png")
    tree = Tree(catalog)
    values = tree.xattrs("/shoes/red.png")
    assert values["user.archiver.state"] == b"archived"
    assert values["user.archiver.key"] == b"shoes/red.png"  # the file's path, and what `show` takes
    assert values["user.archiver.source"] == b"file:///hot"
    assert values["user.archiver.prompt"] == b"a photo of shoes/red.png"
    assert values["user.archiver.seed"] == b"7" and values["user.archiver.lpips"] == b"0.0125"
    assert values["user.archiver.model"] == b"tiny sha256:" + b"ab" * 32
    assert values["user.archiver.original_sha256"] == hashlib.sha256(b"shoes/red.png").hexdigest().encode()
    assert values["user.archiver.original_size"] == b"1001"
    assert values["user.archiver.served_sha256"] == b"ef" * 32  # the record's render, until a read
    assert values["user.archiver.served_size"] == b"1000"
    assert "user.archiver.sha256" not in values  # one name for each hash: which one was never clear
    assert sorted(tree.xattr_names("/shoes/red.png")) == sorted(values)
    assert tree.xattr_names("/shoes") == []


# --- the cache ---


def entry(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


def test_cache_round_trip_survives_a_restart_and_drops_damaged_entries(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", max_bytes=1000)
    sha, data = entry(b"x" * 100)
    assert cache.get(sha) is None and cache.put(sha, data)
    assert cache.get(sha) == data
    (tmp_path / "c" / "tmp" / "half-written").write_bytes(b"junk")  # a crash mid-write
    again = DiskCache(tmp_path / "c", max_bytes=1000)
    assert again.get(sha) == data and again.total == 100
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
    (tmp_path / "c" / sha[:2] / sha).write_bytes(b"y" * 100)  # bit rot, or someone editing it
    assert again.get(sha) is None and again.total == 0 and not (tmp_path / "c" / sha[:2] / sha).exists()


def test_cache_evicts_the_least_recently_used_within_its_size_limit(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", max_bytes=250)
    a, b, c = (entry(bytes([n]) * 100) for n in range(3))
    cache.put(*a)
    time.sleep(0.01)
    cache.put(*b)
    time.sleep(0.01)
    assert cache.get(a[0]) == a[1]  # a is now the most recent
    cache.put(*c)
    assert cache.get(b[0]) is None and cache.get(a[0]) == a[1] and cache.total == 200
    assert not cache.put(*entry(b"z" * 300))  # bigger than the whole cache: served, not stored
    # the LRU order survives a restart, and a lowered limit is applied at once
    smaller = DiskCache(tmp_path / "c", max_bytes=150)
    assert smaller.total == 100 and smaller.size_of(c[0]) is None and smaller.size_of(a[0]) == 100


def test_cache_keeps_its_free_space_floor(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    cache = DiskCache(tmp_path / "c", max_bytes=10**6, min_free=free + 10**12)
    assert not cache.put(*entry(b"x" * 10)) and cache.total == 0


def test_single_flight_runs_the_work_once_for_many_callers() -> None:
    flight: SingleFlight[bytes] = SingleFlight(workers=2)
    calls, release = [], threading.Event()

    def work() -> bytes:
        calls.append(1)
        release.wait(10)
        return b"rendered"

    futures = []
    threads = [threading.Thread(target=lambda: futures.append(flight.run("k", work))) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    release.set()
    assert {f.result(10) for f in futures} == {b"rendered"} and len(calls) == 1
    assert flight.run("k", work).result(10) == b"rendered" and len(calls) == 2  # done: a new flight
    flight.shutdown()


# --- the read policy (archiver/read/policy.py): a real catalog and local vault; the render is scripted ---


def restore_jobs(catalog: Catalog) -> list[tuple[RestoreMode, str | None]]:
    with catalog.begin() as session:
        return [(job.mode, job.tier) for job in queries.restore_jobs(session)]


def test_a_failed_render_answers_eremote_and_files_one_restore_then_serves_the_restored_original(
    catalog: Catalog, tmp_path: Path
) -> None:
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")
    entry = archived_with_vault_copy(catalog, vault, b"the original")
    calls: list[int] = []

    def drifted(asset: ArchivedAsset) -> bytes:
        calls.append(1)
        raise IntegrityError("rehydrating gave other bytes")

    server = ReadPolicy(catalog, ScriptedReader(catalog, vault, drifted), DiskCache(tmp_path / "c", 10**6))
    for _ in range(2):
        with pytest.raises(Remote) as failed:  # the mount answers EREMOTE
            server.read(entry)
    assert len(calls) == 1  # within retry_render_after the second open goes straight to the vault
    assert restore_jobs(catalog) == [(RestoreMode.ORIGINAL, "Standard")]  # filed once, then reused
    line = str(failed.value)  # the mount logs it with EREMOTE
    assert "shoes/red.png" in line and "IntegrityError" in line and "restore requested" in line
    vault.request_restore("originals/red.png", "Standard", 1)
    served = server.read(entry)
    assert served.data == b"the original" and served.served_from == "original"
    assert server.served_size(entry) == len(b"the original")


def test_a_damaged_vault_copy_answers_eio_and_nothing_unverified_is_served(
    catalog: Catalog, tmp_path: Path
) -> None:
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")
    entry = archived_with_vault_copy(catalog, vault, b"the original")
    vault.request_restore("originals/red.png", "Standard", 1)
    (tmp_path / "vault" / "originals" / "red.png").write_bytes(b"bit rot")

    def wrong(asset: ArchivedAsset) -> bytes:
        raise ModelError("model 'tiny' changed on disk")

    server = ReadPolicy(catalog, ScriptedReader(catalog, vault, wrong), DiskCache(tmp_path / "c", 10**6))
    with pytest.raises(VaultFailed):  # the mount answers EIO
        server.read(entry)
    assert restore_jobs(catalog) == []


def test_a_slow_render_answers_etimedout_and_the_next_open_gets_its_bytes(
    catalog: Catalog, tmp_path: Path
) -> None:
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")
    entry = archived_with_vault_copy(catalog, vault, b"the original")
    go = threading.Event()

    def slow(asset: ArchivedAsset) -> bytes:
        go.wait(10)
        return b"rendered"  # the record's rendered_sha256

    cache = DiskCache(tmp_path / "c", 10**6)
    server = ReadPolicy(catalog, ScriptedReader(catalog, vault, slow), cache, read_timeout=0.2)
    with pytest.raises(StillRendering):  # the mount answers ETIMEDOUT
        server.read(entry)
    go.set()
    deadline = time.monotonic() + 10
    while cache.size_of(entry.rendered_sha256) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    served = server.read(entry)
    assert (served.data, served.served_from, served.verified.mode) == (b"rendered", "rehydrated", "exact")
    assert server.renders[entry.asset_id] == 1
    server.shutdown()
