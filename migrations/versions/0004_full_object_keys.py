"""Keys are the objects' own names (invariant 6, issue 15): an S3 prefix selects, it does not re-root.

Before this revision a sweep of `s3://bucket/shoes` kept the source `s3://bucket/shoes` and keys
relative to it (`red.png` for the object `shoes/red.png`). Now an S3 source is its bucket and keys
are full object keys. For each source whose URL names a prefix, in id order: its keys get the
prefix in front, and the source becomes `s3://bucket`, or, when the bucket's source exists already
(swept at the root, or another prefix migrated before it), its assets move there. Where both hold
the new key, the one with a record or a vault copy stays and the other (never archived: still hot,
found again by the next sweep) goes with its events; two archived assets under one object's key
cannot both be right, so the upgrade stops and names them. Directory sources are unchanged.

`archiver.journal.rooted` reads journal entries written before this revision by the same rule, so a
catalog rebuilt from the vault agrees with an upgraded one. Schema unchanged; the downgrade leaves
the keys as they are (code of revision 0003 would read them under the old rule).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

sources = sa.table("sources", sa.column("id", sa.Integer), sa.column("url", sa.String))
assets = sa.table(
    "assets",
    sa.column("id", sa.Integer),
    sa.column("source_id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("vault_object_id", sa.Integer),
)
records = sa.table("records", sa.column("asset_id", sa.Integer))
events = sa.table("events", sa.column("asset_id", sa.Integer))


def _bucket_and_prefix(url: str) -> tuple[str, str] | None:
    if not url.startswith("s3://"):
        return None
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return (f"s3://{bucket}", prefix + "/") if prefix else None


def _kept(conn: sa.Connection, asset_id: int, vault_object_id: int | None) -> bool:
    """Whether an asset has a record or a vault copy (archived, restored, or on its way)."""
    if vault_object_id is not None:
        return True
    return (
        conn.execute(sa.select(records.c.asset_id).where(records.c.asset_id == asset_id)).first() is not None
    )


def _drop_asset(conn: sa.Connection, asset_id: int) -> None:
    conn.execute(events.delete().where(events.c.asset_id == asset_id))
    conn.execute(assets.delete().where(assets.c.id == asset_id))


def upgrade() -> None:
    conn = op.get_bind()
    by_url = {url: source_id for source_id, url in conn.execute(sa.select(sources.c.id, sources.c.url))}
    for url, source_id in sorted(by_url.items(), key=lambda item: item[1]):
        rooted = _bucket_and_prefix(url)
        if rooted is None:
            continue
        bucket_url, prefix = rooted
        target = by_url.get(bucket_url)
        rows = conn.execute(
            sa.select(assets.c.id, assets.c.key, assets.c.vault_object_id).where(
                assets.c.source_id == source_id
            )
        ).all()
        if target is None:  # the bucket's first source: renamed, keys rewritten in place
            conn.execute(sources.update().where(sources.c.id == source_id).values(url=bucket_url))
            for asset_id, key, _ in rows:
                conn.execute(assets.update().where(assets.c.id == asset_id).values(key=prefix + key))
            by_url[bucket_url] = source_id
            continue
        for asset_id, key, vault_object_id in rows:
            clash = conn.execute(
                sa.select(assets.c.id, assets.c.vault_object_id).where(
                    assets.c.source_id == target, assets.c.key == prefix + key
                )
            ).first()
            if clash is not None:
                theirs_kept = _kept(conn, clash[0], clash[1])
                ours_kept = _kept(conn, asset_id, vault_object_id)
                if theirs_kept and ours_kept:
                    raise RuntimeError(
                        f"{url} {key!r} and {bucket_url} {prefix + key!r} both have a record: the same "
                        "object archived twice; restore one of them with 0003's code, then upgrade again"
                    )
                if not ours_kept:
                    _drop_asset(conn, asset_id)
                    continue
                _drop_asset(conn, clash[0])
            conn.execute(
                assets.update().where(assets.c.id == asset_id).values(source_id=target, key=prefix + key)
            )
        conn.execute(sources.delete().where(sources.c.id == source_id))


def downgrade() -> None:
    """Keys stay full object keys: which prefix a sweep named is not kept anywhere."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # 0003's downgrade turns foreign keys off for its table rebuilds, and the pragma only takes
        # before the connection's first write: this revision's version bump comes first, so do it here.
        bind.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
