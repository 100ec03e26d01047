"""Restore jobs: the persisted requests that bring an archived asset back.

Owns filing a request (idempotent: an open job for the same asset and mode is reused) and, in
`run.py`, advancing jobs. Both the `archiver restore` command and the mount's fallback file
their requests here, so there is one queue and one history.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from archiver.catalog import queries
from archiver.catalog.models import Asset, RestoreJob, RestoreMode


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
    existing = queries.open_restore_job(session, asset.id, mode)
    if existing is not None:
        return existing
    return queries.add_restore_job(session, asset, mode, tier=tier, days=days, reason=reason)
