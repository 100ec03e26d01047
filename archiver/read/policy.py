"""The product's read path: the verified bytes of an archived asset, whoever asks for them.

Owns the read policy that the mount (fusefs/adapter.py) and the HTTP origin (archiver/http/origin/)
both call. It knows nothing of FUSE, paths or HTTP. For an asset, the verified bytes come from
  1. memory: an LRU of `memory_bytes` of verified bytes, keyed by the record's rendered_sha256,
     so a warm read costs no catalog query, disk read or re-hash;
  2. the on-disk cache (archiver/cache.py: content-addressed, re-hashed when loaded). A render
     that was verified within the sketch's tolerance (this machine's kernels differ from the
     sweep's) is stored under its own bytes' hash, linked from the record's, and its sketch is
     checked again when loaded: bytes are never cached or served under another render's hash;
  3. a render through `AssetReader.rehydrate` (which raises unless the bytes are the record's, or
     within its sketch's tolerance), run once however many readers ask at once, on `workers`
     threads (`SingleFlight`; with `max_waiting`, a new render beyond the queue is refused at once);
  4. on any render failure (ModelError: a model missing or changed; IntegrityError: another image;
     any engine error), the vault original, if the vault can read it now (`AssetReader.original`
     verifies it against the original's SHA-256);
  5. otherwise nothing: `Remote`, after filing an ORIGINAL/Standard restore job (idempotently,
     through archiver/restore/jobs.py) so that a later read can succeed.
It must not return unverified bytes, and never waits longer than `read_timeout` for a render.

Outcomes other than bytes are exceptions (`Unavailable` and its kinds, or NotFound), each mapped in
one place by its front end, and each saying in its message what happened and to which asset:

- `Remote`: the render failed and the original is in the archive tier; a restore was requested.
  The mount answers EREMOTE, the origin 503 with Retry-After.
- `VaultFailed`: the render failed and the vault copy is damaged or unreachable (EIO; 502).
- `StillRendering`: a render still running after `read_timeout`; it goes on and fills the cache
  (ETIMEDOUT; 503 with Retry-After).
- `NoRender`: only with `renders_only` (the review page): the render failed, and no fallback is
  tried (no original is served, no restore is filed).
- `Busy`: the render queue is full; only with `max_waiting`, which the mount does not set (EAGAIN;
  503 with Retry-After, at once).
- `NotFound`: the asset left the catalog since it was looked up (ENOENT; 404).

Callers log outcomes in their own terms; this module logs what happened to the asset (a render,
a fallback to the vault original).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Literal, Protocol

from archiver.cache import DiskCache, QueueFull, SingleFlight
from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import RestoreMode
from archiver.errors import ArchiverError, NotFound
from archiver.read.reader import ArchivedAsset, AssetReader, Verified, sha256_hex, snapshot

log = logging.getLogger(__name__)

ServedFrom = Literal["rehydrated", "original"]  # where served bytes came from
Layer = Literal["memory", "disk"]

BUSY_RETRY_SECONDS = 1.0  # a full queue drains in about one render
RENDERING_RETRY_SECONDS = 5.0  # a render that outlived read_timeout is a slow one


class AssetRef(Protocol):
    """What a caller names an asset by: its id, its key (for messages) and what its record promises."""

    @property
    def asset_id(self) -> int: ...

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...  # the record's rendered_size

    @property
    def rendered_sha256(self) -> str: ...


class ReadObserver(Protocol):
    """Told what the policy did, for metrics (the origin's /metrics); the mount passes none."""

    def hit(self, layer: Layer) -> None: ...

    def rendered(self, seconds: float, ok: bool) -> None: ...

    def verified_as(self, how: Verified) -> None: ...


@dataclass(frozen=True)
class Served:
    """Verified bytes for one read, and how they were verified (which of the asset's forms they are)."""

    data: bytes
    verified: Verified

    @property
    def served_from(self) -> ServedFrom:
        return self.verified.served_from


class Unavailable(Exception):
    """No verified bytes can be served now (see the module doc); `retry_after` is when to try again,
    in seconds, where trying again can help."""

    retry_after: float | None = None


class Remote(Unavailable):
    """The render failed and the original is only in the archive tier; a restore was requested."""

    def __init__(self, message: str, job_id: int | None, retry_after: float) -> None:
        super().__init__(message)
        self.job_id, self.retry_after = job_id, retry_after


class VaultFailed(Unavailable):
    """The render failed and the vault copy could not be read or failed its checksum: real damage."""


class NoRender(Unavailable):
    """No verified render, and this policy serves renders only (`renders_only`: the review page)."""


class StillRendering(Unavailable):
    retry_after = RENDERING_RETRY_SECONDS


class Busy(Unavailable):
    retry_after = BUSY_RETRY_SECONDS


class ReadPolicy:
    """Serves verified bytes per asset; thread-safe, one instance per process (mount or origin)."""

    def __init__(
        self,
        catalog: Catalog,
        reader: AssetReader,
        cache: DiskCache,
        *,
        workers: int = 2,
        max_waiting: int | None = None,
        read_timeout: float = 120.0,
        retry_render_after: float = 300.0,
        memory_bytes: int = 256 << 20,
        observer: ReadObserver | None = None,
        requested_by: str = "mount",
        renders_only: bool = False,
    ) -> None:
        self.catalog, self.reader, self.cache = catalog, reader, cache
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, Served] = OrderedDict()  # rendered_sha256 -> verified bytes
        self._memory_total = 0
        self.read_timeout, self.retry_render_after = read_timeout, retry_render_after
        self.observer, self.requested_by = observer, requested_by
        # Without the fallbacks (a cached or vault original, a restore request): NoRender instead.
        self.renders_only = renders_only
        self._flight: SingleFlight[Served] = SingleFlight(workers, max_waiting)
        self._lock = threading.Lock()
        self._failed: dict[int, tuple[float, str]] = {}  # asset id -> (when, why its render failed)
        self.renders: Counter[int] = Counter()  # renders per asset by this process: proof of single-flight
        self.served: dict[int, Verified] = {}  # how the last read of each asset was verified

    def served_size(self, ref: AssetRef) -> int:
        """The size reads return: the record's rendered_size until a read returned other bytes (the
        original, or this machine's render within tolerance), then theirs."""
        last = self.served.get(ref.asset_id)
        return ref.size if last is None else last.size

    def recall(self, ref: AssetRef) -> Served | None:
        """The verified bytes if memory holds them; never blocks on I/O (an event loop may call it)."""
        served = self._recall(ref.rendered_sha256)
        if served is not None:
            self.served[ref.asset_id] = served.verified
            if self.observer is not None:
                self.observer.hit("memory")
        return served

    def read(self, ref: AssetRef) -> Served:
        """The verified bytes of `ref`, or Unavailable/NotFound. Concurrent reads of one asset share
        the work. Blocks (catalog, disk, a render): call it from a thread, not an event loop."""
        served = self.recall(ref)
        if served is not None:
            return served
        asset = self._asset(ref)
        # The disk cache answers in the caller's thread; only a miss takes a flight and a worker.
        served = self._cached(asset)
        if served is not None:
            if self.observer is not None:
                self.observer.hit("disk")
        else:
            served = self._wait(ref, asset)
        self._remember(ref.rendered_sha256, served)
        self.served[ref.asset_id] = served.verified
        if self.observer is not None:
            self.observer.verified_as(served.verified)
        return served

    def queue_depth(self) -> int:
        """Renders (and vault fallbacks) running or waiting for a worker."""
        return self._flight.depth()

    def _wait(self, ref: AssetRef, asset: ArchivedAsset) -> Served:
        try:
            future = self._flight.run(str(ref.asset_id), lambda: self._produce(asset))
        except QueueFull as full:
            raise Busy(
                f"{ref.key}: not rendered: the render queue is full ({full}); try again shortly"
            ) from None
        try:
            return future.result(timeout=self.read_timeout)
        except FutureTimeout:
            raise StillRendering(
                f"{ref.key}: still rendering after {self.read_timeout:g} s; read it again later"
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
        if asset.rendered_sha256:
            if (data := self.cache.get(asset.rendered_sha256)) is not None:
                return Served(data, Verified("exact", asset.rendered_sha256, len(data)))
            if (linked := self.cache.get_linked(asset.rendered_sha256)) is not None:
                # This machine's render of the record, verified within tolerance of the sketch the
                # note names: still the record's, unless its sketch or the tolerance changed since.
                data, note = linked
                how = _trusted_link(data, note, asset.render_sketch, self.reader.min_psnr)
                if how is not None:
                    return Served(data, how)
                log.warning("%s: a cached render verified against another sketch is dropped", asset.key)
                self.cache.unlink(asset.rendered_sha256)
        if not self.renders_only and asset.sha256 and (data := self.cache.get(asset.sha256)) is not None:
            # A fallback served before: the byte-exact original.
            return Served(data, Verified("original", asset.sha256, len(data)))
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

    def _asset(self, ref: AssetRef) -> ArchivedAsset:
        with self.catalog.begin() as session:
            row = queries.archived_asset(session, ref.asset_id)
            if row is None:
                raise NotFound(f"{ref.key}: no longer in the catalog")
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
        try:
            rendered = self.reader.rehydrate(asset)  # raises unless it is the record's image
        except Exception:
            if self.observer is not None:
                self.observer.rendered(time.perf_counter() - started, False)
            raise
        seconds = time.perf_counter() - started
        if self.observer is not None:
            self.observer.rendered(seconds, True)
        how = rendered.verified
        log.info("rendered %s in %.2f s (asset %d): %s", asset.key, seconds, asset.asset_id, how.describe())
        assert asset.rendered_sha256 is not None
        self.cache.put(how.sha256, rendered.data)
        if how.mode != "exact" and how.psnr is not None:  # under its own hash, linked from the record's
            self.cache.link(asset.rendered_sha256, how.sha256, _link_note(how.psnr, asset.render_sketch))
        return Served(rendered.data, how)

    def _fallback(self, asset: ArchivedAsset, reason: str) -> Served:
        if self.renders_only:
            raise NoRender(f"{asset.key}: no verified render: {reason}")
        try:
            readable = self.reader.vault_readable(asset)
            if readable:
                data = self.reader.original(asset)  # raises unless it hashes to the original's SHA-256
                self.cache.put(asset.sha256, data)
                log.warning("%s: served the vault original: the render failed (%s)", asset.key, reason)
                return Served(data, Verified("original", asset.sha256, len(data)))
        except ArchiverError as exc:  # a damaged or unreachable vault copy: a real failure, not "remote"
            raise VaultFailed(
                f"{asset.key}: cannot be served: the render failed ({reason}) and the vault failed: {exc}"
            ) from None
        job = self._request_restore(asset, reason)
        filed = f"restore requested (job {job})" if job is not None else "the restore request failed"
        raise Remote(
            f"{asset.key}: cannot be served now: the render failed ({reason}) and the vault copy is in "
            f"the archive tier; {filed}",
            job,
            self.retry_render_after,
        )

    def _request_restore(self, asset: ArchivedAsset, reason: str) -> int | None:
        try:
            with self.catalog.begin() as session:
                row = queries.archived_asset(session, asset.asset_id)
                if row is None:
                    return None
                job = queries.request_restore(
                    session,
                    row,
                    RestoreMode.ORIGINAL,
                    tier="Standard",
                    reason=f"{self.requested_by} read: {reason}",
                )
                return job.id
        except ArchiverError as exc:  # the read fails either way; say why the request did not land
            log.error("%s: could not file a restore request: %s", asset.key, exc)
            return None

    def shutdown(self) -> None:
        self._flight.shutdown()
        self.reader.close()


def _link_note(psnr: float, render_sketch: bytes | None) -> str:
    """How a render cached by link was verified: its estimated PSNR and which sketch it was held to."""
    return f"{psnr:.3f} {sha256_hex(render_sketch or b'')[:16]}"


def _trusted_link(data: bytes, note: str, render_sketch: bytes | None, min_psnr: float) -> Verified | None:
    try:
        psnr_text, sketch_id = note.split(" ")
        psnr = float(psnr_text)
    except ValueError:
        return None
    if render_sketch is None or sketch_id != sha256_hex(render_sketch)[:16] or psnr < min_psnr:
        return None
    return Verified("within-tolerance", sha256_hex(data), len(data), psnr)
