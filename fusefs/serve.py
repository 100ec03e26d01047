"""What an open file in the mount returns: cached bytes, a render, the vault original, or an errno.

Owns the read policy (no fusepy, no paths): for an asset, the verified bytes come from
  1. the on-disk cache (re-hashed against the record when loaded),
  2. a render through `AssetReader.rehydrate` (which raises unless the bytes hash to the record's
     rendered_sha256), run once however many readers open the file at once,
  3. on any render failure (ModelError: a model missing or changed; IntegrityError: hash drift;
     any engine error), the vault original, if the vault can read it now (`AssetReader.original`
     verifies it against the original's SHA-256),
  4. otherwise nothing: `Unavailable` with EREMOTE, one log line naming the asset and the reason,
     and a restore request filed (RestoreMode.ORIGINAL, tier Standard) so a later read can succeed.
It never returns unverified bytes and never waits longer than `read_timeout` for a render.
Verified bytes also stay in memory (an LRU of `memory_bytes`), keyed like the disk cache by the
record's rendered_sha256, so a warm open costs no catalog query, disk read or re-hash.

Why EREMOTE for "only in the archive tier": the object really is remote ("Object is remote" is
what cp, tar and rsync print), no tool retries it or spins on it (EAGAIN invites retry loops in
readers that treat it as "would block"), and it is not confused with a permissions problem
(EACCES, mountpoint-s3's choice, sends users to chmod and sudo, which cannot help). s3fs answers
EREMOTE for the same case. EIO is kept for real damage: a vault copy that fails its checksum, or a
vault that cannot be reached. ETIMEDOUT means a render is still running after `read_timeout`; it
carries on and fills the cache, so opening the file again later succeeds.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Literal

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import RestoreMode
from archiver.errors import ArchiverError
from archiver.reader import ArchivedAsset, AssetReader, snapshot
from archiver.restore.jobs import request_restore
from fusefs.cache import DiskCache, SingleFlight
from fusefs.tree import FileEntry, NoSuchPath

log = logging.getLogger("fusefs")

Origin = Literal["rehydrated", "original"]


@dataclass(frozen=True)
class Served:
    """Verified bytes for one open, and which of the asset's two verified forms they are."""

    data: bytes
    origin: Origin


