"""Naming assets: a key held by several sources (one rule for every command and front end), `--source`, and
the sources themselves.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from archiver.catalog.models import (
    Asset,
    AssetState,
    Event,
    Source,
)
from archiver.errors import NotFound

# --- a key held by several sources ---
# One rule for a key held by several sources (invariant 6): a bare key names the asset of the
# oldest source that holds it (the lowest source id, the first swept), everywhere: `show`,
# `restore`, review decisions, the mount and the origin. A newer source never changes what an
# existing name means; `--source URL` names another, and whatever answers says which source it
# is and which others hold the key. Bulk readers (`archived_entries`) list rows in this order, so
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


# --- naming assets on the command line ---


def scoped_source(session: Session, url: str | None) -> Source | None:
    """The source a `--source URL` option names (None when not given); unknown URLs are NotFound."""
    if url is None:
        return None
    source = find_source(session, url)
    if source is None:
        raise NotFound(f"no source {url!r} in the catalog: `archiver ls` shows what was swept")
    return source
