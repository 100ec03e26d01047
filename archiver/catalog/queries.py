"""Every SQL statement archiver runs against the catalog.

Functions take an open `Session` and never commit: the caller owns the transaction
(`with catalog.begin() as session:`), so a command's steps land together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, text, update
from sqlalchemy.orm import Session, selectinload

from archiver.catalog import profiles
from archiver.catalog.models import (
    Asset,
    AssetState,
    DeviceCheck,
    EncodingProfile,
    Event,
    GateProfile,
    Model,
    Record,
    RenderProfile,
    RestoreJob,
    RestoreJobState,
    RestoreMode,
    Source,
    VaultObject,
)
from archiver.errors import ConfigError, NotFound


@dataclass(frozen=True)
class StateTotal:
    state: AssetState
    assets: int
    bytes: int


def state_totals(session: Session) -> list[StateTotal]:
    """Assets and original bytes per state, every state listed (zeros included), in state order."""
    rows = session.execute(
        select(Asset.state, func.count(Asset.id), func.coalesce(func.sum(Asset.size), 0)).group_by(
            Asset.state
        )
    ).all()
    found = {state: (count, int(size)) for state, count, size in rows}
    return [StateTotal(state, *found.get(state, (0, 0))) for state in AssetState]


def get_or_add_source(session: Session, url: str) -> Source:
    source = session.scalar(select(Source).where(Source.url == url))
    if source is None:
        source = Source(url=url)
        session.add(source)
        session.flush()
    return source


def record_event(session: Session, kind: str, asset: Asset | None = None, **detail: Any) -> Event:
    """Append to the history. Nothing in archiver updates or deletes an event.

    Events stay small: values that are None are left out, and a measure keeps
    `profiles.METRIC_DIGITS` significant digits."""
    kept = {
        name: profiles.compact_metric(value) if isinstance(value, float) else value
        for name, value in detail.items()
        if value is not None
    }
    event = Event(kind=kind, asset_id=asset.id if asset is not None else None, detail=kept)
    session.add(event)
    return event


def events_for(session: Session, asset: Asset) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.asset_id == asset.id).order_by(Event.id)))


def add_model(session: Session, *, name: str, sha256: str, path: str, pipeline_class: str) -> Model:
    """Register a model; the same name with the same hash is a no-op, a clash is an error."""
    by_name = session.scalar(select(Model).where(Model.name == name))
    if by_name is not None:
        if by_name.sha256 == sha256:
            return by_name
        raise ConfigError(
            f"a different model is already registered as {name!r} ({by_name.sha256[:12]}…): "
            "choose another name"
        )
    by_hash = session.scalar(select(Model).where(Model.sha256 == sha256))
    if by_hash is not None:
        raise ConfigError(f"this model is already registered as {by_hash.name!r}: use that name")
    model = Model(name=name, sha256=sha256, path=path, pipeline_class=pipeline_class)
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(
            f"no model named {name!r}: see `archiver model list`, or `archiver model add PATH --name {name}`"
        )
    return model


def list_models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model).order_by(Model.name)))


def models_in_use(session: Session) -> list[Model]:
    """The models that records render with, the most records first (a read path preloads these;
    a registered model no record names is never rendered)."""
    counts = select(Record.model_id, func.count().label("records")).group_by(Record.model_id).subquery()
    rows = session.scalars(
        select(Model)
        .join(counts, counts.c.model_id == Model.id)
        .order_by(counts.c.records.desc(), Model.name)
    )
    return list(rows)


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


# --- a key held by several sources ---
# One rule for a key held by several sources (invariant 6): a bare key names the asset of the
# oldest source that holds it (the lowest source id, the first swept), everywhere: `show`,
# `restore`, review decisions, the mount and the origin. A newer source never changes what an
# existing name means; `--source URL` names another, and whatever answers says which source it
# is and which others hold the key. Bulk readers (`mount_entries`) list rows in this order, so
# their first row of a key is the one `resolve_key` returns.
KEY_PRECEDENCE = (Asset.source_id,)


@dataclass(frozen=True)
class Resolved:
    """The asset a bare key names, and the sources that hold the key too (oldest first)."""

    asset: Asset
    others: tuple[str, ...]  # their URLs: what `--source` takes to name one of them

    def also_in(self) -> str:
        """One line for the user, empty when no other source holds the key."""
        if not self.others:
            return ""
        return f"{self.asset.key} is also in {', '.join(self.others)}: pass --source URL for another source's"


def resolve_key(
    session: Session, key: str, source: Source | None = None, states: Sequence[AssetState] | None = None
) -> Resolved:
    """The asset `key` names (in `source`, if given; among assets in `states`, if given), by the rule
    above, and every other source holding the key (in `states`). NotFound when no asset matches."""
    query = select(Asset).where(Asset.key == key)
    if states is not None:
        query = query.where(Asset.state.in_(states))
    holders = list(session.scalars(query.order_by(*KEY_PRECEDENCE)))
    named = next((a for a in holders if source is None or a.source_id == source.id), None)
    if named is None:
        where = "" if source is None else f" in {source.url}"
        raise NotFound(f"no asset {key!r}{where} in the catalog: `archiver ls` lists what is there")
    return Resolved(named, tuple(a.source.url for a in holders if a is not named))


def assets_with_key(session: Session, key: str) -> list[Asset]:
    """Every asset holding `key`, oldest source first (a listing: `restore status KEY`)."""
    return list(session.scalars(select(Asset).where(Asset.key == key).order_by(*KEY_PRECEDENCE)))


def find_source(session: Session, url: str) -> Source | None:
    return session.scalar(select(Source).where(Source.url == url))


@dataclass(frozen=True)
class SourceSummary:
    """One source's assets: how many in each state and their original bytes; `kept`: how many have
    a record or a vault copy (such a source cannot be forgotten); `claimed`: held by a running sweep."""

    id: int
    url: str
    states: dict[AssetState, int]
    bytes: int
    kept: int
    claimed: int


def source_summaries(session: Session, now: datetime) -> list[SourceSummary]:
    """Every source, oldest first, with its counts (sources with no asset left included)."""
    kept = (Asset.vault_object_id.is_not(None)) | Asset.record.has()
    claimed = Asset.claimed_by.is_not(None) & (Asset.claimed_until > now)
    rows = session.execute(
        select(
            Asset.source_id,
            Asset.state,
            func.count(Asset.id),
            func.coalesce(func.sum(Asset.size), 0),
            func.count(Asset.id).filter(kept),
            func.count(Asset.id).filter(claimed),
        ).group_by(Asset.source_id, Asset.state)
    ).all()
    found: dict[int, list[Any]] = {}
    for source_id, state, count, size, with_copy, held in rows:
        totals = found.setdefault(source_id, [{}, 0, 0, 0])
        totals[0][state] = count
        totals[1] += int(size)
        totals[2] += with_copy
        totals[3] += held
    return [
        SourceSummary(source.id, source.url, *found.get(source.id, [{}, 0, 0, 0]))
        for source in session.scalars(select(Source).order_by(Source.id))
    ]


def forget_source(session: Session, source: Source) -> int:
    """Delete a source, its assets and their events; how many assets went. The caller has checked
    that none has a record or a vault copy (`SourceSummary.kept`): those are never forgotten."""
    ids = select(Asset.id).where(Asset.source_id == source.id)
    session.execute(delete(Event).where(Event.asset_id.in_(ids)).execution_options(synchronize_session=False))
    result = session.execute(
        delete(Asset).where(Asset.source_id == source.id).execution_options(synchronize_session=False)
    )
    gone = result.rowcount  # type: ignore[attr-defined]
    session.delete(source)
    session.flush()
    return int(gone)


# --- restore jobs ---

OPEN_JOB_STATES = (
    RestoreJobState.REQUESTED,
    RestoreJobState.IN_PROGRESS,
    RestoreJobState.AVAILABLE,
    RestoreJobState.COPIED,
)


def open_restore_job(session: Session, asset_id: int, mode: RestoreMode) -> RestoreJob | None:
    return session.scalar(
        select(RestoreJob)
        .where(
            RestoreJob.asset_id == asset_id, RestoreJob.mode == mode, RestoreJob.state.in_(OPEN_JOB_STATES)
        )
        .order_by(RestoreJob.id)
    )


def add_restore_job(
    session: Session,
    asset: Asset,
    mode: RestoreMode,
    *,
    tier: str | None,
    days: int | None,
    reason: str | None,
) -> RestoreJob:
    job = RestoreJob(asset_id=asset.id, mode=mode, tier=tier, days=days, reason=reason)
    session.add(job)
    session.flush()
    record_event(session, "restore-requested", asset, job=job.id, mode=mode.value, tier=tier, reason=reason)
    return job


def restore_jobs(
    session: Session, asset_ids: Sequence[int] | None = None, *, open_only: bool = False
) -> list[RestoreJob]:
    query = select(RestoreJob)
    if asset_ids is not None:
        query = query.where(RestoreJob.asset_id.in_(asset_ids))
    if open_only:
        query = query.where(RestoreJob.state.in_(OPEN_JOB_STATES))
    return list(session.scalars(query.order_by(RestoreJob.id)))


# --- the mount ---
# Read-only queries for fusefs: one query loads the whole path index (no per-entry work), a
# cheap fingerprint says when it is stale, and single assets are loaded with what a read needs.


@dataclass(frozen=True)
class MountEntry:
    """One archived asset as the mount's path index needs it."""

    asset_id: int
    source_id: int
    key: str
    rendered_size: int
    last_modified: datetime
    rendered_sha256: str