class Unavailable(Exception):
    """No verified bytes can be served now; `errno` is what the read answers (see the module doc)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = code


class Server:
    """Serves verified bytes per asset; thread-safe, one instance per mount."""

    def __init__(
        self,
        catalog: Catalog,
        reader: AssetReader,
        cache: DiskCache,
        *,
        workers: int = 2,
        read_timeout: float = 120.0,
        retry_render_after: float = 300.0,
        memory_bytes: int = 256 << 20,
    ) -> None:
        self.catalog, self.reader, self.cache = catalog, reader, cache
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, Served] = OrderedDict()  # rendered_sha256 -> verified bytes
        self._memory_total = 0
        self.read_timeout, self.retry_render_after = read_timeout, retry_render_after
        self._flight: SingleFlight[Served] = SingleFlight(workers)
        self._lock = threading.Lock()
        self._failed: dict[int, tuple[float, str]] = {}  # asset id -> (when, why its render failed)
        self.renders: Counter[int] = Counter()  # renders per asset by this process: proof of single-flight
        self.served: dict[int, Origin] = {}

    def served_size(self, entry: FileEntry) -> int:
        """The size reads return: the record's rendered_size, or the original's once it is served."""
        if self.served.get(entry.asset_id) == "original":
            with self.catalog.begin() as session:
                asset = queries.mount_asset(session, entry.asset_id)
                if asset is not None:
                    return asset.size
        return entry.size

    def open(self, entry: FileEntry) -> Served:
        """The verified bytes of `entry`, or Unavailable. Concurrent opens of one asset share the work."""
        served = self._recall(entry.rendered_sha256)
        if served is None:
            asset = self._asset(entry)
            # The disk cache answers in the caller's thread; only a miss takes a flight and a worker.
            served = self._cached(asset) or self._wait(entry, asset)
        self._remember(entry.rendered_sha256, served)
        self.served[entry.asset_id] = served.origin
        return served

    def _wait(self, entry: FileEntry, asset: ArchivedAsset) -> Served:
        future = self._flight.run(str(entry.asset_id), lambda: self._produce(asset))
        try:
            return future.result(timeout=self.read_timeout)
        except FutureTimeout:
            raise Unavailable(
                errno.ETIMEDOUT,
                f"{entry.key}: still rendering after {self.read_timeout:g} s; open it again later",
            ) from None

    def _recall(self, rendered_sha256: str) -> Served | None:
        with self._lock:
            served = self._memory.get(rendered_sha256)
            if served is not None:
                self._memory.move_to_end(rendered_sha256)
            return served

    def _remember(self, rendered_sha256: str, served: Served) -> None:
        if len(served.data) > self.memory_bytes:
            return
        with self._lock:
            if rendered_sha256 in self._memory:
                return
            self._memory[rendered_sha256] = served
            self._memory_total += len(served.data)
            while self._memory_total > self.memory_bytes:
                _, dropped = self._memory.popitem(last=False)
                self._memory_total -= len(dropped.data)

    def _cached(self, asset: ArchivedAsset) -> Served | None:
        if asset.rendered_sha256 and (data := self.cache.get(asset.rendered_sha256)) is not None:
            return Served(data, "rehydrated")
        if asset.sha256 and (data := self.cache.get(asset.sha256)) is not None:
            return Served(data, "original")  # a fallback served before: the byte-exact original
        return None

    def _produce(self, asset: ArchivedAsset) -> Served:
        # Checked again inside the flight: a reader that missed the cache just before another
        # flight for this asset finished must not render it a second time.
        cached = self._cached(asset)
        if cached is not None:
            return cached
        reason = self._recent_failure(asset.asset_id)
        if reason is None:
            try:
                return self._render(asset)
            except Exception as exc:  # any engine error falls back: never served, never hidden
                reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                with self._lock:
                    self._failed[asset.asset_id] = (time.monotonic(), reason)
        return self._fallback(asset, reason)

    def _asset(self, entry: FileEntry) -> ArchivedAsset:
        with self.catalog.begin() as session:
            row = queries.mount_asset(session, entry.asset_id)
            if row is None:
                raise NoSuchPath(f"{entry.key}: no longer in the catalog")
            return snapshot(row)

    def _recent_failure(self, asset_id: int) -> str | None:
        with self._lock:
            failed = self._failed.get(asset_id)
        if failed is None or time.monotonic() - failed[0] > self.retry_render_after:
            return None
        return failed[1]

    def _render(self, asset: ArchivedAsset) -> Served:
        with self._lock:
            self.renders[asset.asset_id] += 1  # attempts, failed ones included
        started = time.perf_counter()
        data = self.reader.rehydrate(asset)  # raises unless sha256(data) == rendered_sha256
        log.info("rendered %s in %.2f s (asset %d)", asset.key, time.perf_counter() - started, asset.asset_id)
        assert asset.rendered_sha256 is not None
        self.cache.put(asset.rendered_sha256, data)
        return Served(data, "rehydrated")

    def _fallback(self, asset: ArchivedAsset, reason: str) -> Served:
        try:
            readable = self.reader.vault_readable(asset)
            if readable:
                data = self.reader.original(asset)  # raises unless it hashes to the original's SHA-256
                self.cache.put(asset.sha256, data)
                log.warning("%s: served the vault original: the render failed (%s)", asset.key, reason)
                return Served(data, "original")
        except ArchiverError as exc:  # a damaged or unreachable vault copy: a real failure, not "remote"
            log.error(
                "%s: cannot be served: the render failed (%s) and the vault failed: %s",
                asset.key,
                reason,
                exc,
            )
            raise Unavailable(errno.EIO, f"{asset.key}: {exc}") from None
        job = self._request_restore(asset, reason)
        log.error(
            "%s: cannot be served (EREMOTE): the render failed (%s) and the vault copy is in the archive "
            "tier; restore requested (job %s)",
            asset.key,
            reason,
            job,
        )
        raise Unavailable(errno.EREMOTE, f"{asset.key}: archived only; restore requested")

    def _request_restore(self, asset: ArchivedAsset, reason: str) -> int | None:
        try:
            with self.catalog.begin() as session:
                row = queries.mount_asset(session, asset.asset_id)
                if row is None:
                    return None
                job = request_restore(
                    session, row, RestoreMode.ORIGINAL, tier="Standard", reason=f"mount read: {reason}"
                )
                return job.id
        except ArchiverError as exc:  # the read fails either way; say why the request did not land
            log.error("%s: could not file a restore request: %s", asset.key, exc)
            return None

    def shutdown(self) -> None:
        self._flight.shutdown()
