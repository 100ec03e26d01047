"""The sweep's state machine: the crash-safe swap of verified images for records.

Owns the order of the steps and nothing else (filters, costs and the vault format have their own
modules):

    listed ─filters─► candidate ─gate─► verified ─vault put + checksum read back─► vaulted
           ─record journaled in the vault─► ─delete if unchanged─► archived
                                                 (or rejected, with a reason; stays hot)

It banks as it goes: after every `bank_every` proofs (or `bank_seconds`, whichever comes first) the
verified originals so far are vaulted (packs cut there), journaled and released, so a sweep stopped
anywhere has archived what it proved before its last bank, and the next run frees the rest.
Each arrow is committed on its own, and a step only starts from the state the previous one
committed, so a sweep killed anywhere resumes where it stopped and re-running a finished sweep
changes nothing. The hot copy is deleted only after (a) the record and gate report are committed,
(b) the vault copy's SHA-256 was read back and matched, (c) the record is in the vault's journal
(`archiver.journal`, its segment confirmed), and (d) the hot object is unchanged since it was
verified. Assets are claimed with a conditional UPDATE, so two sweeps never process the
same asset; claims of a worker that died on this host are taken over at once, others expire.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy.exc

from archiver.captionkeys import SAME_KEYS, CaptionKeys, caption_hint
from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import AssetState, Source
from archiver.engine.manifests import read_captions
from archiver.engine.registry import LoadedModel
from archiver.errors import AuthorizationError, NoSuchObject, ObjectChanged, UnsafeKey
from archiver.gate import Gate
from archiver.imagetypes import is_image_key
from archiver.journal import JournalWriter, put_entry, tombstone
from archiver.prove import GroupProver, Proof, SearchLimits
from archiver.storage import HotStore, ObjectInfo, Vault, VaultCopy
from archiver.storage.vault_format import build_pack, object_metadata, original_key, pack_groups, pack_key
from archiver.sweep.filters import Filters
from archiver.workers import is_dead_local_worker, new_worker_id

# Test-only: a sweep kills itself with SIGKILL right after the named boundary (see BOUNDARIES).
log = logging.getLogger(__name__)
T = TypeVar("T")
KILL_AT_ENV = "ARCHIVER_TEST_KILL_AT"
UPSERT_ATTEMPTS = 3  # source and asset inserts, retried when a concurrent sweep inserted them first
UNLISTED_NAMED = 1000  # entries that are not objects, named in the summary (all are counted)
HOT_BYTES_KEPT = 256 * 1024 * 1024  # verified originals held for the vault step, at most
BOUNDARIES = ("claimed", "verified", "vault-uploaded", "vaulted", "journaled", "hot-deleted", "archived")


_passed: Counter[str] = Counter()


def boundary(name: str) -> None:
    """A named point between two steps; the crash tests die here (a real SIGKILL, no cleanup):
    `ARCHIVER_TEST_KILL_AT=verified` at the first time, `verified:5` at the fifth."""
    assert name in BOUNDARIES, name
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    at, _, nth = wanted.partition(":")
    if at == name:
        _passed[name] += 1
        if _passed[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class SweepConfig:
    model: str
    filters: Filters
    pack_threshold: int = 1 << 20  # originals smaller than this go into packs
    pack_target: int = 64 << 20  # a pack is cut once it would grow past this
    lease: timedelta = timedelta(minutes=30)
    journal_storage_class: str = "STANDARD"  # the record journal's: readable without a restore
    caption_keys: CaptionKeys = SAME_KEYS  # where the model was trained at another root
    # Keep vaulted assets' hot copies until a person approves them (archiver/http/review/, `release`).
    require_review: bool = False
    # Bank as it goes: vault, journal and release what was proved after this many proofs, or this
    # many seconds since the last bank, whichever comes first (and at the end).
    bank_every: int = 128
    bank_seconds: float = 30.0


@dataclass
class SweepSummary:
    source: str
    scanned: int = 0
    candidates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # by filter reason
    busy: int = 0  # claimed by another running sweep
    verified: int = 0
    vault_objects: int = 0
    archived: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by gate/input reason (the first only)
    # Every check that refused each rejected image (an image the colour and PSNR checks both refused
    # counts under both): which threshold stands between a group and its archive.
    rejected_checks: Counter[str] = field(default_factory=Counter)
    not_deleted: Counter[str] = field(default_factory=Counter)  # vaulted, hot copy kept, by reason
    held: int = 0  # vaulted, hot copy kept until a person approves (`--require-review`)
    bytes_freed: int = 0
    archived_sizes: list[int] = field(default_factory=list)  # for the saving estimate
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step, summed over banks
    banks: int = 0  # times the run vaulted, journaled and released what it had proved so far
    steps_rendered: int = 0  # denoising steps rendered by the proofs this run committed
    steps: Counter[int] = field(default_factory=Counter)  # records made, by their step count
    # Entries of the source that are not addressable objects (symlink, not-a-file, unsafe-key): counted
    # in `skipped` like the filters' reasons, and named here (the first UNLISTED_NAMED of them).
    unlisted: list[tuple[str, str]] = field(default_factory=list)
    # One line when keys got no caption but would with another caption prefix (`captionkeys`).
    hint: str | None = None

    def not_an_object(self, key: str, reason: str) -> None:
        """The listing's `on_skip`: an entry the scan saw but cannot take."""
        self.scanned += 1
        self.skipped[reason] += 1
        if len(self.unlisted) < UNLISTED_NAMED:
            self.unlisted.append((key, reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "scanned": self.scanned,
            "candidates": self.candidates,
            "skipped": dict(sorted(self.skipped.items())),
            "unlisted": [{"key": key, "reason": reason} for key, reason in self.unlisted],
            "busy": self.busy,
            "verified": self.verified,
            "vault_objects": self.vault_objects,
            "archived": self.archived,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_checks": dict(sorted(self.rejected_checks.items())),
            "not_deleted": dict(sorted(self.not_deleted.items())),
            "held": self.held,
            "bytes_freed": self.bytes_freed,
            "seconds": {step: round(t, 3) for step, t in self.seconds.items()},
            "banks": self.banks,
            "steps_rendered": self.steps_rendered,
            "records_by_steps": {str(n): count for n, count in sorted(self.steps.items())},
            "hint": self.hint,
        }


class SweepProgress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, key: str, passed: bool) -> None: ...