def mount_entries(session: Session, source_id: int | None = None) -> list[MountEntry]:
    """Every archived asset that has a record (of one source, if given), in (source, key) order: one
    query for the whole index."""
    query = (
        select(
            Asset.id,
            Asset.source_id,
            Asset.key,
            Record.rendered_size,
            Asset.last_modified,
            Record.rendered_sha256,
        )
        .join(Record, Record.asset_id == Asset.id)
        .where(Asset.state == AssetState.ARCHIVED)
        .order_by(*KEY_PRECEDENCE, Asset.key)
    )
    if source_id is not None:
        query = query.where(Asset.source_id == source_id)
    return [MountEntry(*row) for row in session.execute(query)]


def mount_sources(session: Session) -> dict[int, str]:
    """Sources that hold any asset, by id (the origin names them when a key is ambiguous)."""
    rows = session.execute(
        select(Source.id, Source.url).where(select(Asset.id).where(Asset.source_id == Source.id).exists())
    )
    return {source_id: url for source_id, url in rows}


def mount_fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever the mount's index would: archived count, newest asset update, sources."""
    archived = func.count(Asset.id).filter(Asset.state == AssetState.ARCHIVED)
    row = session.execute(select(archived, func.max(Asset.updated_at), func.count(Asset.id))).one()
    sources = session.scalar(select(func.count(Source.id)))
    return (*row, sources)


