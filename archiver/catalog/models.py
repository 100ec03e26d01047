"""The catalog's tables as SQLAlchemy 2.x typed models.

Owns the schema only: what each row means and how tables relate. Queries live in
`archiver.catalog.queries`; schema changes go through an Alembic migration in migrations/ (a test
checks that models and migrations agree on SQLite and PostgreSQL).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints from the first migration on, so later migrations (and SQLite batch mode,
# which rebuilds tables) can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigIntPK = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend (SQLite itself keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog: use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class AssetState(enum.StrEnum):
    """Where an asset stands in the sweep's state machine (see docs/architecture.md)."""

    DISCOVERED = "discovered"  # listed in a source, not yet examined
    CANDIDATE = "candidate"  # passed the coldness filters
    VERIFIED = "verified"  # record + gate report committed; the hot copy is still authoritative
    VAULTED = "vaulted"  # the vault copy is confirmed by its checksum read back
    ARCHIVED = "archived"  # hot copy deleted: served by rehydration, vault as fallback
    REJECTED = "rejected"  # stays hot; `reason` says why
    RESTORED = "restored"  # brought back to the hot location by a restore job


class RestoreMode(enum.StrEnum):
    REHYDRATE = "rehydrate"
    ORIGINAL = "original"


class RestoreJobState(enum.StrEnum):
    REQUESTED = "requested"
    IN_PROGRESS = "in_progress"
    AVAILABLE = "available"
    COPIED = "copied"
    DONE = "done"
    FAILED = "failed"


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as plain strings (no native ENUM type, no CHECK): adding a state is a code change,
    # not a table rebuild; SQLAlchemy still refuses unknown values on the Python side.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class Source(Base):
    """A hot location that sweeps walk: a local directory or s3://bucket/prefix."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """A registered diffusers pipeline, identified by the SHA-256 over all of its files."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(4096))
    pipeline_class: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EncodingProfile(Base):
    """How originals were encoded (format, JPEG tables, ICC, EXIF template), shared by many assets.

    Content-addressed: `id` is the SHA-256 of the canonical JSON in `body`.
    """

    __tablename__ = "encoding_profiles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    format: Mapped[str] = mapped_column(String(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VaultObject(Base):
    """One object in the archive tier: a single original, or a pack of small ones."""

    __tablename__ = "vault_objects"

    id: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(String(2048), unique=True)
    key: Mapped[str] = mapped_column(String(1024))  # within the vault, as the storage layer names it
    storage_class: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[str | None] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    is_pack: Mapped[bool] = mapped_column(default=False)
    # Set only once the checksum has been read back from the vault and matched.
    confirmed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Asset(Base):
    """One image in a source, and where its bytes live now."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("source_id", "key", name="uq_assets_source_id_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    key: Mapped[str] = mapped_column(String(1024))
    state: Mapped[AssetState] = mapped_column(_enum(AssetState), index=True, default=AssetState.DISCOVERED)
    reason: Mapped[str | None] = mapped_column(String(64))  # machine code, e.g. "gate-lpips"
    reason_detail: Mapped[str | None] = mapped_column(Text)
    # The original as last seen in the source.
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(200))
    last_modified: Mapped[datetime]
    content_type: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64))
    # Where the original sits in the vault: a whole object, or a member of a pack.
    vault_object_id: Mapped[int | None] = mapped_column(ForeignKey("vault_objects.id"))
    vault_offset: Mapped[int | None] = mapped_column(BigInteger)
    vault_length: Mapped[int | None] = mapped_column(BigInteger)
    # A worker's claim, so that two sweeps never process the same asset.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    source: Mapped[Source] = relationship()
    vault_object: Mapped[VaultObject | None] = relationship()
    record: Mapped[Record | None] = relationship(back_populates="asset")


class Record(Base):
    """Everything needed to regenerate an asset and to check the result (see DESIGN.md)."""

    __tablename__ = "records"

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    encoding_profile_id: Mapped[str] = mapped_column(ForeignKey("encoding_profiles.id"))
    pipeline_class: Mapped[str] = mapped_column(String(200))
    scheduler_class: Mapped[str] = mapped_column(String(200))
    scheduler_config: Mapped[dict[str, Any]]
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int]
    guidance_scale: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    eta: Mapped[float] = mapped_column(default=0.0)
    rng: Mapped[str] = mapped_column(String(16), default="cpu")
    dtype: Mapped[str] = mapped_column(String(16))
    rendered_sha256: Mapped[str] = mapped_column(String(64))
    rendered_size: Mapped[int] = mapped_column(BigInteger)
    gate_report: Mapped[dict[str, Any]]
    software: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    asset: Mapped[Asset] = relationship(back_populates="record")
    model: Mapped[Model] = relationship()
    encoding_profile: Mapped[EncodingProfile] = relationship()


class RestoreJob(Base):
    """A request to bring an asset back hot: rehydrated, or the original from the vault."""

    __tablename__ = "restore_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    mode: Mapped[RestoreMode] = mapped_column(_enum(RestoreMode))
    tier: Mapped[str | None] = mapped_column(String(16))
    days: Mapped[int | None]
    state: Mapped[RestoreJobState] = mapped_column(_enum(RestoreJobState), default=RestoreJobState.REQUESTED)
    reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    asset: Mapped[Asset] = relationship()


class Event(Base):
    """The append-only history: nothing updates or deletes a row here."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
