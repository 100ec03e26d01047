"""Reading an archived asset back: the one door through which the mount and restores get bytes.

Owns the rule that nothing unverified is served. A rehydrated render is returned when its SHA-256
equals the record's `rendered_sha256` ("exact"), or, when this machine's kernels changed a few
pixel values (another CPU generation, a GPU, float16), when its pixels are within the calibrated
tolerance of the record's render sketch (`archiver.gate.sketch`: "within-tolerance", with the
estimated PSNR). A vault original is returned only if it equals the asset's `sha256`. Anything
else raises (IntegrityError, ModelError, NotRestored), and callers decide what to do: the mount
falls back to the vault or fails the read, a restore job waits or fails. A record without a sketch
(made before sketches) gets one from its first exact render here.
Models are verified and loaded once per reader, then shared; so are the last packs read (see
`AssetReader._pack`), so reading every member of a pack downloads it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import Image

from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset, Model, Record
from archiver.errors import IntegrityError, NotFound, NotRestored
from archiver.gate import sketch as render_sketch
from archiver.read.models import load_for_reads
from archiver.storage import RestoreStatus, Vault
from archiver.storage.vault_format import PackMember, read_catalogued_member

if TYPE_CHECKING:
    from archiver.engine.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchivedAsset:
    """What a reader needs about one asset, detached from any session."""

    asset_id: int
    key: str
    sha256: str
    size: int
    vault_key: str | None
    vault_offset: int | None
    vault_length: int | None
    vault_is_pack: bool
    has_record: bool
    rendered_sha256: str | None
    rendered_size: int | None
    render_sketch: bytes | None = None
    hot_sha256: str | None = None  # what a restore put hot (the original, or a render), if any


Mode = Literal["exact", "within-tolerance", "original"]


def _render_slots(device: str) -> contextlib.AbstractContextManager[object]:
    """The machine-wide CPU slots a render on `device` holds (`archiver.cpuslots`); none on a GPU."""
    if device.startswith("cuda"):
        return contextlib.nullcontext()
    import torch

    from archiver.cpuslots import cpu_slots

    return cpu_slots(torch.get_num_threads())


@dataclass(frozen=True)
class TimedRender:
    seconds: float  # wall time of the render and its encoding, nothing else
    steps: int  # the denoising steps the record renders with


@dataclass(frozen=True)
class Verified:
    """How served bytes were shown to be the asset: the record's exact render, a render within the
    sketch's tolerance of it (`psnr`: estimated dB against the accepted render), or the original."""

    mode: Mode
    sha256: str  # of these bytes: what caches and ETags name them by
    size: int
    psnr: float | None = None

    @property
    def served_from(self) -> Literal["rehydrated", "original"]:
        return "original" if self.mode == "original" else "rehydrated"

    def describe(self) -> str:
        """One word or two, for xattrs, headers and logs: "exact", "within-tolerance 66.2 dB", "original"."""
        return f"{self.mode} {self.psnr:.1f} dB" if self.psnr is not None else self.mode


@dataclass(frozen=True)
class Rendered:
    data: bytes
    verified: Verified


def judge_render(
    data: bytes,
    pixels: Image.Image | None,
    rendered_sha256: str,
    stored_sketch: bytes | None,
    min_psnr: float,
) -> Verified:
    """Whether `data` (a render in the record's encoding, made from `pixels`) is the record's image;
    IntegrityError if not.

    Exact bytes are the record's render. Other bytes are this machine's render: its pixels' sketch
    is compared with the record's, and within `min_psnr` they are the same image (this machine's
    kernels differ), else another one, which is never served. The pixels are compared before
    encoding: a lossy encoder amplifies a level of drift into a changed block."""
    digest = sha256_hex(data)
    if digest == rendered_sha256:
        return Verified("exact", digest, len(data))
    if stored_sketch is None or pixels is None:
        raise IntegrityError(
            f"the render's bytes differ from the record's (sha256 {digest[:12]}…, expected "
            f"{rendered_sha256[:12]}…) and the record has no sketch to check the image against: "
            "this machine renders differently (device, precision, library versions); run "
            "`archiver model check NAME --backfill` where the records render exactly"
        )
    same, psnr = render_sketch.same_image(stored_sketch, pixels, min_psnr)
    if not same:
        raise IntegrityError(
            f"the render is not the record's image: estimated {psnr:.1f} dB from the accepted "
            f"render, under the {min_psnr:g} dB tolerance (sha256 {digest[:12]}…); it was not served"
        )
    return Verified("within-tolerance", digest, len(data), psnr)


