"""Migration 0004 (SQLite and PostgreSQL): keys of sources swept at an S3 prefix become full object
keys, the source becomes the bucket's, and a catalog rebuilt from an old journal names them alike.

The catalog is written through the catalog queries as the code before 0004 wrote it (the source
`s3://shop/shoes`, keys relative to the prefix), then taken to 0003 and upgraded."""

from __future__ import annotations

from datetime import UTC, datetime

from support.fusetree import add

from archiver.catalog import queries
from archiver.catalog.database import alembic_config, connect, open_catalog
from archiver.catalog.models import Asset, AssetState, Event, Source
from archiver.journal import Entry, rooted, tombstone
from fusefs.tree import Tree


def rejected(catalog: object, url: str, key: str) -> int:
    with catalog.begin() as session:  # type: ignore[attr-defined]
        source = queries.get_or_add_source(session, url)
        asset = queries.add_asset(
            session, source, key=key, size=1, etag=None, last_modified=datetime.now(UTC)
        )
        queries.set_state(session, asset, AssetState.REJECTED, reason="no-caption")
        return asset.id


def test_0004_roots_keys_at_the_bucket_and_merges_sources(catalog_url: str) -> None:
    from alembic import command

    catalog = open_catalog(catalog_url)
    dropped = rejected(catalog, "s3://shop", "shoes/red.png")  # swept at the root, rejected there
    red = add(catalog, "s3://shop/shoes", "red.png")  # ... then archived by a sweep of the prefix
    blue = add(catalog, "s3://shop/shoes/", "deep/blue.png")
    stale = rejected(catalog, "s3://shop/shoes/", "red.png")  # never archived: gives way to `red`
    other = add(catalog, "s3://cold/2019", "a.png")
    local = add(catalog, "file:///srv/hot", "x.png")
    catalog.close()
    with connect(catalog_url) as conn:
        command.downgrade(alembic_config(conn), "0003")
        command.upgrade(alembic_config(conn), "head")
    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        named = {a.id: (a.source.url, a.key) for a in session.query(Asset)}
        assert named == {
            red: ("s3://shop", "shoes/red.png"),
            blue: ("s3://shop", "shoes/deep/blue.png"),
            other: ("s3://cold", "2019/a.png"),
            local: ("file:///srv/hot", "x.png"),
        }
        assert sorted(s.url for s in session.query(Source)) == ["file:///srv/hot", "s3://cold", "s3://shop"]
        assert session.query(Event).filter(Event.asset_id.in_([dropped, stale])).count() == 0
    tree = Tree(catalog)  # the mount shows them at their keys
    assert tree.file("/shoes/red.png").asset_id == red and tree.readdir("/shoes/deep") == ["blue.png"]
    catalog.close()
    # A rebuild reads a journal written before 0004 by the same rule.
    old = Entry(tombstone("s3://shop/shoes", "deep/blue.png", "restored", "", datetime.now(UTC), "w"), "s", 0)
    assert old.ident == ("s3://shop", "shoes/deep/blue.png")
    assert rooted("s3://shop", "shoes/red.png") == ("s3://shop", "shoes/red.png")
    assert rooted("file:///srv/hot", "x.png") == ("file:///srv/hot", "x.png")
