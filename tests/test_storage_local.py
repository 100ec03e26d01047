"""Local backends and the key rules: what only a directory can get wrong (escapes, atomicity) and
the emulated Glacier vault's restore timing."""

from __future__ import annotations

import os
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.errors import (
    ChecksumMismatch,
    NoSuchBucket,
    NoSuchObject,
    NotRestored,
    ObjectChanged,
    StorageError,
    UnsafeKey,
)
from archiver.storage import LocalHotStore, LocalVault, RestoreStatus, safe_key
from archiver.storage.base import confirm_checksum, sha256_hex
from archiver.storage.local import META_DIR, TEMP_PREFIX

UNSAFE_KEYS = [
    "",
    "../x",
    "/etc/passwd",
    "a/../../b",
    "a/./b",
    ".",
    "..",
    "a//b",
    "a/",
    "a\\b",
    "a\x00b",
    "a\nb",
    "a\tb",
    "a\u200bb",  # zero-width space (Cf)
    "a\u2028b",  # line separator
    unicodedata.normalize("NFD", "café.jpg"),
    "k" * 1025,
]


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# --- safe_key ---


@pytest.mark.parametrize("key", ["a", "a/b.jpg", "shoes/red lace/1.png", "café.jpg", "..a/b..", ".hidden/x"])
def test_safe_key_accepts_ordinary_keys(key: str) -> None:
    assert safe_key(key) == key


@pytest.mark.parametrize("key", UNSAFE_KEYS, ids=repr)
def test_safe_key_rejects_with_one_line(key: str) -> None:
    with pytest.raises(UnsafeKey) as info:
        safe_key(key)
    assert "\n" not in str(info.value)


def test_confirm_checksum_compares_and_refuses_missing() -> None:
    digest = sha256_hex(b"abc")
    confirm_checksum(digest, digest.upper(), uri="x")
    with pytest.raises(ChecksumMismatch, match="differs"):
        confirm_checksum(digest, sha256_hex(b"abd"), uri="x")
    with pytest.raises(ChecksumMismatch, match="no SHA-256"):
        confirm_checksum(digest, None, uri="x")


# --- LocalHotStore ---


def test_missing_root_is_no_such_bucket(tmp_path: Path) -> None:
    with pytest.raises(NoSuchBucket, match="does not exist"):
        LocalHotStore(tmp_path / "nope")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a\x00b", "a\nb"], ids=repr)
def test_unsafe_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    store = LocalHotStore(root)
    for call in (store.head, store.get, lambda k: store.put(k, b"x")):
        with pytest.raises(UnsafeKey):
            call(key)
    assert all_files(tmp_path) == []


def test_symlinks_out_of_root_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "secret.jpg").symlink_to(outside / "secret")
    (root / "real.jpg").write_bytes(b"real")
    store = LocalHotStore(root)

    for key in ("out/secret", "secret.jpg"):
        with pytest.raises(UnsafeKey):
            store.get(key)
        with pytest.raises(UnsafeKey):
            store.head(key)
    with pytest.raises(UnsafeKey):
        store.put("out/new", b"x")
    with pytest.raises(UnsafeKey):
        store.delete_if_unchanged("secret.jpg", store.head("real.jpg"))
    assert [o.key for o in store.list()] == ["real.jpg"]  # links are not objects
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_symlink_inside_root_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"a")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    store = LocalHotStore(tmp_path)
    with pytest.raises(UnsafeKey, match="symbolic link"):
        store.get("b.jpg")


def test_atomic_put_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalHotStore(tmp_path)
    first = store.put("a/b/c.jpg", b"one")
    second = store.put("a/b/c.jpg", b"two")
    assert store.get("a/b/c.jpg") == b"two"
    assert first.etag != second.etag
    with pytest.raises(TypeError):
        store.put("a/b/d.jpg", "not bytes")  # type: ignore[arg-type]  # fails mid-write
    assert all_files(tmp_path) == ["a/b/c.jpg"]


def test_list_is_in_s3_key_order_and_skips_our_temp_files(tmp_path: Path) -> None:
    store = LocalHotStore(tmp_path)
    for key in ["a/b", "a-b", "a/c/d", "b", "a0"]:
        store.put(key, b"x")
    (tmp_path / "a" / f"{TEMP_PREFIX}123").write_bytes(b"half written")
    (tmp_path / unicodedata.normalize("NFD", "é.jpg")).write_bytes(b"written by another tool")
    keys = [o.key for o in store.list()]
    assert keys == sorted(keys) == ["a-b", "a/b", "a/c/d", "a0", "b"]
    assert [o.key for o in store.list("a/")] == ["a/b", "a/c/d"]
    assert [o.key for o in store.list("a/c")] == ["a/c/d"]
    assert [o.key for o in store.list("zzz/")] == []
    with pytest.raises(UnsafeKey):
        list(store.list("../"))


