"""The storage contract, run against every backend: what callers may rely on whichever they hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import NoSuchObject, NotRestored, ObjectChanged, UnsafeKey
from archiver.storage import (
    HotStore,
    LocalHotStore,
    LocalVault,
    RestoreStatus,
    S3HotStore,
    S3Vault,
    Vault,
)
from archiver.storage.base import sha256_hex

BACKENDS = ["local", pytest.param("s3", marks=pytest.mark.s3)]
UNSAFE = ["../x", "/etc/passwd", "a/../../b", "a\x00b", "a\nb", "a\\b", ""]


@pytest.fixture(params=BACKENDS)
def make_hot(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], HotStore]:
    if request.param == "local":
        return lambda: LocalHotStore(tmp_path)
    client = request.getfixturevalue("s3_client")
    name = request.getfixturevalue("bucket")
    return lambda: S3HotStore(name, "hot", client)


@pytest.fixture(params=BACKENDS)
def make_vault(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Vault]:
    if request.param == "local":
        return lambda storage_class: LocalVault(tmp_path / "vault", storage_class)
    client = request.getfixturevalue("s3_client")
    name = request.getfixturevalue("bucket")
    return lambda storage_class: S3Vault(name, "vault", storage_class, client)


def test_put_head_get(make_hot: Callable[[], HotStore]) -> None:
    store = make_hot()
    info = store.put("shoes/red.jpg", b"red")
    assert (info.key, info.size) == ("shoes/red.jpg", 3)
    assert info.etag and info.last_modified.utcoffset() is not None
    head = store.head("shoes/red.jpg")
    assert (head.size, head.etag) == (3, info.etag)
    assert store.get("shoes/red.jpg") == b"red"
    with pytest.raises(NoSuchObject):
        store.head("shoes/blue.jpg")
    with pytest.raises(NoSuchObject):
        store.get("shoes/blue.jpg")


def test_overwrite_changes_the_change_token(make_hot: Callable[[], HotStore]) -> None:
    store = make_hot()
    first = store.put("k", b"one")
    second = store.put("k", b"two!")
    assert first.etag != second.etag
    assert store.get("k") == b"two!"


def test_list_order_and_prefix(make_hot: Callable[[], HotStore]) -> None:
    store = make_hot()
    for key in ["a/b", "a-b", "a/c/d", "b", "a0", "é.jpg"]:
        store.put(key, key.encode())
    listed = list(store.list())
    assert [o.key for o in listed] == ["a-b", "a/b", "a/c/d", "a0", "b", "é.jpg"]
    assert {o.key: o.size for o in listed}["é.jpg"] == len("é.jpg".encode())
    assert all(o.last_modified.utcoffset() is not None for o in listed)
    assert [o.key for o in store.list("a/")] == ["a/b", "a/c/d"]
    assert [o.key for o in store.list("a")] == ["a-b", "a/b", "a/c/d", "a0"]
    assert list(store.list("nothing/")) == []


def test_delete_if_unchanged(make_hot: Callable[[], HotStore]) -> None:
    store = make_hot()
    verified = store.put("img.jpg", b"original")
    store.delete_if_unchanged("img.jpg", verified)
    with pytest.raises(NoSuchObject):
        store.head("img.jpg")

    verified = store.put("img.jpg", b"original")
    store.put("img.jpg", b"changed")
    with pytest.raises(ObjectChanged):
        store.delete_if_unchanged("img.jpg", verified)
    assert store.get("img.jpg") == b"changed"


@pytest.mark.parametrize("key", UNSAFE, ids=repr)
def test_unsafe_keys_are_refused(make_hot: Callable[[], HotStore], key: str) -> None:
    store = make_hot()
    calls: list[Callable[[], Any]] = [
        lambda: store.head(key),
        lambda: store.get(key),
        lambda: store.put(key, b"x"),
    ]
    for call in calls:
        with pytest.raises(UnsafeKey):
            call()


@pytest.mark.parametrize("key", UNSAFE, ids=repr)
def test_vault_refuses_unsafe_keys(make_vault: Callable[[str], Vault], key: str) -> None:
    vault = make_vault("GLACIER")
    calls: list[Callable[[], Any]] = [
        lambda: vault.put(key, b"x"),
        lambda: vault.get(key),
        lambda: vault.head(key),
        lambda: vault.restore_state(key),
        lambda: vault.request_restore(key, "Bulk", 1),
        lambda: vault.delete(key),
    ]
    for call in calls:
        with pytest.raises(UnsafeKey):
            call()


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_vault_archive_semantics(make_vault: Callable[[str], Vault], storage_class: str) -> None:
    vault = make_vault(storage_class)
    data = b"original image bytes"
    copy = vault.put("a/k.png", data)
    assert (copy.key, copy.storage_class, copy.sha256, copy.size) == (
        "a/k.png",
        storage_class,
        sha256_hex(data),
        20,
    )
    head = vault.head("a/k.png")
    assert (head.storage_class, head.sha256, head.size) == (storage_class, copy.sha256, 20)

    assert vault.restore_state("a/k.png").status is RestoreStatus.ARCHIVED
    with pytest.raises(NotRestored):
        vault.get("a/k.png")
    # Both backends complete restores at once here (moto by default, the local vault with no delay).
    state = vault.request_restore("a/k.png", "Bulk", 1)
    assert state.status is RestoreStatus.AVAILABLE and state.expiry is not None
    assert vault.request_restore("a/k.png", "Bulk", 2).status is RestoreStatus.AVAILABLE
    assert vault.get("a/k.png") == data

    vault.delete("a/k.png")
    vault.delete("a/k.png")
    with pytest.raises(NoSuchObject):
        vault.head("a/k.png")
    with pytest.raises(NoSuchObject):
        vault.get("a/k.png")


def test_vault_instant_retrieval_reads_without_restore(make_vault: Callable[[str], Vault]) -> None:
    vault = make_vault("GLACIER_IR")
    vault.put("k", b"ir")
    assert vault.restore_state("k").status is RestoreStatus.NOT_ARCHIVED
    assert vault.request_restore("k", "Standard", 1).status is RestoreStatus.NOT_ARCHIVED
    assert vault.get("k") == b"ir"


def test_vault_objects_name_what_they_hold_and_list(make_vault: Callable[[str], Vault]) -> None:
    """Object metadata comes back from head; `storage_class` overrides the vault's own (the journal's
    class reads without a restore); list gives every object under a prefix, in key order."""
    from archiver.storage.vault_format import object_metadata, original_key, read_object_metadata

    vault = make_vault("GLACIER")
    digest = sha256_hex(b"red")
    meta = object_metadata("s3://shop/cold", "shoes/rot über.png", digest)
    assert all(value.isascii() for value in meta.values())
    vault.put(original_key(digest), b"red", metadata=meta)
    head = vault.head(original_key(digest))
    assert head.storage_class == "GLACIER"
    assert read_object_metadata(head.metadata) == ("s3://shop/cold", "shoes/rot über.png", digest)
    copy = vault.put("journal/x.zst", b"journal", storage_class="STANDARD")
    assert copy.storage_class == "STANDARD" and vault.get("journal/x.zst") == b"journal"
    assert vault.head("journal/x.zst").metadata is None
    assert [o.key for o in vault.list()] == ["journal/x.zst", original_key(digest)]
    assert [(o.key, o.size) for o in vault.list("orig")] == [(original_key(digest), 3)]