def mount_asset(session: Session, asset_id: int) -> Asset | None:
    """One asset; its record, model and vault object load lazily within the caller's session."""
    return session.get(Asset, asset_id)


# --- the edge export ---
# What `archiver edge export` reads: archived records with the ids of what they share, and, for a
# delta, which assets changed after an event id (the cursor).


@dataclass(frozen=True)
class EdgeRow:
    """One archived asset's record as an edge export needs it (profiles and model by row id)."""

    asset_id: int
    source_id: int
    key: str
    last_modified: datetime
    prompt: str
    negative_prompt: str
    seed: int
    rendered_sha256: str
    rendered_size: int
    model_id: int
    render_profile_id: int
    encoding_profile_id: int
    render_sketch: bytes | None


def event_cursor(session: Session) -> int:
    """The id of the newest event that is committed, with none older still to come: a cursor that a
    later `changed_since` misses nothing after. On PostgreSQL, ids are handed out before commit, so
    this waits for transactions writing events to finish (a SHARE lock, until the caller's
    transaction ends); SQLite has one writer at a time, so its ids commit in order."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE events IN SHARE MODE"))
    return int(session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)


def changed_since(session: Session, cursor: int) -> list[int]:
    """Ids of the assets that have an event after `cursor` (an event id)."""
    rows = session.scalars(
        select(Event.asset_id).where(Event.id > cursor, Event.asset_id.is_not(None)).distinct()
    )
    return sorted(asset_id for asset_id in rows if asset_id is not None)


def scoped_assets(
    session: Session, prefix: str, source: Source | None, asset_ids: Sequence[int] | None = None
) -> list[tuple[int, int, str, AssetState]]:
    """(id, source id, key, state) of the assets under `prefix` (in `source`; among `asset_ids`)."""
    query = select(Asset.id, Asset.source_id, Asset.key, Asset.state).where(
        Asset.key.startswith(prefix, autoescape=True)
    )
    if source is not None:
        query = query.where(Asset.source_id == source.id)
    if asset_ids is None:
        queries = [query]
    else:
        queries = [query.where(Asset.id.in_(asset_ids[i : i + 500])) for i in range(0, len(asset_ids), 500)]
    rows = [(a, s, k, state) for scoped in queries for a, s, k, state in session.execute(scoped)]
    return sorted(rows, key=lambda row: (row[1], row[2]))


def edge_rows(session: Session, asset_ids: Sequence[int]) -> list[EdgeRow]:
    """The records of those of `asset_ids` that are archived, in (source, key) order."""
    found: list[EdgeRow] = []
    for start in range(0, len(asset_ids), 500):
        rows = session.execute(
            select(
                Asset.id,
                Asset.source_id,
                Asset.key,
                Asset.last_modified,
                Record.prompt,
                Record.negative_prompt,
                Record.seed,
                Record.rendered_sha256,
                Record.rendered_size,
                Record.model_id,
                Record.render_profile_id,
                Record.encoding_profile_id,
                Record.render_sketch,
            )
            .join(Record, Record.asset_id == Asset.id)
            .where(Asset.state == AssetState.ARCHIVED, Asset.id.in_(asset_ids[start : start + 500]))
        )
        found += [EdgeRow(*tuple(row)) for row in rows]
    return sorted(found, key=lambda row: (row.source_id, row.key))


# --- naming assets on the command line ---


def scoped_source(session: Session, url: str | None) -> Source | None:
    """The source a `--source URL` option names (None when not given); unknown URLs are NotFound."""
    if url is None:
        return None
    source = find_source(session, url)
    if source is None:
        raise NotFound(f"no source {url!r} in the catalog: `archiver ls` shows what was swept")
    return source


# --- the software stacks records were made with ---


def record_stacks(session: Session) -> list[tuple[dict[str, Any], int]]:
    """Each distinct software stack records were made with (their render profiles' `software`) and
    how many records hold it. Profiles that differ in other settings but share a stack count as one."""
    rows = session.execute(
        select(RenderProfile.software, func.count(Record.asset_id))
        .join(Record, Record.render_profile_id == RenderProfile.id)
        .group_by(RenderProfile.id)
    )
    counts: dict[str, int] = {}
    for software, records in rows:
        key = json.dumps(software if isinstance(software, dict) else {}, sort_keys=True)
        counts[key] = counts.get(key, 0) + records
    return [(json.loads(key), records) for key, records in counts.items()]


# --- the vault's journal: rebuilding the catalog from it (archiver.rebuild), and fsck ---


def model_by_sha256(session: Session, sha256: str) -> Model | None:
    return session.scalar(select(Model).where(Model.sha256 == sha256))


def model_name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(Model.id).where(Model.name == name)) is not None


def vault_object_by_uri(session: Session, uri: str) -> VaultObject | None:
    return session.scalar(select(VaultObject).where(VaultObject.uri == uri))


def assets_by_key(session: Session, source: Source) -> dict[str, Asset]:
    """Every asset of `source` by key, with its record and vault object loaded (a query each)."""
    query = (
        select(Asset)
        .where(Asset.source_id == source.id)
        .options(selectinload(Asset.record), selectinload(Asset.vault_object))
    )
    return {asset.key: asset for asset in session.scalars(query)}


def put_record(session: Session, asset: Asset, columns: Mapping[str, Any]) -> Record:
    """Create or replace the asset's record with these columns as they are (a rebuild's)."""
    record = asset.record
    if record is None:
        record = Record(asset=asset, **columns)
        session.add(record)
    else:
        for name, value in columns.items():
            setattr(record, name, value)
    return record


def vaulted_assets(session: Session, prefix: str = "") -> list[Asset]:
    """The assets under `prefix` that have a vault copy (vaulted, archived, restored; with it loaded)."""
    states = (AssetState.VAULTED, AssetState.ARCHIVED, AssetState.RESTORED)
    query = (
        select(Asset)
        .where(
            Asset.key.startswith(prefix, autoescape=True),
            Asset.state.in_(states),
            Asset.vault_object_id.is_not(None),
        )
        .order_by(Asset.vault_object_id, Asset.key)
        .options(selectinload(Asset.vault_object), selectinload(Asset.source))
    )
    return list(session.scalars(query))


def vault_object_keys(session: Session) -> set[str]:
    return set(session.scalars(select(VaultObject.key)))


def journal_view(session: Session) -> dict[tuple[str, str], tuple[AssetState, str | None]]:
    """(source URL, key) -> (state, rendered SHA-256) of every asset that has a record."""
    rows = session.execute(
        select(Source.url, Asset.key, Asset.state, Record.rendered_sha256)
        .join(Asset, Asset.source_id == Source.id)
        .join(Record, Record.asset_id == Asset.id)
    )
    return {(url, key): (state, sha) for url, key, state, sha in rows}


# --- review: a person's decisions on what the gate accepted (archiver/review/) ---
# Decisions are events (no table of their own): `held-for-review` when a sweep keeps a vaulted
# asset's hot copy for a person, `reviewed` with the decision. An asset's review is its newest
# event among REVIEW_EVENTS: a `verified` after a decision (the hot object changed and passed the
# gate again) starts over, since the decision was about another record.

HELD = "held-for-review"
REVIEWED = "reviewed"
REVIEW_EVENTS = (AssetState.VERIFIED.value, HELD, REVIEWED)


@dataclass(frozen=True)
class Review:
    """Where an asset stands with its reviewers: `pending` (held, no decision), `approved`, `rejected`."""

    status: str
    at: datetime
    reviewer: str | None = None
    comment: str | None = None


def reviews(session: Session, asset_ids: Sequence[int]) -> dict[int, Review]:
    """The review of each of `asset_ids` that has one (assets never held nor decided have none)."""
    newest: dict[int, Event] = {}
    for start in range(0, len(asset_ids), 500):
        rows = session.scalars(
            select(Event)
            .where(Event.asset_id.in_(asset_ids[start : start + 500]), Event.kind.in_(REVIEW_EVENTS))
            .order_by(Event.id)
        )
        for event in rows:
            assert event.asset_id is not None
            newest[event.asset_id] = event
    found: dict[int, Review] = {}
    for asset_id, event in newest.items():
        if event.kind == HELD:
            found[asset_id] = Review("pending", event.at)
        elif event.kind == REVIEWED:
            d = event.detail
            found[asset_id] = Review(str(d.get("decision")), event.at, d.get("reviewer"), d.get("comment"))
    return found


def take_unclaimed(session: Session, asset_id: int, now: datetime) -> bool:
    """Touch an asset only if no running sweep holds a claim on it (one conditional UPDATE): a
    decision and a sweep's release of the same asset never interleave. False when claimed."""
    free = or_(Asset.claimed_by.is_(None), Asset.claimed_until < now)
    result = session.execute(
        update(Asset)
        .where(Asset.id == asset_id, free)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def review_assets(session: Session, prefix: str = "", source: Source | None = None) -> list[Asset]:
    """The assets a reviewer sees: those with a record, and those the gate rejected (their reason
    and measures), under `prefix`; record, model, profiles, vault copy and source loaded."""
    query = (
        select(Asset)
        .where(
            Asset.key.startswith(prefix, autoescape=True),
            or_(Asset.state == AssetState.REJECTED, Asset.record.has()),
        )
        .options(
            selectinload(Asset.record).selectinload(Record.model),
            selectinload(Asset.vault_object),
            selectinload(Asset.source),
        )
        .order_by(Asset.source_id, Asset.key)
    )
    if source is not None:
        query = query.where(Asset.source_id == source.id)
    return list(session.scalars(query))


def last_event(session: Session, asset: Asset, kind: str) -> Event | None:
    return session.scalar(
        select(Event).where(Event.asset_id == asset.id, Event.kind == kind).order_by(Event.id.desc()).limit(1)
    )