class Sweep:
    """One sweep of one source. Collaborators are handed in; the model loads only if needed.
    Without `load_model`, `gate` and `limits` it can only `release` (see `release_approved`)."""

    def __init__(
        self,
        catalog: Catalog,
        store: HotStore,
        vault: Vault,
        config: SweepConfig,
        *,
        load_model: Callable[[], LoadedModel] | None = None,
        gate: Callable[[], Gate] | None = None,
        limits: SearchLimits | None = None,
        progress: SweepProgress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.catalog, self.store, self.vault, self.config = catalog, store, vault, config
        self._load_model, self._gate, self.limits = load_model, gate, limits
        self._progress = progress
        self.clock = clock
        self.worker = new_worker_id()
        # The source is the bucket or directory (store.url); an S3 prefix only selects its keys.
        self.summary = SweepSummary(source=f"{store.url}/{store.selection}".rstrip("/"))
        # Verified originals kept for the vault step, up to HOT_BYTES_KEPT (beyond that it reads
        # them again): memory stays bounded however large the group.
        self._hot_bytes: dict[str, bytes] = {}
        self._hot_bytes_total = 0  # kept beside the dict: summing it per image would grow with the group
        self._source_images: dict[str, ObjectInfo] = {}  # every image listed, filtered or not
        self._captions: dict[str, str] | None = None  # the model's, read when first needed
        self._no_caption: list[str] = []  # keys this run rejected for want of a caption
        self._journal = JournalWriter(vault, config.journal_storage_class, self.worker)

    # --- the whole run ---

    def run(self) -> SweepSummary:
        source_id = self._insert_racing(self._add_source)
        with self._timed("discover"):
            listed = self.discover(source_id)
        with self._timed("claim"):
            self.claim_work(source_id)
        boundary("claimed")
        try:
            self.hold_for_review(source_id)  # a reviewer is not kept waiting for this run's gate
            self.verify(source_id, listed)  # banks as it goes
            self.bank(source_id)  # what is left, and what an earlier run verified or vaulted
            self.summary.hint = self.caption_hint()
        finally:
            # Normally every claim was released step by step; after an error, hand the rest back
            # so the next run resumes at once. (A killed sweep cannot: its claims are taken over.)
            with self.catalog.begin() as session:
                queries.release_all(session, self.worker)
        return self.summary

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.summary.seconds
            seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - started

    def bank(self, source_id: int) -> None:
        """Vault what this run verified, journal it and release the hot copies (steps 4 and 5)."""
        with self._timed("vault"):
            self.vault_verified(source_id)
        with self._timed("delete"):
            self.delete_vaulted(source_id)
        self.summary.banks += 1

    @contextmanager
    def _session_for(self, source_id: int) -> Iterator[tuple[Any, Source]]:
        with self.catalog.begin() as session:
            source = session.get(Source, source_id)
            assert source is not None
            yield session, source

    # --- 1. list the source, filter, and record candidates ---

    def discover(self, source_id: int) -> dict[str, ObjectInfo]:
        now = self.clock()
        listed: dict[str, ObjectInfo] = {}
        for obj in self.store.list(on_skip=self.summary.not_an_object):
            self.summary.scanned += 1
            if is_image_key(obj.key):
                self._source_images[obj.key] = obj
            reason = self.config.filters.reason_to_skip(obj, now)
            if reason is not None:
                self.summary.skipped[reason] += 1
                continue
            listed[obj.key] = obj
        self._insert_racing(lambda: self._upsert_all(source_id, listed))
        self.summary.candidates = len(listed)
        return listed

    @staticmethod
    def _insert_racing(transaction: Callable[[], T]) -> T:
        """Run a look-up-then-insert transaction; when another sweep of the same source inserted the
        same row between our look-up and our insert (its commit came first), run it again: the
        look-up now finds that row. Claims, not these inserts, keep two sweeps' work apart."""
        for attempt in range(UPSERT_ATTEMPTS):
            try:
                return transaction()
            except sqlalchemy.exc.IntegrityError:
                if attempt + 1 == UPSERT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _add_source(self) -> int:
        with self.catalog.begin() as session:
            return queries.get_or_add_source(session, self.store.url).id

    def _upsert_all(self, source_id: int, listed: dict[str, ObjectInfo]) -> None:
        with self._session_for(source_id) as (session, source):
            for obj in listed.values():
                self._upsert(session, source, obj)

    def _model_captions(self, session: Any) -> dict[str, str]:
        if self._captions is None:
            self._captions = read_captions(Path(queries.get_model(session, self.config.model).path))
        return self._captions

    def _has_caption(self, session: Any, key: str) -> bool:
        caption_key = self.config.caption_keys.lookup(key)
        return caption_key is not None and caption_key in self._model_captions(session)

    def caption_hint(self) -> str | None:
        """The one-line hint for the keys left without a caption (judged now, or earlier and
        still without one), when another caption prefix would give them one."""
        if not self._no_caption:
            return None
        with self.catalog.begin() as session:
            captions = self._model_captions(session)
        return caption_hint(self._no_caption, captions, self.config.caption_keys, self.config.model)

    def _upsert(self, session: Any, source: Source, obj: ObjectInfo) -> None:
        asset = queries.find_asset(session, source, obj.key)
        if asset is None:
            queries.add_asset(
                session, source, key=obj.key, size=obj.size, etag=obj.etag, last_modified=obj.last_modified
            )
            return
        changed = queries.hot_identity(asset) != (obj.etag, obj.size)
        # "no-caption" is the model's verdict, not the bytes': judged again once this run's model
        # (or caption prefix) has a caption for the key.
        if asset.state == AssetState.REJECTED and asset.reason == "no-caption":
            if self._has_caption(session, obj.key):
                changed = True
            else:
                self._no_caption.append(obj.key)
        if asset.state in (AssetState.CANDIDATE, AssetState.REJECTED, AssetState.RESTORED) and changed:
            was = queries.observe(asset, size=obj.size, etag=obj.etag, last_modified=obj.last_modified)
            queries.set_state(session, asset, AssetState.CANDIDATE, **was)
        # verified/vaulted: in flight, checked again before the delete; archived: the record stands.

    # --- 2. claim what this run will work on ---

    def claim_work(self, source_id: int) -> None:
        now = self.clock()
        until = now + self.config.lease
        with self._session_for(source_id) as (session, source):
            dead = {w for w in queries.claim_holders(session, source, now) if is_dead_local_worker(w)}
            states = (AssetState.CANDIDATE, AssetState.VERIFIED, AssetState.VAULTED)
            for asset in queries.assets_in(session, source, states, prefix=self.store.selection):
                holder = asset.claimed_by if asset.claimed_by in dead else None
                if not queries.claim(session, asset.id, self.worker, now=now, until=until, steal_from=holder):
                    self.summary.busy += 1

    # --- 3. prove each claimed candidate with the gate ---

    def verify(self, source_id: int, listed: dict[str, ObjectInfo]) -> None:
        with self._session_for(source_id) as (session, source):
            todo = [a.key for a in queries.assets_in(session, source, [AssetState.CANDIDATE], self.worker)]
        to_prove: list[str] = []
        for key in todo:
            if key in listed:
                to_prove.append(key)
            elif key in self._source_images:
                # Claimed earlier, but this run's filters leave it out: not this run's to judge.
                with self._session_for(source_id) as (session, source):
                    asset = queries.find_asset(session, source, key)
                    assert asset is not None
                    queries.release(session, asset)
            else:
                gone = Proof(key, False, "vanished", f"{key} is no longer in the source")
                self._commit_proof(source_id, key, gone, None, None, None)
        if not to_prove:
            return
        if self._progress:
            self._progress.start(len(to_prove))
        # Each proof is committed as it comes, whoever made it: a run killed between two commits
        # resumes with the keys not yet committed (still candidates, claimed by a dead worker).
        # Banks interleave: what was proved is vaulted and released while the rest is proved. The
        # verify step's time is the proving alone; banks count as vault and delete.
        started = time.perf_counter()
        banked_seconds = 0.0
        since_bank, last_bank = 0, started
        for proof, data, model_id in self.prove(to_prove):
            self._commit_proof(source_id, proof.key, proof, data, listed[proof.key], model_id)
            boundary("verified")
            if self._progress:
                self._progress.advance(proof.key, proof.passed)
            since_bank += 1
            now = time.perf_counter()
            if since_bank >= self.config.bank_every or now - last_bank >= self.config.bank_seconds:
                self.bank(source_id)
                last_bank = time.perf_counter()
                banked_seconds += last_bank - now
                since_bank = 0
        self.summary.seconds["verify"] = time.perf_counter() - started - banked_seconds

    def proving_limits(self) -> SearchLimits:
        """The seed search's limits; a Sweep made only to release has none."""
        if self.limits is None:
            raise TypeError("this Sweep was made to release approved assets: it proves nothing")
        return self.limits

    def prove(self, keys: list[str]) -> Iterator[tuple[Proof, bytes | None, int]]:
        """Each key's Proof (in any order), the original bytes it judged, and the id of the model
        that made its record. Here, in this process; the fleet path (`archiver.fleet.sweep`)
        replaces this step alone, so every commit, guard and boundary stays the one above."""
        limits = self.proving_limits()
        if self._load_model is None or self._gate is None:
            raise TypeError("this Sweep was made to release approved assets: it has no model or gate")
        loaded = self._load_model()
        prover = GroupProver.for_source(
            self._source_images,
            self.store.get,
            loaded,
            self._gate(),
            limits,
            self.config.caption_keys,
        )
        for proof, data in prover.prove_many(keys):  # first renders batched across images
            yield proof, data, loaded.row.id

    def _commit_proof(
        self,
        source_id: int,
        key: str,
        proof: Proof,
        data: bytes | None,
        seen: ObjectInfo | None,
        model_id: int | None,
    ) -> None:
        self.summary.steps_rendered += proof.steps_rendered  # a refusal's renders cost as much
        with self._session_for(source_id) as (session, source):
            asset = queries.find_asset(session, source, key)
            assert asset is not None
            if not proof.passed:
                queries.set_state(
                    session,
                    asset,
                    AssetState.REJECTED,
                    reason=proof.reason,
                    detail=proof.detail,
                    metrics=proof.report.metrics if proof.report else None,
                )
                queries.release(session, asset)
                self.summary.rejected[proof.reason or "unknown"] += 1
                failures = proof.report.failures if proof.report else []
                self.summary.rejected_checks.update(failures or [proof.reason or "unknown"])
                if proof.reason == "no-caption":
                    self._no_caption.append(key)
                return
            assert proof.spec and proof.profile and proof.report and proof.data is not None
            assert data is not None and seen is not None and model_id is not None
            self._keep_hot_bytes(key, data)
            self.summary.steps[proof.spec.steps] += 1
            profile = proof.profile
            encoding = queries.get_or_add_profile(
                session, profile.profile_id, profile.format, profile.to_json()
            )
            queries.save_record(
                session,
                asset,
                model_id=model_id,
                encoding_profile_id=encoding.id,
                rendered_sha256=hashlib.sha256(proof.data).hexdigest(),
                rendered_size=len(proof.data),
                gate_report=proof.report.to_dict(),
                software=proof.report.software,
                render_sketch=proof.sketch,
                **proof.spec.as_columns(),
            )
            asset.sha256 = hashlib.sha256(data).hexdigest()
            was = queries.observe(asset, size=seen.size, etag=seen.etag, last_modified=seen.last_modified)
            queries.set_state(
                session,
                asset,
                AssetState.VERIFIED,
                seed=proof.spec.seed,  # its measures are the record's (Record.metrics)
                **was,
            )
            self.summary.verified += 1

    def _keep_hot_bytes(self, key: str, data: bytes) -> None:
        if key not in self._hot_bytes and self._hot_bytes_total + len(data) <= HOT_BYTES_KEPT:
            self._hot_bytes[key] = data
            self._hot_bytes_total += len(data)

    # --- 4. copy verified originals to the vault; confirm each by its checksum read back ---

    def vault_verified(self, source_id: int) -> None:
        with self._session_for(source_id) as (session, source):
            assets = [
                (a.key, a.sha256, a.size)
                for a in queries.assets_in(session, source, [AssetState.VERIFIED], self.worker)
            ]
        singles: list[tuple[str, bytes]] = []
        small: list[tuple[str, bytes]] = []
        for key, sha256, size in assets:
            data = self._hot_bytes.pop(key, None)
            if data is not None:
                self._hot_bytes_total -= len(data)
            if data is None:  # a resumed run: read the hot copy again and make sure it is the verified one
                try:
                    data = self.store.get(key)
                except (NoSuchObject, AuthorizationError, UnsafeKey):  # gone, or no longer readable
                    data = None
            if data is None or hashlib.sha256(data).hexdigest() != sha256:
                self._reject_changed(source_id, key)
                continue
            (singles if size >= self.config.pack_threshold else small).append((key, data))
        for key, data in singles:
            digest = hashlib.sha256(data).hexdigest()
            copy = self.vault.put(
                original_key(digest), data, metadata=object_metadata(self.store.url, key, digest)
            )
            boundary("vault-uploaded")
            self._commit_vaulted(source_id, copy, {key: None})
        for group in pack_groups([len(data) for _, data in small], self.config.pack_target):
            pack_bytes, members = build_pack([small[index] for index in group], source=self.store.url)
            copy = self.vault.put(pack_key(hashlib.sha256(pack_bytes).hexdigest()), pack_bytes)
            boundary("vault-uploaded")
            self._commit_vaulted(source_id, copy, {m.key: (m.offset, m.length) for m in members})

    def _commit_vaulted(
        self, source_id: int, copy: VaultCopy, members: dict[str, tuple[int, int] | None]
    ) -> None:
        with self._session_for(source_id) as (session, source):
            row = queries.add_vault_object(
                session,
                **asdict(copy),
                is_pack=any(v is not None for v in members.values()),
                confirmed_at=self.clock(),
            )
            for key, span in members.items():
                asset = queries.find_asset(session, source, key)
                assert asset is not None
                asset.vault_object_id = row.id
                asset.vault_offset, asset.vault_length = span if span is not None else (None, None)
                queries.set_state(session, asset, AssetState.VAULTED, vault_object=row.id)
        self.summary.vault_objects += 1
        boundary("vaulted")

    def _reject_changed(self, source_id: int, key: str) -> None:
        # An earlier run may have journaled it as archived: the journal hears first that it is not.
        why = "changed-after-verify"
        self._journal.append(
            [tombstone(self.store.url, key, "rejected", why, self.clock(), self.worker)], self.clock()
        )
        with self._session_for(source_id) as (session, source):
            asset = queries.find_asset(session, source, key)
            assert asset is not None
            queries.set_state(
                session,
                asset,
                AssetState.REJECTED,
                reason="changed-after-verify",
                detail="the hot object changed after it was verified; the next sweep re-verifies it",
            )
            queries.release(session, asset)
        self.summary.rejected["changed-after-verify"] += 1
        self.summary.rejected_checks["changed-after-verify"] += 1

    # --- 5. delete the hot copy if it is still the one that was verified ---

    def _keep_vaulted(self, source_id: int, key: str, why: str) -> None:
        with self._session_for(source_id) as (session, source):
            asset = queries.find_asset(session, source, key)
            assert asset is not None
            queries.release(session, asset)
        log.warning("%s stays hot (vaulted; the next sweep tries again): %s", key, why)
        self.summary.not_deleted["hot-copy-undeletable"] += 1

    def journal_vaulted(self, source_id: int) -> set[str]:
        """Put the records of the vaulted assets this run holds in the vault's journal (and the
        profiles and models they name), confirmed; the keys journaled."""
        with self._session_for(source_id) as (session, source):
            vaulted = queries.assets_in(session, source, [AssetState.VAULTED], self.worker)
            entries = [put_entry(asset, self.clock(), self.worker) for asset in vaulted]
            records = {asset.id: asset.record for asset in vaulted if asset.record is not None}
            for record in records.values():
                _ = record.model, record.encoding_profile  # loaded now: used after the session
        for record in records.values():
            self._journal.ensure_shared(record)
        self._journal.append(entries, self.clock())
        if entries:
            boundary("journaled")
        return {entry["k"] for entry in entries}

    def hold_for_review(self, source_id: int) -> None:
        """Hand back the vaulted assets a person has not approved yet: those held for review, and,
        when this run requires review, every vaulted one not approved (held from now on). They are
        neither journaled nor deleted; `release` (or any later sweep) finishes them once approved,
        and a rejection leaves them hot."""
        with self._session_for(source_id) as (session, source):
            vaulted = queries.assets_in(session, source, [AssetState.VAULTED], self.worker)
            decided = queries.reviews(session, [asset.id for asset in vaulted])
            for asset in vaulted:
                review = decided.get(asset.id)
                if review is not None and review.status == "approved":
                    continue
                if review is None and not self.config.require_review:
                    continue  # never held: this sweep releases it as it always did
                if review is None:
                    queries.record_event(session, queries.HELD, asset)
                queries.release(session, asset)
                self.summary.held += 1

    def release(self, prefix: str = "") -> SweepSummary:
        """Finish the swap for the approved held assets under `prefix`: the delete stage alone, with
        every guard of a sweep (the vault copy's checksum, asked of the vault again; the record
        committed and journaled; the hot object unchanged since it was verified)."""
        source_id = self._insert_racing(self._add_source)
        now = self.clock()
        with self._session_for(source_id) as (session, source):
            vaulted = queries.assets_in(session, source, [AssetState.VAULTED])
            vaulted = [asset for asset in vaulted if asset.key.startswith(prefix)]
            decided = queries.reviews(session, [asset.id for asset in vaulted])
            for asset in vaulted:
                review = decided.get(asset.id)
                if review is None or review.status != "approved":
                    continue
                if not queries.claim(session, asset.id, self.worker, now=now, until=now + self.config.lease):
                    self.summary.busy += 1
        try:
            with self._timed("delete"):
                self._check_vault_copies(source_id)
                self.delete_vaulted(source_id)
        finally:
            with self.catalog.begin() as session:
                queries.release_all(session, self.worker)
        return self.summary

    def _check_vault_copies(self, source_id: int) -> None:
        """Ask the vault again for each claimed asset's copy (days may have passed since it was
        confirmed): one unconfirmed, missing or holding another checksum keeps its hot copy."""
        with self._session_for(source_id) as (session, source):
            claimed = [
                (a.key, a.vault_object.key, a.vault_object.sha256 if a.vault_object.confirmed_at else None)
                if a.vault_object is not None
                else (a.key, None, None)
                for a in queries.assets_in(session, source, [AssetState.VAULTED], self.worker)
            ]
        heads: dict[str, str] = {}  # vault key -> what its HEAD says: "missing", "unverified" or a sha256
        for key, vault_key, sha256 in claimed:
            if vault_key is None or sha256 is None:
                self._keep_vaulted(source_id, key, "its vault copy is not confirmed")
                continue
            if vault_key not in heads:
                try:
                    # No checksum is no proof: the copy may have changed since it was confirmed
                    # (a local vault names none once the file's size or mtime moved).
                    heads[vault_key] = self.vault.head(vault_key).sha256 or "unverified"
                except NoSuchObject:
                    heads[vault_key] = "missing"
            if heads[vault_key] != sha256:
                found = {
                    "missing": "is missing",
                    "unverified": "has no checksum to match (run `archiver fsck --read-data`)",
                }.get(heads[vault_key], f"holds sha256 {heads[vault_key]}")
                self._keep_vaulted(source_id, key, f"its vault copy {vault_key} {found}")

    def delete_vaulted(self, source_id: int) -> None:
        self.hold_for_review(source_id)
        journaled = self.journal_vaulted(source_id)
        with self._session_for(source_id) as (session, source):
            assets = [
                (a.key, a.size, a.etag, a.last_modified)
                for a in queries.assets_in(session, source, [AssetState.VAULTED], self.worker)
            ]
        for key, size, etag, last_modified in assets:
            if key not in journaled:  # the release guard: no hot copy goes before its record is in the vault
                self._keep_vaulted(source_id, key, "its record is not in the vault's journal yet")
                continue
            try:
                self.store.delete_if_unchanged(
                    key, ObjectInfo(key=key, size=size, etag=etag, last_modified=last_modified)
                )
            except NoSuchObject:
                pass  # already gone (a crash right after our delete): the vault copy is confirmed
            except ObjectChanged:
                self._reject_changed(source_id, key)
                continue
            except (AuthorizationError, UnsafeKey) as refused:
                # The vault copy is confirmed; the hot copy stays until a sweep may delete it.
                self._keep_vaulted(source_id, key, str(refused))
                continue
            boundary("hot-deleted")
            with self._session_for(source_id) as (session, source):
                asset = queries.find_asset(session, source, key)
                assert asset is not None
                queries.set_state(session, asset, AssetState.ARCHIVED)
                queries.release(session, asset)
            self.summary.archived += 1
            self.summary.bytes_freed += size
            self.summary.archived_sizes.append(size)
            boundary("archived")


def release_approved(
    catalog: Catalog,
    store: HotStore,
    vault: Vault,
    prefix: str,
    *,
    lease: timedelta,
    journal_storage_class: str,
) -> SweepSummary:
    """Finish the swap for the approved assets of `store` under `prefix` that a
    `sweep --require-review` vaulted and kept hot (`Sweep.release`). Renders and judges nothing."""
    config = SweepConfig(
        model="",
        filters=Filters(),
        lease=lease,
        journal_storage_class=journal_storage_class,
        require_review=True,
    )
    return Sweep(catalog, store, vault, config).release(prefix)