def test_every_entry_a_listing_leaves_out_is_reported_with_its_reason(tmp_path: Path) -> None:
    """Nothing is left out in silence: links, sockets and names no key can spell each get a reason;
    only our own temp files are not mentioned."""
    import os
    import socket

    store = LocalHotStore(tmp_path)
    store.put("shoes/a.jpg", b"a")
    (tmp_path / "shoes" / "link.jpg").symlink_to(tmp_path / "shoes" / "a.jpg")
    (tmp_path / "linked-dir").symlink_to(tmp_path / "shoes", target_is_directory=True)
    nfd = unicodedata.normalize("NFD", "café.jpg")
    (tmp_path / "shoes" / nfd).write_bytes(b"written by another tool")
    (tmp_path / "shoes" / "two\nlines.jpg").write_bytes(b"x")
    os.mkfifo(tmp_path / "shoes" / "pipe.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "shoes" / "sock"))
    (tmp_path / "shoes" / f"{TEMP_PREFIX}1").write_bytes(b"ours, half written")
    skipped: list[tuple[str, str]] = []
    keys = [o.key for o in store.list(on_skip=lambda key, reason: skipped.append((key, reason)))]
    assert keys == ["shoes/a.jpg"]
    assert sorted(skipped) == sorted(
        [
            ("linked-dir", "symlink"),
            ("shoes/link.jpg", "symlink"),
            ("shoes/pipe.jpg", "not-a-file"),
            ("shoes/sock", "not-a-file"),
            (f"shoes/{nfd}", "unsafe-key"),
            ("shoes/two\nlines.jpg", "unsafe-key"),
        ]
    )
    skipped.clear()
    assert [o.key for o in store.list("shoes/p", on_skip=lambda k, r: skipped.append((k, r)))] == []
    assert skipped == [("shoes/pipe.jpg", "not-a-file")]


def test_delete_if_unchanged(tmp_path: Path) -> None:
    store = LocalHotStore(tmp_path)
    verified = store.put("img.jpg", b"original")
    os.utime(tmp_path / "img.jpg", ns=(1, 1))  # same size, new mtime: an in-place edit
    with pytest.raises(ObjectChanged, match="not deleted"):
        store.delete_if_unchanged("img.jpg", verified)
    store.put("img.jpg", b"replaced")  # atomic replace: a new inode
    with pytest.raises(ObjectChanged):
        store.delete_if_unchanged("img.jpg", verified)
    assert store.get("img.jpg") == b"replaced"
    assert all_files(tmp_path) == ["img.jpg"]

    store.delete_if_unchanged("img.jpg", store.head("img.jpg"))
    assert all_files(tmp_path) == []
    with pytest.raises(NoSuchObject):
        store.delete_if_unchanged("img.jpg", verified)


# --- LocalVault ---


def test_local_vault_restore_with_delay(tmp_path: Path) -> None:
    clock = Clock()
    vault = LocalVault(tmp_path, "GLACIER", restore_delay=timedelta(hours=4), clock=clock)
    copy = vault.put("k.jpg", b"bytes")
    assert copy.sha256 == sha256_hex(b"bytes") and copy.uri == (tmp_path / "k.jpg").as_uri()
    assert vault.restore_state("k.jpg").status is RestoreStatus.ARCHIVED
    with pytest.raises(NotRestored, match="request a restore"):
        vault.get("k.jpg")

    assert vault.request_restore("k.jpg", "Standard", 2).status is RestoreStatus.IN_PROGRESS
    clock.now += timedelta(hours=3)
    assert vault.request_restore("k.jpg", "Bulk", 2).status is RestoreStatus.IN_PROGRESS  # not an error
    with pytest.raises(NotRestored, match="in progress"):
        vault.get("k.jpg")

    clock.now += timedelta(hours=1)
    state = vault.restore_state("k.jpg")
    assert state.status is RestoreStatus.AVAILABLE
    assert state.expiry == datetime(2025, 1, 3, 4, tzinfo=UTC)
    assert vault.get("k.jpg") == b"bytes"
    again = vault.request_restore("k.jpg", "Standard", 5)  # extends the restored copy's life
    assert again.status is RestoreStatus.AVAILABLE and again.expiry == clock.now + timedelta(days=5)

    clock.now += timedelta(days=6)
    assert vault.restore_state("k.jpg").status is RestoreStatus.ARCHIVED  # the copy expired


def test_local_vault_detects_corruption_and_half_written_objects(tmp_path: Path) -> None:
    vault = LocalVault(tmp_path, "GLACIER_IR")
    vault.put("k", b"bytes")
    (tmp_path / "k").write_bytes(b"bytez")
    with pytest.raises(ChecksumMismatch):
        vault.get("k")
    (tmp_path / "half").write_bytes(b"data without sidecar: a crash before the sidecar was written")
    with pytest.raises(NoSuchObject):
        vault.head("half")
    with pytest.raises(UnsafeKey, match="reserved"):
        vault.put(f"{META_DIR}/k.json", b"{}")


def test_key_that_is_also_a_folder_locally_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalHotStore(tmp_path)
    store.put("a", b"file")
    with pytest.raises(StorageError, match="in the way") as info:
        store.put("a/b", b"x")
    assert type(info.value) is StorageError