def snapshot(asset: Asset) -> ArchivedAsset:
    record, vault = asset.record, asset.vault_object
    return ArchivedAsset(
        asset_id=asset.id,
        key=asset.key,
        sha256=asset.sha256 or "",
        size=asset.size,
        vault_key=vault.key if vault is not None else None,
        vault_offset=asset.vault_offset,
        vault_length=asset.vault_length,
        vault_is_pack=bool(vault and vault.is_pack),
        has_record=record is not None,
        rendered_sha256=record.rendered_sha256 if record is not None else None,
        rendered_size=record.rendered_size if record is not None else None,
        render_sketch=record.render_sketch if record is not None else None,
        hot_sha256=asset.hot_sha256,
    )


# Packs are up to pack_target (64 MiB by default) each: a reader keeps this many, and downloads
# at most this many at once, so it holds at most twice this many whatever the number of threads.
PACKS_KEPT = 2


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AssetReader:
    """Rehydrates records and reads vault originals, verifying both.

    Thread-safe: the mount calls one reader from several threads. Renders take turns (one at a
    time per process); vault reads do not wait for them, and two threads reading members of one
    pack share a single download of it (`_pack`).
    """

    def __init__(
        self,
        catalog: Catalog,
        vault: Vault,
        device: str = "cpu",
        load: Callable[[Model, str], LoadedModel] | None = None,
        min_psnr: float = render_sketch.DEFAULT_MIN_PSNR,
        wait_for_models: Callable[[], None] | None = None,
    ) -> None:
        self.catalog, self.vault, self.device = catalog, vault, device
        self.min_psnr = min_psnr
        # Called once per model, after this reader loaded it: the mount and the origin check the
        # device there (archiver/modelcheck.py `check_first_use`).
        self.on_model_loaded: Callable[[Model], None] | None = None
        self.on_close: Callable[[], None] | None = None  # stops what that hook started
        # How a model is loaded: a front end's `ModelPreload.load`, else on demand (archiver/read/models.py)
        self._load = load or load_for_reads
        # Called before every render: a front end's preload (`ModelPreload.wait`) holds renders back
        # until it is done, since the engine's imports (diffusers' lazy modules) are not safe to run
        # in two threads at once; a render's own imports come before its model is asked for.
        self._wait_for_models = wait_for_models
        self._models: dict[int, LoadedModel] = {}
        # The last packs read, least recently used first: restoring several members of one pack
        # downloads it once.
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._pack_flights: dict[str, Future[bytes]] = {}  # the pack downloads under way, by vault key
        self._pack_downloads = threading.BoundedSemaphore(PACKS_KEPT)
        self._packs_lock = threading.Lock()  # not the render lock: a vault read need not wait for a render
        self._lock = threading.Lock()  # one render at a time per process: torch uses every core anyway

    def close(self) -> None:
        """Stop the background work hooks started (the first-use device check), waiting for a render
        in progress: a thread left inside torch when the process exits aborts it."""
        if self.on_close is not None:
            self.on_close()

    def _model(self, model: Model) -> LoadedModel:
        if model.id not in self._models:
            self._models[model.id] = self._load(model, self.device)
            if self.on_model_loaded is not None:
                self.on_model_loaded(model)
        return self._models[model.id]

    def render(self, asset: ArchivedAsset) -> tuple[Image.Image, bytes]:
        """The asset's render on this machine, its pixels and its encoded bytes, unverified: callers
        judge it (`rehydrate` does)."""
        pixels, data, _ = self.timed_render(asset)
        return pixels, data

    def timed_render(self, asset: ArchivedAsset) -> tuple[Image.Image, bytes, TimedRender]:
        """`render`, and what the render alone took (`model check` prices renders by it): timed
        inside the render lock, after the model is loaded, so neither a wait for another read's
        render nor a first load counts."""
        if self._wait_for_models is not None:
            self._wait_for_models()
        from archiver.engine.encoding import EncodingProfile
        from archiver.engine.rehydrate import RenderSpec, render_and_encode

        if not asset.has_record:
            raise NotFound(f"{asset.key} has no record: it was never verified, nothing to rehydrate")
        with self.catalog.begin() as session:
            record = session.get(Record, asset.asset_id)
            assert record is not None
            spec = RenderSpec.from_record(record)
            profile = EncodingProfile.from_json(record.encoding_profile.body)
            model = record.model
        with self._lock:
            loaded = self._model(model)
            # On the CPU the render's slots are taken before the clock starts (the render's own
            # `cpu_slots` then takes nothing more): a wait for another process's render is not
            # what this render costs.
            with _render_slots(self.device):
                started = time.perf_counter()
                pixels, data = render_and_encode(loaded, spec, profile)
                seconds = time.perf_counter() - started
        return pixels, data, TimedRender(seconds, spec.steps)

    def rehydrate(self, asset: ArchivedAsset) -> Rendered:
        """Render the asset from its record and verify it (exact, or within the sketch's tolerance);
        IntegrityError if it is another image, or differs and the record has no sketch."""
        pixels, data = self.render(asset)
        try:
            verified = judge_render(
                data, pixels, asset.rendered_sha256 or "", asset.render_sketch, self.min_psnr
            )
        except IntegrityError as exc:
            raise IntegrityError(f"rehydrating {asset.key}: {exc}") from None
        if verified.mode == "exact" and asset.render_sketch is None and asset.has_record:
            try:
                self.backfill_sketch(asset.asset_id, pixels)
            except Exception as exc:  # the read is verified either way; the sketch can come later
                log.warning("%s: could not store its render sketch: %s", asset.key, exc)
        return Rendered(data, verified)

    def backfill_sketch(self, asset_id: int, exact_render: Image.Image) -> bytes:
        """Store the sketch of the pixels of a record's exact render, if the record has none yet
        (records made before sketches): from now on other devices can verify their renders of it."""
        from archiver.catalog import queries

        made = render_sketch.sketch(exact_render)
        with self.catalog.begin() as session:
            queries.set_render_sketch(session, asset_id, made)
        return made

    def vault_readable(self, asset: ArchivedAsset) -> bool:
        if asset.vault_key is None:
            return False
        return self.vault.restore_state(asset.vault_key).status in (
            RestoreStatus.NOT_ARCHIVED,
            RestoreStatus.AVAILABLE,
        )

    def _pack(self, key: str) -> bytes:
        """The whole pack at vault key `key`: one of the last PACKS_KEPT read, else one GET.

        Single-flight: threads asking for a pack that is being downloaded wait for that download
        and share its bytes, or its error (NotRestored, a damaged copy): one GET either way. A
        failure is not kept, so the next ask after it tries the vault again.
        """
        with self._packs_lock:
            if key in self._packs:
                self._packs.move_to_end(key)
                return self._packs[key]
            under_way = self._pack_flights.get(key)
            if under_way is None:
                flight: Future[bytes] = Future()
                self._pack_flights[key] = flight
        if under_way is not None:
            return under_way.result()
        try:
            with self._pack_downloads:
                data = self.vault.get(key)
        except BaseException as error:
            with self._packs_lock:
                del self._pack_flights[key]
            flight.set_exception(error)
            raise
        with self._packs_lock:
            self._packs[key] = data
            while len(self._packs) > PACKS_KEPT:
                self._packs.popitem(last=False)
            del self._pack_flights[key]
        flight.set_result(data)
        return data

    def original(self, asset: ArchivedAsset) -> bytes:
        """The byte-exact original from the vault (NotRestored until a restore makes it readable)."""
        if asset.vault_key is None:
            raise NotFound(f"{asset.key} has no vault copy")
        if asset.vault_is_pack:
            member = PackMember(
                asset.key, asset.sha256, asset.size, asset.vault_offset or 0, asset.vault_length or 0
            )
            data = read_catalogued_member(self._pack(asset.vault_key), member)
        else:
            # A single original is read by itself: nothing else needs its bytes, so none are kept.
            data = self.vault.get(asset.vault_key)
        if sha256_hex(data) != asset.sha256:
            raise IntegrityError(
                f"the vault copy of {asset.key} does not match its recorded SHA-256: it is damaged; "
                "nothing was changed (restore it from another copy of the vault)"
            )
        return data


__all__ = ["ArchivedAsset", "AssetReader", "NotRestored", "snapshot"]
