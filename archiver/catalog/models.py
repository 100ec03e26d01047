"""The catalog's tables as SQLAlchemy 2.x typed models.

Owns the schema only: what each row means and how tables relate. Queries live in
`archiver.catalog.queries`; schema changes go through an Alembic migration in migrations/ (a test
checks that models and migrations agree on SQLite and PostgreSQL).
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from archiver.catalog import profiles

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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    PostgreSQL keeps a `timestamptz` (8 bytes). SQLite has no time type: it keeps microseconds since
    the Unix epoch as an integer (8 bytes or fewer, where text would take 26), which also sorts and
    compares as time does."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | int | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog: use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return (value - EPOCH) // MICROSECOND
        return value

    def process_result_value(self, value: datetime | int | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            return EPOCH + value * MICROSECOND
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Sha256(TypeDecorator[str]):
    """A SHA-256 digest: hex text in Python (as everywhere else in archiver), 32 bytes in the catalog."""

    impl = LargeBinary(32)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        digest = bytes.fromhex(value)
        if len(digest) != 32:
            raise ValueError(f"not a SHA-256 digest: {value!r}")
        return digest

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> str | None:
        return None if value is None else bytes(value).hex()


class MetricValues(TypeDecorator[list[Any]]):
    """A record's gate metric values: a list in Python, 4 bytes a value in the catalog.

    Each value is a little-endian float32, which holds `profiles.METRIC_DIGITS` significant digits
    exactly once rounded back (a record keeps no more). None, True and False, which metrics also
    take, are NaNs with their own payloads: a compacted metric is never NaN (`compact_metric`).
    Ten values take 40 bytes where their JSON took about 70."""

    impl = LargeBinary
    cache_ok = True

    SPECIAL = {None: 0x7FC00000, True: 0x7FC00001, False: 0x7FC00002}
    FROM_SPECIAL = {bits: value for value, bits in SPECIAL.items()}

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        words = []
        for metric in value:
            if metric is None or isinstance(metric, bool):
                words.append(struct.pack("<I", self.SPECIAL[metric]))
            elif math.isfinite(float(metric)):
                words.append(struct.pack("<f", float(metric)))
            else:
                raise ValueError(f"a metric value must be finite, None or a boolean: {metric!r}")
        return b"".join(words)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> list[Any] | None:
        if value is None:
            return None
        values: list[Any] = []
        for (bits,) in struct.iter_unpack("<I", bytes(value)):
            if bits in self.FROM_SPECIAL:
                values.append(self.FROM_SPECIAL[bits])
            else:
                (number,) = struct.unpack("<f", struct.pack("<I", bits))
                values.append(float(f"{number:.{profiles.METRIC_DIGITS}g}"))
        return values


class Coded(TypeDecorator[str]):
    """A name from a fixed list, stored as its small integer code (1 byte on SQLite, where the
    name took 7-19, and again in each index on it).

    The list only grows: a code, once written, means its name forever. A name not in the list is
    refused when written (add it at the end)."""

    impl = SmallInteger
    cache_ok = True

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.codes = {name: code for code, name in enumerate(names, start=1)}

    def process_bind_param(self, value: str | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        try:
            return self.codes[str(value)]
        except KeyError:
            raise ValueError(
                f"{value!r} has no code in the catalog: add it at the end of its list in "
                "archiver/catalog/models.py"
            ) from None

    def process_result_value(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else self.names[value - 1]


class CodedState(Coded):
    """An AssetState by its code (`ASSET_STATES`)."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(ASSET_STATES)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Any:
        name = super().process_result_value(value, dialect)
        return None if name is None else AssetState(name)


