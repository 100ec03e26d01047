"""Sources, events, models and the totals `status` shows: what every client of the catalog uses.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.catalog import profiles
from archiver.catalog.models import (
    Asset,
    AssetState,
    Event,
    Model,
    Record,
    RenderProfile,
    Source,
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
