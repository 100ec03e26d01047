"""What a restore put hot, kept apart from the original's identity (issue 28, item 1).

`assets.size`, `etag` and `sha256` say what the original is, and what its vault copy is checked
against. A restore used to overwrite the size and ETag with the hot copy's, so after a rehydrated
restore a pack member's original was checked against the render's size and called damaged. Three
new columns hold what a restore put hot: `hot_sha256`, `hot_size`, `hot_etag`.

The upgrade fills them for restored assets from their last `restore-copied` event (its size,
SHA-256 and ETag are the hot copy's). Where that copy was a render (`verified` is not "original"),
the row's size and ETag were the render's: the ETag becomes NULL (the original's is not known any
more), and the size is the vault object's where the original is a single object holding exactly
those bytes. A pack member's original size is not in the catalog; the reader then takes it from
the pack's own manifest (`archiver.reader`), so its vault copy still reads as healthy.
The downgrade drops the columns (what was hot is forgotten; the originals' identity stays).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Codes as archiver.catalog.models had them at this revision (a migration never imports the models).
RESTORED = 7  # ASSET_STATES.index("restored") + 1
RESTORE_COPIED = 11  # EVENT_KINDS.index("restore-copied") + 1


def _fill_hot_copies(bind: Connection) -> None:
    assets = sa.table(
        "assets",
        sa.column("id", sa.Integer),
        sa.column("state", sa.SmallInteger),
        sa.column("size", sa.BigInteger),
        sa.column("etag", sa.String),
        sa.column("sha256", sa.LargeBinary),
        sa.column("vault_object_id", sa.Integer),
        sa.column("hot_sha256", sa.LargeBinary),
        sa.column("hot_size", sa.BigInteger),
        sa.column("hot_etag", sa.String),
    )
    events = sa.table(
        "events",
        sa.column("id", sa.BigInteger),
        sa.column("asset_id", sa.Integer),
        sa.column("kind", sa.SmallInteger),
        sa.column("detail", sa.JSON),
    )
    objects = sa.table(
        "vault_objects",
        sa.column("id", sa.Integer),
        sa.column("sha256", sa.String),
        sa.column("size", sa.BigInteger),
        sa.column("is_pack", sa.Boolean),
    )
    restored = bind.execute(
        sa.select(assets.c.id, assets.c.sha256, objects.c.sha256, objects.c.size, objects.c.is_pack)
        .select_from(assets.outerjoin(objects, objects.c.id == assets.c.vault_object_id))
        .where(assets.c.state == RESTORED)
    ).all()
    for asset_id, sha256, object_sha256, object_size, is_pack in restored:
        detail = bind.execute(
            sa.select(events.c.detail)
            .where(events.c.asset_id == asset_id, events.c.kind == RESTORE_COPIED)
            .order_by(events.c.id.desc())
            .limit(1)
        ).scalar()
        if not detail or "sha256" not in detail:
            continue
        values: dict[str, Any] = {
            "hot_sha256": bytes.fromhex(detail["sha256"]),
            "hot_size": detail.get("size"),
            "hot_etag": detail.get("etag"),
        }
        if detail.get("verified") != "original":  # the row took the render's size and ETag
            values["etag"] = None
            original = bytes(sha256).hex() if sha256 is not None else None
            if not is_pack and object_sha256 is not None and object_sha256 == original:
                values["size"] = object_size
        bind.execute(assets.update().where(assets.c.id == asset_id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("hot_sha256", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("hot_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("hot_etag", sa.String(200), nullable=True))
    _fill_hot_copies(op.get_bind())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Batch mode rebuilds `assets`, which other tables refer to: foreign keys off meanwhile
        # (the pragma takes only before the migration's first statement, as in 0005).
        bind.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("hot_etag")
        batch.drop_column("hot_size")
        batch.drop_column("hot_sha256")