class EmptyAsNull(TypeDecorator[dict[str, Any]]):
    """A JSON object that stores nothing (SQL NULL) when it is empty, and reads NULL back as {}."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> dict[str, Any] | None:
        return value or None

    def process_result_value(self, value: dict[str, Any] | None, dialect: Dialect) -> dict[str, Any]:
        return value or {}


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


# Codes of what the catalog stores as small integers (`Coded`): append only, never reorder.
ASSET_STATES = ("discovered", "candidate", "verified", "vaulted", "archived", "rejected", "restored")
EVENT_KINDS = (
    *ASSET_STATES,  # set_state's transitions
    "restore-requested",
    "restore-in_progress",
    "restore-available",
    "restore-copied",
    "restore-done",
    "restore-failed",
    "held-for-review",
    "reviewed",
    "rebuilt",
)


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

    Content-addressed: `sha256` is the SHA-256 of the canonical JSON in `body`
    (`archiver.engine.encoding.EncodingProfile.profile_id`); records refer to it by `id`.
    """

    __tablename__ = "encoding_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RenderProfile(Base):
    """How records render: pipeline, scheduler and its config, steps, guidance, eta, size, dtype, rng,
    and the software stack the renders were made with. Shared by every record rendered alike.

    Content-addressed: `sha256` is `profiles.content_id` of `doc()`.
    """

    __tablename__ = "render_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    pipeline_class: Mapped[str] = mapped_column(String(200))
    scheduler_class: Mapped[str] = mapped_column(String(200))
    scheduler_config: Mapped[dict[str, Any]]
    steps: Mapped[int]
    guidance_scale: Mapped[float]
    eta: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    dtype: Mapped[str] = mapped_column(String(16))
    rng: Mapped[str] = mapped_column(String(16))
    software: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def doc(self) -> dict[str, Any]:
        """The profile as `profiles.render_profile_doc` writes it (its content is its id)."""
        return profiles.render_profile_doc(
            {name: getattr(self, name) for name in profiles.RENDER_FIELDS}, self.software
        )


class GateProfile(Base):
    """How the gate judged: thresholds, the LPIPS trunk and its hashes, and the names of the metrics
    that records keep values for (`Record.metrics`, in this order). Shared by every record judged alike.

    Content-addressed: `sha256` is `profiles.content_id` of `doc()`.
    """

    __tablename__ = "gate_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    thresholds: Mapped[dict[str, Any]]
    backbone: Mapped[dict[str, Any]]
    metrics: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def doc(self) -> dict[str, Any]:
        return {
            "v": profiles.PROFILE_VERSION,
            "thresholds": self.thresholds,
            "backbone": self.backbone,
            "metrics": self.metrics,
        }


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
    state: Mapped[AssetState] = mapped_column(CodedState(), index=True, default=AssetState.DISCOVERED)
    reason: Mapped[str | None] = mapped_column(String(64))  # machine code, e.g. "gate-lpips"
    reason_detail: Mapped[str | None] = mapped_column(Text)
    # The original as last seen in the source; from `vaulted` on, what the vault copy holds and is
    # checked against. Only a sweep that finds other bytes at the key changes them (`observe`).
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(200))
    last_modified: Mapped[datetime]
    content_type: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(Sha256)
    # What a restore put hot (the original, or a render of the record), as its store reported it:
    # kept apart from the original's identity, so that a rehydrated copy never changes what the
    # vault copy is checked against. NULL until a restore copies; cleared when a sweep sees new bytes.
    hot_sha256: Mapped[str | None] = mapped_column(Sha256)
    hot_size: Mapped[int | None] = mapped_column(BigInteger)
    hot_etag: Mapped[str | None] = mapped_column(String(200))
    # Where the original sits in the vault: a whole object, or a member of a pack.
    vault_object_id: Mapped[int | None] = mapped_column(ForeignKey("vault_objects.id"))
    vault_offset: Mapped[int | None] = mapped_column(BigInteger)
    vault_length: Mapped[int | None] = mapped_column(BigInteger)
    # A worker's claim, so that two sweeps never process the same asset.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    # When it was first seen is its first event's time (`discovered`).
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    source: Mapped[Source] = relationship()
    vault_object: Mapped[VaultObject | None] = relationship()
    record: Mapped[Record | None] = relationship(back_populates="asset")


