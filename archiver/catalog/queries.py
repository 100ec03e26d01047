"""Every SQL statement archiver runs against the catalog.

Functions take an open `Session` and never commit: the caller owns the transaction
(`with catalog.begin() as session:`), so a command's steps land together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.catalog.models import Asset, AssetState, Event, Model, Source
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
    """Append to the history. Nothing in archiver updates or deletes an event."""
    event = Event(kind=kind, asset_id=asset.id if asset is not None else None, detail=detail)
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
