"""The sweep: discovering, claiming and moving assets through their states; records, their profiles, device
checks and vault objects.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from archiver.catalog import profiles
from archiver.catalog.models import (
    Asset,
    AssetState,
    DeviceCheck,
    EncodingProfile,
    GateProfile,
    Model,
    Record,
    RenderProfile,
    Source,
    VaultObject,
)
from archiver.catalog.queries.base import record_event

# --- the sweep: discovering, claiming and moving assets through their states ---


def find_asset(session: Session, source: Source, key: str) -> Asset | None:
    return session.scalar(select(Asset).where(Asset.source_id == source.id, Asset.key == key))


def add_asset(
    session: Session, source: Source, *, key: str, size: int, etag: str | None, last_modified: datetime
) -> Asset:
    asset = Asset(
        source=source, key=key, state=AssetState.CANDIDATE, size=size, etag=etag, last_modified=last_modified
    )
    session.add(asset)
    session.flush()
    # The size and ETag are the row's; an event that changes them keeps what they replaced (`observe`).
    record_event(session, "discovered", asset)
    return asset


def observe(asset: Asset, *, size: int, etag: str | None, last_modified: datetime) -> dict[str, Any]:
    """Take the object's size, ETag and time as last seen in its source. Returns what they replaced
    (`was_size`, `was_etag`), for the event that records the change: the row holds only the latest,
    so the history keeps every earlier one."""
    was: dict[str, Any] = {}
    if asset.size != size:
        was["was_size"] = asset.size
    if asset.etag != etag:
        was["was_etag"] = asset.etag
    asset.size, asset.etag, asset.last_modified = size, etag, last_modified
    # New bytes at the key are a new original: what a restore once put there is history.
    asset.hot_sha256 = asset.hot_size = asset.hot_etag = None
    return was


def hot_identity(asset: Asset) -> tuple[str | None, int]:
    """(ETag, size) of what should be hot at the asset's key now: what a restore put there, else
    the original as last seen. A sweep compares a listing with it to see whether the key changed."""
    if asset.hot_size is not None:
        return asset.hot_etag, asset.hot_size
    return asset.etag, asset.size


def set_hot_copy(asset: Asset, *, sha256: str, size: int, etag: str | None) -> None:
    """Record what a restore put hot, leaving the original's identity (size, ETag, SHA-256: what
    the vault copy is checked against) as it is."""
    asset.hot_sha256, asset.hot_size, asset.hot_etag = sha256, size, etag


def set_state(
    session: Session,
    asset: Asset,
    state: AssetState,
    *,
    reason: str | None = None,
    detail: str | None = None,
    **event: Any,
) -> None:
    """Move an asset to `state` and append the transition to its history, in the caller's transaction.

    The event names the new state (the one before is the previous event's) and what is new with it."""
    asset.state = state
    asset.reason = reason
    asset.reason_detail = detail
    record_event(session, state.value, asset, reason=reason, **event)


def assets_in(
    session: Session,
    source: Source,
    states: Sequence[AssetState],
    claimed_by: str | None = None,
    prefix: str = "",
) -> list[Asset]:
    query = select(Asset).where(Asset.source_id == source.id, Asset.state.in_(states))
    if prefix:
        query = query.where(Asset.key.startswith(prefix, autoescape=True))
    if claimed_by is not None:
        query = query.where(Asset.claimed_by == claimed_by)
    return list(session.scalars(query.order_by(Asset.key)))


def claim(
    session: Session,
    asset_id: int,
    worker: str,
    *,
    now: datetime,
    until: datetime,
    steal_from: str | None = None,
) -> bool:
    """Claim one asset for `worker`: one conditional UPDATE, atomic on SQLite and PostgreSQL alike.

    Succeeds when the asset is unclaimed, its claim expired, already ours, or held by `steal_from`
    (a worker the caller proved dead). Two sweeps can never both get the same asset.
    """
    free = or_(Asset.claimed_by.is_(None), Asset.claimed_until < now, Asset.claimed_by == worker)
    if steal_from is not None:
        free = or_(free, Asset.claimed_by == steal_from)
    result = session.execute(
        update(Asset)
        .where(Asset.id == asset_id, free)
        .values(claimed_by=worker, claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release(session: Session, asset: Asset) -> None:
    asset.claimed_by = None
    asset.claimed_until = None


def release_all(session: Session, worker: str) -> int:
    """Drop every claim `worker` holds (a sweep ending on an error hands its work back)."""
    result = session.execute(
        update(Asset)
        .where(Asset.claimed_by == worker)
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim_holders(session: Session, source: Source, now: datetime) -> list[str]:
    """Workers holding unexpired claims on this source's assets."""
    rows = session.scalars(
        select(Asset.claimed_by)
        .where(Asset.source_id == source.id, Asset.claimed_until >= now, Asset.claimed_by.is_not(None))
        .distinct()
    )
    return [row for row in rows if row is not None]


def get_or_add_profile(session: Session, profile_id: str, fmt: str, body: bytes) -> EncodingProfile:
    """The encoding profile whose content id (SHA-256 of `body`) is `profile_id`: many assets share it."""
    profile = session.scalar(select(EncodingProfile).where(EncodingProfile.sha256 == profile_id))
    if profile is None:
        profile = EncodingProfile(sha256=profile_id, format=fmt, body=body)
        session.add(profile)
        session.flush()
    return profile


def get_or_add_render_profile(
    session: Session, spec: Mapping[str, Any], software: Mapping[str, Any]
) -> RenderProfile:
    """The render profile of `spec` (RenderSpec columns; only the shared ones are read) and `software`."""
    doc = profiles.render_profile_doc(spec, software)
    sha256 = profiles.content_id(doc)
    known = _profiles_seen(session)
    profile = known.get(sha256) or session.scalar(select(RenderProfile).where(RenderProfile.sha256 == sha256))
    if profile is None:
        fields = {name: doc[name] for name in profiles.RENDER_FIELDS}
        profile = RenderProfile(sha256=sha256, software=doc["software"], **fields)
        session.add(profile)
        session.flush()
    known[sha256] = profile
    return profile


def set_record_software(session: Session, record: Record, software: Mapping[str, Any]) -> None:
    """Point `record` at the render profile that differs from its own only by `software` (records
    share profiles, so a record's stack is changed by choosing another profile, never by editing one)."""
    spec = {name: getattr(record.render_profile, name) for name in profiles.RENDER_FIELDS}
    record.render_profile = get_or_add_render_profile(session, spec, software)


def get_or_add_gate_profile(session: Session, report: Mapping[str, Any]) -> GateProfile:
    """The gate profile of a report (`GateReport.to_dict()`): thresholds, trunk, metric names."""
    doc = profiles.gate_profile_doc(report)
    sha256 = profiles.content_id(doc)
    known = _profiles_seen(session)
    profile = known.get(sha256) or session.scalar(select(GateProfile).where(GateProfile.sha256 == sha256))
    if profile is None:
        profile = GateProfile(
            sha256=sha256, thresholds=doc["thresholds"], backbone=doc["backbone"], metrics=doc["metrics"]
        )
        session.add(profile)
        session.flush()
    known[sha256] = profile
    return profile


def _profiles_seen(session: Session) -> dict[str, Any]:
    """Profiles this session has found or added, by content id: they never change, so a sweep
    that saves many records looks each one up once per transaction."""
    seen: dict[str, Any] = session.info.setdefault("archiver.profiles", {})
    return seen


def save_record(
    session: Session,
    asset: Asset,
    *,
    model_id: int,
    encoding_profile_id: int,
    rendered_sha256: str,
    rendered_size: int,
    gate_report: Mapping[str, Any],
    software: Mapping[str, Any],
    render_sketch: bytes | None = None,
    **spec: Any,
) -> Record:
    """Create or replace the asset's record (a re-verified asset gets a fresh one).

    `spec` is a RenderSpec's columns: its prompt, negative prompt and seed are the record's own, the
    rest goes to a shared render profile with `software`; the report's thresholds and trunk go to a
    shared gate profile, and the record keeps its metric values."""
    unknown = set(spec) - set(profiles.RENDER_FIELDS) - set(profiles.OWN_FIELDS)
    if unknown:
        raise TypeError(f"save_record: not a render spec field: {', '.join(sorted(unknown))}")
    profiles.check_passed(gate_report)
    columns = {
        "model_id": model_id,
        "encoding_profile_id": encoding_profile_id,
        "render_profile": get_or_add_render_profile(session, spec, software),
        "gate_profile": get_or_add_gate_profile(session, gate_report),
        "prompt": spec["prompt"],
        "negative_prompt": spec.get("negative_prompt") or "",
        "seed": int(spec["seed"]),
        "rendered_sha256": rendered_sha256,
        "rendered_size": rendered_size,
        "metrics": profiles.metric_values(gate_report),
        "render_sketch": render_sketch,
    }
    record = session.scalar(select(Record).where(Record.asset_id == asset.id))
    if record is None:
        record = Record(asset_id=asset.id, **columns)
        session.add(record)
    else:
        for name, value in columns.items():
            setattr(record, name, value)
    session.flush()
    return record


def set_render_sketch(session: Session, asset_id: int, render_sketch: bytes) -> bool:
    """Give a record made before sketches its sketch; False if it has one (it is never replaced:
    the sweep's sketch is of the accepted render itself)."""
    done = session.execute(
        update(Record)
        .where(Record.asset_id == asset_id, Record.render_sketch.is_(None))
        .values(render_sketch=render_sketch)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _records_to_check(model: Model, unsketched: bool) -> Select[Asset]:
    """Archived (or restored) assets whose records use `model`, by id; with `unsketched`, only
    those whose record has no sketch yet."""
    query = (
        select(Asset)
        .join(Record, Record.asset_id == Asset.id)
        .where(Record.model_id == model.id, Asset.state.in_((AssetState.ARCHIVED, AssetState.RESTORED)))
        .order_by(Asset.id)
    )
    return query.where(Record.render_sketch.is_(None)) if unsketched else query


def sample_records_to_check(session: Session, model: Model, *, sample: int, unsketched: bool) -> list[Asset]:
    """`sample` of those assets spread evenly over the ids (all of them when there are fewer): one
    count and one row per pick, so a sample of a model with millions of records holds `sample` rows."""
    query = _records_to_check(model, unsketched)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    if sample >= total:
        return list(session.scalars(query))
    step = total / sample
    return [session.scalars(query.offset(int(i * step)).limit(1)).one() for i in range(sample)]


def records_to_check_after(
    session: Session, model: Model, *, unsketched: bool, after_id: int, limit: int
) -> list[Asset]:
    """The next `limit` of those assets with ids above `after_id`: a page of a walk over all of them."""
    return list(session.scalars(_records_to_check(model, unsketched).where(Asset.id > after_id).limit(limit)))


def save_device_check(
    session: Session,
    model: Model,
    fingerprint: str,
    device: Mapping[str, str],
    *,
    sampled: int,
    exact: int,
    within: int,
    refused: int,
    lowest_psnr: float | None,
    render_seconds: float | None = None,
    render_steps: int | None = None,
    render_cores: int | None = None,
) -> DeviceCheck:
    """Record what rendering `sampled` records of `model` on this device gave; the last check wins."""
    row = session.scalar(
        select(DeviceCheck).where(DeviceCheck.model_id == model.id, DeviceCheck.fingerprint == fingerprint)
    )
    if row is None:
        row = DeviceCheck(model_id=model.id, fingerprint=fingerprint, device=dict(device))
        session.add(row)
    row.checked_at = datetime.now(UTC)
    row.sampled, row.exact, row.within, row.refused, row.lowest_psnr = (
        sampled,
        exact,
        within,
        refused,
        lowest_psnr,
    )
    row.render_seconds, row.render_steps, row.render_cores = render_seconds, render_steps, render_cores
    session.flush()
    return row


def model_record_count(session: Session, model_name: str) -> int:
    """How many records render with the model: the users its vault storage is shared across."""
    query = select(func.count(Record.asset_id)).join(Model, Record.model_id == Model.id)
    return session.scalar(query.where(Model.name == model_name)) or 0


def device_check(session: Session, model_id: int, fingerprint: str) -> DeviceCheck | None:
    return session.scalar(
        select(DeviceCheck).where(DeviceCheck.model_id == model_id, DeviceCheck.fingerprint == fingerprint)
    )


def device_checks(session: Session, model_id: int | None = None) -> list[DeviceCheck]:
    """Every device check (of one model's, given `model_id`), by model and time."""
    query = select(DeviceCheck).order_by(DeviceCheck.model_id, DeviceCheck.checked_at)
    return list(session.scalars(query if model_id is None else query.where(DeviceCheck.model_id == model_id)))


def add_vault_object(
    session: Session,
    *,
    uri: str,
    key: str,
    storage_class: str,
    version_id: str | None,
    sha256: str,
    size: int,
    is_pack: bool,
    confirmed_at: datetime,
) -> VaultObject:
    """The row for a confirmed vault object (content-addressed URIs: re-uploads reuse it)."""
    existing = session.scalar(select(VaultObject).where(VaultObject.uri == uri))
    if existing is not None:
        existing.confirmed_at = confirmed_at
        existing.version_id = version_id
        return existing
    row = VaultObject(
        uri=uri,
        key=key,
        storage_class=storage_class,
        version_id=version_id,
        sha256=sha256,
        size=size,
        is_pack=is_pack,
        confirmed_at=confirmed_at,
    )
    session.add(row)
    session.flush()
    return row


def list_assets(session: Session, prefix: str = "", source: Source | None = None) -> list[Asset]:
    query = select(Asset).where(Asset.key.startswith(prefix, autoescape=True))
    if source is not None:
        query = query.where(Asset.source_id == source.id)
    return list(session.scalars(query.order_by(Asset.source_id, Asset.key)))
