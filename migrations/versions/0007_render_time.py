"""A device check records what a render costs there (issue 26).

`device_checks` gains `render_seconds` (the median wall time of the check's renders, each timed
alone), `render_steps` (the median denoising steps of the records it rendered) and `render_cores`
(the CPU threads a render held; NULL on a GPU). The cost model (`archiver.sweep.cost`) prices the
renders a month of CDN misses causes from them. Checks made before this revision have none: the
next `archiver model check` records them. Nullable columns added at the end: SQLite takes them
without rebuilding the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("render_seconds", "render_steps", "render_cores")


def upgrade() -> None:
    op.add_column("device_checks", sa.Column("render_seconds", sa.Double(), nullable=True))
    op.add_column("device_checks", sa.Column("render_steps", sa.Integer(), nullable=True))
    op.add_column("device_checks", sa.Column("render_cores", sa.Integer(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Before any statement, as 0003 does: the pragma only takes outside a transaction, and the
        # older revisions' downgrades after this one (same connection) rebuild tables others refer to.
        bind.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    with op.batch_alter_table("device_checks") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
