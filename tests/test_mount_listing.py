"""The adapter's prebuilt listings (fusefs/adapter.py `Listings`) without mounting: every entry's
stat as readdirplus hands it to libfuse equals what getattr answers for that path, a served size
that changed is listed, and a catalog change starts over. Catalog rows come from
tests/support/fusetree.py's `add`; the real-mount behaviour is in tests/test_mount.py."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.fusetree import add

from archiver.catalog import queries
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.models import Asset, AssetState
from archiver.read.reader import Verified
from fusefs.tree import NoSuchPath, Tree

adapter = pytest.importorskip("fusefs.adapter", reason="mfusepy cannot load libfuse 3", exc_type=OSError)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield catalog  # type: ignore[misc]
    catalog.close()


def listed(listing: adapter.Listing) -> dict[str, dict[str, int]]:
    """Each listed name's stat, as the fields tree.stat() names."""
    out = {}
    for name, st in zip(listing.names, listing.stats, strict=True):
        out[name.decode()] = {
            "st_mode": st.st_mode,
            "st_nlink": st.st_nlink,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_size": st.st_size,
            "st_blocks": st.st_blocks,
            **{
                f"st_{which}time": getattr(st, f"st_{which}timespec").tv_sec * 1_000_000_000
                + getattr(st, f"st_{which}timespec").tv_nsec
                for which in "amc"
            },
        }
    return out


def test_every_listed_stat_is_what_getattr_answers_for_that_path(catalog: Catalog) -> None:
    add(catalog, "file:///hot", "shoes/red.png", size=1234)
    add(catalog, "file:///hot", "shoes/blue.jpg", size=99, when=datetime(2019, 1, 2, 3, 4, 5, 678901, UTC))
    add(catalog, "file:///hot", "shoes/kids/small.png", size=7)
    add(catalog, "file:///hot", "top.png", size=0)
    tree = Tree(catalog)
    listings = adapter.Listings(tree, {})
    for directory in ("/", "/shoes", "/shoes/kids"):
        entries = listed(listings.get(directory))
        assert list(entries) == [".", "..", *tree.readdir(directory)]
        for name, st in entries.items():
            if name in (".", ".."):  # libfuse takes their type only
                assert stat.S_ISDIR(st["st_mode"])
                continue
            expected = tree.stat(f"{directory.rstrip('/')}/{name}")
            assert {k: st[k] for k in expected} == expected, name
            assert st["st_blocks"] == (st["st_size"] + 511) // 512
    with pytest.raises(NoSuchPath):
        listings.get("/nope")
    with pytest.raises(NotADirectoryError):
        listings.get("/top.png")


def test_a_served_size_is_listed_once_forgotten_and_a_catalog_change_starts_over(catalog: Catalog) -> None:
    red = add(catalog, "file:///hot", "shoes/red.png", size=1234)
    add(catalog, "file:///hot", "shoes/blue.jpg")
    tree = Tree(catalog, refresh_seconds=0)
    served: dict[int, Verified] = {}
    listings = adapter.Listings(tree, served)
    first = listings.get("/shoes")
    assert listings.get("shoes/") is first  # built once per snapshot
    assert listed(first)["red.png"]["st_size"] == 1234

    served[red] = Verified("original", "00" * 32, 5000)  # the read policy served the original
    assert listings.get("/shoes") is first  # until the adapter learns it at that read
    listings.forget("/shoes")
    assert listed(listings.get("/shoes"))["red.png"]["st_size"] == 5000

    with catalog.begin() as session:  # the catalog changes: a new snapshot, new listings
        queries.set_state(session, session.get(Asset, red), AssetState.RESTORED)
    assert list(listed(listings.get("/shoes"))) == [".", "..", "blue.jpg"]


def test_listings_kept_are_bounded(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("a/1.png", "a/2.png", "b/1.png", "c/1.png"):
        add(catalog, "file:///hot", key)
    monkeypatch.setattr(adapter, "LISTING_CACHE_ENTRIES", 7)  # "." and ".." count too
    listings = adapter.Listings(Tree(catalog), {})
    a = listings.get("/a")  # 4 entries
    b = listings.get("/b")  # 3: 7 kept
    assert listings.get("/a") is a and listings.get("/b") is b
    listings.get("/c")  # 10 > 7: the oldest built (a) goes
    assert listings.get("/b") is b and listings.get("/a") is not a
