"""Review: a person's decisions on what the gate accepted (archiver/http/review/).

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, selectinload

from archiver.catalog.models import (
    Asset,
    AssetState,
    Event,
    Record,
    Source,
)

# --- review: a person's decisions on what the gate accepted (archiver/http/review/) ---
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
