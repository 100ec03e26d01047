"""Restore jobs: filing them and reading them back.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.models import (
    Asset,
    RestoreJob,
    RestoreJobState,
    RestoreMode,
)
from archiver.catalog.queries.base import record_event

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


def request_restore(
    session: Session,
    asset: Asset,
    mode: RestoreMode,
    *,
    tier: str | None = None,
    days: int | None = None,
    reason: str | None = None,
) -> RestoreJob:
    """The open job restoring `asset` in `mode`, filed now if there is none."""
    existing = open_restore_job(session, asset.id, mode)
    if existing is not None:
        return existing
    return add_restore_job(session, asset, mode, tier=tier, days=days, reason=reason)