class Record(Base):
    """What regenerates one asset and checks the result: only what is the record's own (see
    `archiver.catalog.profiles` and DESIGN.md): prompt, negative prompt, seed, the rendered bytes'
    SHA-256 and size, the gate's metric values, and the shared profiles and model by id.

    `RenderSpec.from_record` reassembles the full render spec; `gate_report` the stored report.
    """

    __tablename__ = "records"

    # One record per asset, keyed by it (on SQLite the rowid: no id of its own, no second index).
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True, autoincrement=False)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    encoding_profile_id: Mapped[int] = mapped_column(ForeignKey("encoding_profiles.id"))
    render_profile_id: Mapped[int] = mapped_column(ForeignKey("render_profiles.id"))
    gate_profile_id: Mapped[int] = mapped_column(ForeignKey("gate_profiles.id"))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    rendered_sha256: Mapped[str] = mapped_column(Sha256)
    rendered_size: Mapped[int] = mapped_column(BigInteger)
    # The gate's metric values, in the order its gate profile names them (profiles.compact_metric).
    metrics: Mapped[list[Any]] = mapped_column(MetricValues)
    # The accepted render's sketch (archiver/gate/sketch.py): how a render whose bytes differ is
    # still known to be this image. None on records made before it existed, until backfilled.
    render_sketch: Mapped[bytes | None] = mapped_column(LargeBinary(128))

    asset: Mapped[Asset] = relationship(back_populates="record")
    model: Mapped[Model] = relationship()
    encoding_profile: Mapped[EncodingProfile] = relationship()
    # Loaded with the record (a join on a handful of rows): a record read in one session can still
    # be rendered, shown or reported on after it closes.
    render_profile: Mapped[RenderProfile] = relationship(lazy="joined", innerjoin=True)
    gate_profile: Mapped[GateProfile] = relationship(lazy="joined", innerjoin=True)

    @property
    def gate_report(self) -> dict[str, Any]:
        """The gate's report as it was stored whole before records were compact (`GateReport.to_dict`)."""
        return profiles.reassemble_report(self.gate_profile.doc(), self.metrics, self.software)

    @property
    def software(self) -> dict[str, Any]:
        """The software stack the record's renders were made with (its render profile's)."""
        return dict(self.render_profile.software)


class DeviceCheck(Base):
    """What rendering a sample of a model's records gave on one device fingerprint (device, dtype,
    library versions, CPU capability; `archiver.stack.device_fingerprint`): the last check wins."""

    __tablename__ = "device_checks"
    __table_args__ = (UniqueConstraint("model_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical `device` document
    device: Mapped[dict[str, Any]] = mapped_column(JSON)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    sampled: Mapped[int]
    exact: Mapped[int]
    within: Mapped[int]
    refused: Mapped[int]
    lowest_psnr: Mapped[float | None] = mapped_column(Double)  # estimated, of the renders that differed
    # What a render costs here (the cost model's render compute): median wall time of the check's
    # renders, the median steps of the records rendered, the CPU threads one held (None on a GPU).
    render_seconds: Mapped[float | None] = mapped_column(Double)
    render_steps: Mapped[int | None]
    render_cores: Mapped[int | None]

    model: Mapped[Model] = relationship()


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
    """The append-only history: nothing updates or deletes a row here.

    Small: a kind and what is new in it (`queries.record_event` leaves out empty values and keeps
    METRIC_DIGITS of a measure). Ids only grow, so an event id is the catalog's change cursor
    (`queries.event_cursor`, `archiver edge export --since`).
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"), index=True)
    kind: Mapped[str] = mapped_column(Coded(EVENT_KINDS))  # its code in EVENT_KINDS
    detail: Mapped[dict[str, Any]] = mapped_column(EmptyAsNull, nullable=True, default=dict)  # NULL if {}
