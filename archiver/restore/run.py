"""Advancing restore jobs: requested → in_progress → available → copied → done (or failed).

Owns the steps and their order. Each step is committed on its own, so jobs survive restarts and
any process can pick one up where another left it. Nothing hot is written until the bytes are
verified (a rehydration against its record, an original against its recorded SHA-256), and the
hot copy is written atomically by the storage layer (temp + rename locally, one PUT with a
checksum on S3). An existing hot object that is not the one being restored is never overwritten.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset, AssetState, RestoreJob, RestoreJobState, RestoreMode
from archiver.errors import IntegrityError, NoSuchObject, NotRestored
from archiver.journal import JournalWriter, tombstone
from archiver.read.reader import ArchivedAsset, AssetReader, sha256_hex, snapshot
from archiver.storage import HotStore, RestoreStatus


@dataclass(frozen=True)
class JobView:
    """A job as reported to users (detached from the session)."""

    id: int
    key: str
    source: str
    mode: str
    tier: str | None
    state: str
    reason: str | None
    exit_code: int | None = None  # set when this run saw the job fail: the error's exit code

    @property
    def finished(self) -> bool:
        return self.state in (RestoreJobState.DONE.value, RestoreJobState.FAILED.value)


def view(job: RestoreJob) -> JobView:
    return JobView(
        job.id, job.asset.key, job.asset.source.url, job.mode.value, job.tier, job.state.value, job.reason
    )


class RestoreRunner:
    """Moves open jobs forward as far as they can go right now; never waits itself."""

    def __init__(
        self,
        catalog: Catalog,
        reader: AssetReader,
        open_store: Callable[[str], HotStore],
        journal_storage_class: str = "STANDARD",
    ) -> None:
        self.catalog, self.reader, self._open_store = catalog, reader, open_store
        self._stores: dict[str, HotStore] = {}
        writer = f"restore:{socket.gethostname()}:{os.getpid()}"
        self._journal = JournalWriter(reader.vault, journal_storage_class, writer)

    def store(self, url: str) -> HotStore:
        if url not in self._stores:
            self._stores[url] = self._open_store(url)
        return self._stores[url]

    def advance(self, job_ids: list[int]) -> list[JobView]:
        return [self._advance_one(job_id) for job_id in job_ids]

    def _advance_one(self, job_id: int) -> JobView:
        code = None
        try:
            while self._step(job_id):
                pass
        except (IntegrityError, NoSuchObject) as failure:
            # Damaged or missing vault copy, a render that is not the record's: final, nothing hot changed.
            self._set(job_id, RestoreJobState.FAILED, reason=str(failure))
            code = int(failure.exit_code)
        with self.catalog.begin() as session:
            job = session.get(RestoreJob, job_id)
            assert job is not None
            return replace(view(job), exit_code=code)

    def _set(self, job_id: int, state: RestoreJobState, *, reason: str | None = None) -> None:
        with self.catalog.begin() as session:
            job = session.get(RestoreJob, job_id)
            assert job is not None
            job.state = state
            job.reason = reason
            queries.record_event(session, f"restore-{state.value}", job.asset, job=job.id, reason=reason)

    def _step(self, job_id: int) -> bool:
        """Do the next step of the job; False when it is finished or must wait."""
        with self.catalog.begin() as session:
            job = session.get(RestoreJob, job_id)
            assert job is not None
            state, mode, tier, days = job.state, job.mode, job.tier, job.days
            asset = snapshot(job.asset)
            source_url, asset_state = job.asset.source.url, job.asset.state
        if state in (RestoreJobState.DONE, RestoreJobState.FAILED):
            return False
        if state == RestoreJobState.COPIED:
            self._finish(job_id)
            return False
        if asset_state not in (AssetState.ARCHIVED, AssetState.RESTORED):
            self._set(
                job_id, RestoreJobState.FAILED, reason=f"{asset.key} is {asset_state.value}, not archived"
            )
            return False
        if mode == RestoreMode.REHYDRATE:
            # The record's image (its exact bytes, or within the sketch's tolerance), or IntegrityError.
            rendered = self.reader.rehydrate(asset)
            self._copy(job_id, source_url, asset, rendered.data, rendered.verified.describe())
            return True
        # ORIGINAL: ask the vault, wait for it, then copy.
        assert asset.vault_key is not None
        if state == RestoreJobState.REQUESTED:
            self.reader.vault.request_restore(asset.vault_key, tier or "Standard", days or 1)  # type: ignore[arg-type]
            self._set(job_id, RestoreJobState.IN_PROGRESS)
            return True
        if state == RestoreJobState.IN_PROGRESS:
            status = self.reader.vault.restore_state(asset.vault_key).status
            if status not in (RestoreStatus.AVAILABLE, RestoreStatus.NOT_ARCHIVED):
                return False  # still thawing: poll again later
            self._set(job_id, RestoreJobState.AVAILABLE)
            return True
        if state == RestoreJobState.AVAILABLE:
            try:
                data = self.reader.original(asset)
            except NotRestored:  # the restored copy expired before we copied it: ask again
                self._set(job_id, RestoreJobState.REQUESTED, reason="restored copy expired before the copy")
                return True
            self._copy(job_id, source_url, asset, data, "original")
            return True
        raise AssertionError(f"unhandled restore state {state}")

    def _copy(self, job_id: int, source_url: str, asset: ArchivedAsset, data: bytes, verified: str) -> None:
        key, store = asset.key, self.store(source_url)
        try:
            present = store.get(key)
        except NoSuchObject:
            present = None
        present_sha256 = sha256_hex(present) if present is not None else None
        # Ours: these bytes (an interrupted run of this job), the original, or the record's render
        # (exact, or the one an earlier restore put there). Anything else is not ours to replace.
        ours = (sha256_hex(data), asset.sha256, asset.rendered_sha256, asset.hot_sha256)
        if present is not None and present_sha256 not in ours:
            raise IntegrityError(
                f"{key} exists hot and is not the asset being restored: it was left as it is; "
                "move it away and restore again"
            )
        # A render already there serves a rehydration, and the original serves both; an original
        # restore replaces a render (the user asked for the byte-exact original).
        keep = present is not None and (verified != "original" or present_sha256 == asset.sha256)
        if keep:
            assert present is not None
            info, data = store.head(key), present
        else:
            info = store.put(key, data)
        with self.catalog.begin() as session:
            job = session.get(RestoreJob, job_id)
            assert job is not None
            job.state = RestoreJobState.COPIED
            row: Asset = job.asset
            digest = hashlib.sha256(data).hexdigest()
            queries.record_event(
                session,
                "restore-copied",
                row,
                job=job.id,
                size=len(data),
                sha256=digest,
                etag=info.etag,
                verified="original" if digest == asset.sha256 else verified,
            )
            # The hot object now is the restored one: a later sweep sees it as unchanged. The
            # original's size, ETag and SHA-256 stay what the vault copy is checked against.
            queries.set_hot_copy(row, sha256=digest, size=info.size, etag=info.etag)

    def _finish(self, job_id: int) -> None:
        with self.catalog.begin() as session:
            job = session.get(RestoreJob, job_id)
            assert job is not None
            # The vault's journal hears it first (a tombstone), so a rebuilt catalog knows it is hot.
            now = datetime.now(UTC)
            why = f"restore job {job.id} ({job.mode.value})"
            asset = job.asset
            writer = self._journal.writer
            self._journal.append([tombstone(asset.source.url, asset.key, "restored", why, now, writer)], now)
            job.state = RestoreJobState.DONE
            queries.set_state(session, job.asset, AssetState.RESTORED, job=job.id, mode=job.mode.value)


MAX_POLL_SECONDS = 300.0  # a Glacier restore takes minutes to hours: back off, bounded


def poll_until_done(
    advance: Callable[[int], list[JobView]],
    *,
    wait: bool,
    timeout: float | None,
    poll: float,
    on_wait: Callable[[list[JobView], float], None] = lambda jobs, interval: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[JobView]:
    """Advance every job once (`advance(pass_number)` returns their views); with `wait`, again after
    `poll` seconds, doubling up to MAX_POLL_SECONDS, until none is pending or `timeout` would pass.
    `on_wait(jobs, interval)` hears each wait before it starts."""
    deadline = None if timeout is None else clock() + timeout
    interval = poll
    passes = 0
    while True:
        passes += 1
        jobs = advance(passes)
        pending = [j for j in jobs if not j.finished]
        if not wait or not pending:
            return jobs
        if deadline is not None and clock() + interval > deadline:
            return jobs
        on_wait(jobs, interval)
        sleep(interval)
        interval = min(interval * 2, MAX_POLL_SECONDS)
