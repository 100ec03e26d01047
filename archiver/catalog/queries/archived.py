"""The archived assets the read path serves (the mount and the HTTP origin): their key index and its
fingerprint.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.catalog.models import (
    Asset,
    AssetState,
    Record,
    Source,
)
from archiver.catalog.queries.keys import KEY_PRECEDENCE

# --- the mount ---
# Read-only queries for fusefs: one query loads the whole path index (no per-entry work), a
# cheap fingerprint says when it is stale, and single assets are loaded with what a read needs.


@dataclass(frozen=True)
class ArchivedEntry:
    """One archived asset as the mount's path index needs it."""

    asset_id: int
    source_id: int
    key: str
    rendered_size: int
    last_modified: datetime
    rendered_sha256: str


def archived_entries(session: Session, source_id: int | None = None) -> list[ArchivedEntry]:
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
    return [ArchivedEntry(*row) for row in session.execute(query)]


def archived_sources(session: Session) -> dict[int, str]:
    """Sources that hold any asset, by id (the origin names them when a key is ambiguous)."""
    rows = session.execute(
        select(Source.id, Source.url).where(select(Asset.id).where(Asset.source_id == Source.id).exists())
    )
    return {source_id: url for source_id, url in rows}


def archived_fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever the mount's index would: archived count, newest asset update, sources."""
    archived = func.count(Asset.id).filter(Asset.state == AssetState.ARCHIVED)
    row = session.execute(select(archived, func.max(Asset.updated_at), func.count(Asset.id))).one()
    sources = session.scalar(select(func.count(Source.id)))
    return (*row, sources)


def archived_asset(session: Session, asset_id: int) -> Asset | None:
    """One asset; its record, model and vault object load lazily within the caller's session."""
    return session.get(Asset, asset_id)
