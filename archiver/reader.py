"""Reading an archived asset back: the one door through which the mount and restores get bytes.

Owns the rule that nothing unverified is served: a rehydrated render is returned only if its
SHA-256 equals the record's `rendered_sha256`; a vault original only if it equals the asset's
`sha256`. Anything else raises (IntegrityError, ModelError, NotRestored), and callers decide what
to do: the mount falls back to the vault or fails the read, a restore job waits or fails.
Models are verified and loaded once per reader, then shared; so are the last packs read (see
`AssetReader._pack`), so reading every member of a pack downloads it once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset, Model, Record
from archiver.errors import IntegrityError, NotFound, NotRestored
from archiver.storage import RestoreStatus, Vault
from archiver.storage.vault_format import PackMember, read_member

if TYPE_CHECKING:
    from archiver.engine.registry import LoadedModel


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
    record_id: int | None
    rendered_sha256: str | None
    rendered_size: int | None


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
        record_id=record.id if record is not None else None,
        rendered_sha256=record.rendered_sha256 if record is not None else None,
        rendered_size=record.rendered_size if record is not None else None,
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
    ) -> None:
        self.catalog, self.vault, self.device = catalog, vault, device
        self._load = load
        self._models: dict[int, LoadedModel] = {}
        # The last packs read, least recently used first: restoring several members of one pack
        # downloads it once.
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._pack_flights: dict[str, Future[bytes]] = {}  # the pack downloads under way, by vault key
        self._pack_downloads = threading.BoundedSemaphore(PACKS_KEPT)
        self._packs_lock = threading.Lock()  # not the render lock: a vault read need not wait for a render
        self._lock = threading.Lock()  # one render at a time per process: torch uses every core anyway

    def _model(self, model: Model) -> LoadedModel:
        if model.id not in self._models:
            if self._load is not None:
                self._models[model.id] = self._load(model, self.device)
            else:
                from archiver.engine.registry import load_model
                from archiver.engine.rendering import enable_determinism

                enable_determinism()
                self._models[model.id] = load_model(model, device=self.device)
        return self._models[model.id]

    def rehydrate(self, asset: ArchivedAsset) -> bytes:
        """Render the asset from its record; raise IntegrityError if the bytes are not the promised ones."""
        from archiver.engine.encoding import EncodingProfile
        from archiver.engine.rehydrate import RenderSpec, rehydrate

        if asset.record_id is None:
            raise NotFound(f"{asset.key} has no record: it was never verified, nothing to rehydrate")
        with self.catalog.begin() as session:
            record = session.get(Record, asset.record_id)
            assert record is not None
            spec = RenderSpec.from_record(record)
            profile = EncodingProfile.from_json(record.encoding_profile.body)
            model = record.model
        with self._lock:
            data = rehydrate(self._model(model), spec, profile)
        if sha256_hex(data) != asset.rendered_sha256:
            raise IntegrityError(
                f"rehydrating {asset.key} gave bytes other than its record promises (sha256 "
                f"{sha256_hex(data)[:12]}…, expected {(asset.rendered_sha256 or '')[:12]}…): this machine "
                "renders differently (device, precision, library versions); the vault original is a fallback"
            )
        return data

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
            data = read_member(self._pack(asset.vault_key), member)
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
