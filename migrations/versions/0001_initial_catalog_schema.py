"""Initial catalog schema: sources, models, encoding profiles, vault objects, assets, records,
restore jobs and the append-only event log.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encoding_profiles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encoding_profiles")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("pipeline_class", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", name=op.f("uq_models_name")),
        sa.UniqueConstraint("sha256", name=op.f("uq_models_sha256")),
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("url", name=op.f("uq_sources_url")),
    )
    op.create_table(
        "vault_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("storage_class", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=1024), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("is_pack", sa.Boolean(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_objects")),
        sa.UniqueConstraint("uri", name=op.f("uq_vault_objects_uri")),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "discovered",
                "candidate",
                "verified",
                "vaulted",
                "archived",
                "rejected",
                "restored",
                name="assetstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("reason_detail", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=200), nullable=True),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("vault_object_id", sa.Integer(), nullable=True),
        sa.Column("vault_offset", sa.BigInteger(), nullable=True),
        sa.Column("vault_length", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name=op.f("fk_assets_source_id_sources")),
        sa.ForeignKeyConstraint(
            ["vault_object_id"], ["vault_objects.id"], name=op.f("fk_assets_vault_object_id_vault_objects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("source_id", "key", name="uq_assets_source_id_key"),
    )
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assets_state"), ["state"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_events_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_at"), ["at"], unique=False)

    op.create_table(
        "records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("encoding_profile_id", sa.String(length=64), nullable=False),
        sa.Column("pipeline_class", sa.String(length=200), nullable=False),
        sa.Column("scheduler_class", sa.String(length=200), nullable=False),
        sa.Column("scheduler_config", sa.JSON(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("guidance_scale", sa.Double(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("eta", sa.Double(), nullable=False),
        sa.Column("rng", sa.String(length=16), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("rendered_sha256", sa.String(length=64), nullable=False),
        sa.Column("rendered_size", sa.BigInteger(), nullable=False),
        sa.Column("gate_report", sa.JSON(), nullable=False),
        sa.Column("software", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_records_asset_id_assets")),
        sa.ForeignKeyConstraint(
            ["encoding_profile_id"],
            ["encoding_profiles.id"],
            name=op.f("fk_records_encoding_profile_id_encoding_profiles"),
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_records_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("asset_id", name=op.f("uq_records_asset_id")),
    )
    op.create_table(
        "restore_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("rehydrate", "original", name="restoremode", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "requested",
                "in_progress",
                "available",
                "copied",
                "done",
                "failed",
                name="restorejobstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_restore_jobs_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_jobs")),
    )
    with op.batch_alter_table("restore_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_restore_jobs_asset_id"), ["asset_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("restore_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restore_jobs_asset_id"))

    op.drop_table("restore_jobs")
    op.drop_table("records")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_at"))
        batch_op.drop_index(batch_op.f("ix_events_asset_id"))

    op.drop_table("events")
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assets_state"))

    op.drop_table("assets")
    op.drop_table("vault_objects")
    op.drop_table("sources")
    op.drop_table("models")
    op.drop_table("encoding_profiles")
