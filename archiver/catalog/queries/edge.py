"""The edge export: the event cursor and the compact rows it exports.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from archiver.catalog.models import (
    Asset,
    AssetState,
    Event,
    Record,
    Source,
)

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
