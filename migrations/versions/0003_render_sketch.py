"""Render sketches and device checks: records read on other hardware (issue 17).

`records.render_sketch` holds the accepted render's sketch (archiver/gate/sketch.py, 125 bytes): a
render whose bytes differ from `rendered_sha256` is served when its sketch is within the calibrated
tolerance. Records made before this revision have none; a reader computes it from their first
exact-matching render (or `archiver model check --backfill`).

`device_checks` keeps, per model and device fingerprint (device, dtype, library versions, CPU
capability), what rendering a sample of the model's records there gave: how many exact, within
tolerance and refused, and the lowest estimated PSNR. `archiver status` lists them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp(sqlite: bool) -> sa.types.TypeEngine[Any]:
    return sa.BigInteger() if sqlite else sa.DateTime(timezone=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # A nullable column added at the end: SQLite takes it without rebuilding the table.
    op.add_column("records", sa.Column("render_sketch", sa.LargeBinary(length=128), nullable=True))
    op.create_table(
        "device_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("device", sa.JSON(), nullable=False),
        sa.Column("checked_at", _timestamp(sqlite), nullable=False),
        sa.Column("sampled", sa.Integer(), nullable=False),
        sa.Column("exact", sa.Integer(), nullable=False),
        sa.Column("within", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("lowest_psnr", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_device_checks_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_checks")),
        sa.UniqueConstraint("model_id", "fingerprint", name=op.f("uq_device_checks_model_id")),
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Before any statement: the pragma only takes outside a transaction, and batch mode below
        # (and 0002's downgrade after it, in the same connection) rebuild tables others refer to.
        bind.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    op.drop_table("device_checks")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("render_sketch")
