"""Putting a review together from the settings, and serving it: the read path (`AssetReader`, the disk
cache shared with the mount and the origin, the read policy with `renders_only`), the journal writer
for rejections, the service, and uvicorn through `archiver.http.server` (`bind`, `serve_app`)."""

from __future__ import annotations

from collections.abc import Callable

from archiver.catalog.database import Catalog
from archiver.http.review.service import ReviewService
from archiver.http.server import http_read_policy
from archiver.journal import JournalWriter
from archiver.read.reader import AssetReader
from archiver.settings import Settings
from archiver.storage import HotStore, Vault
from archiver.workers import new_worker_id


def _limits(settings: Settings) -> dict[str, float]:
    """The gate's limits in force, as a gate report lists them (a rejection's measures are shown
    against them)."""
    from archiver.gate import Thresholds

    return Thresholds.from_settings(settings).to_dict()


def build(
    settings: Settings,
    catalog: Catalog,
    vault: Vault,
    open_source: Callable[[str], HotStore],
    *,
    reviewer: str,
    prefix: str = "",
    source: str | None = None,
    reader: AssetReader | None = None,
) -> ReviewService:
    """A review of the assets under `prefix`; models load on the first render."""
    reader = reader or AssetReader(catalog, vault, device=settings.resolved_device())
    policy = http_read_policy(settings, catalog, reader, requested_by="review", renders_only=True)
    journal = JournalWriter(vault, settings.vault_journal_storage_class, f"review:{new_worker_id()}")
    return ReviewService(
        catalog,
        vault,
        reader,
        policy,
        open_source,
        journal,
        thresholds=_limits(settings),
        reviewer=reviewer,
        prefix=prefix,
        source=source,
    )
