"""Rebuilding the catalog from the vault alone (`archiver db rebuild --from-vault`).

Reads every journal segment (`archiver.journal`), takes the newest entry per (source, key), and
recreates what they say: sources, assets (the original's SHA-256, size, ETag, last-modified, and
where it sits in the vault), their records, the profiles the records name (their bodies read from
`profiles/` in the vault and checked against their content ids), the models (by registry hash;
`archiver model fetch` brings one's files back) and vault objects. An asset whose newest entry is a
tombstone is restored (or rejected) with its record kept.

Into a catalog that already holds rows it merges: an entry is applied only where it is newer than
the asset's `updated_at` (a catalog restored from an old backup catches up; a catalog that knows
something newer keeps it), and nothing is dropped. Applied rows take the entry's time, so a second
rebuild changes nothing and two rebuilds of one vault are the same catalog.

With `open_store`, each source is listed once: an asset journaled as archived whose hot copy is
still there (a sweep killed between the journal and the delete) becomes `verified`, so the next
sweep checks its bytes, vaults it again if need be and deletes it; never `archived` with a hot copy
nobody will remove. What the journal never held is not rebuilt: rejected and candidate assets (they
are hot; the next sweep judges them again), restore jobs, and the events' history (each rebuilt
asset gets one `rebuilt` event).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset, AssetState, Model, Record, Source
from archiver.errors import IntegrityError, StorageError
from archiver.journal import Entry, from_micros, latest, profile_body_ok, read_journal, segment_keys
from archiver.storage import HotStore, Vault
from archiver.storage.vault_format import profile_key

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    vault: str
    segments: int = 0
    entries: int = 0
    assets: int = 0  # distinct (source, key) in the journal
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # the catalog already said so, or knew something newer
    states: dict[str, int] = field(default_factory=dict)  # of the journaled assets, after the rebuild
    models: list[str] = field(default_factory=list)  # sha256 of every model records name
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "vault": self.vault,
            "segments": self.segments,
            "entries": self.entries,
            "assets": self.assets,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "states": dict(sorted(self.states.items())),
            "models": self.models,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


class Rebuilder:
    """One rebuild of `catalog` from `vault`."""

    def __init__(
        self, catalog: Catalog, vault: Vault, open_store: Callable[[str], HotStore] | None = None
    ) -> None:
        self.catalog, self.vault, self._open_store = catalog, vault, open_store
        self.report = RebuildReport(vault=vault.url)
        self._profiles: dict[tuple[str, str], Any] = {}  # (kind, id) -> the row, per session
        self._vault_objects: dict[str, Any] = {}  # uri -> the row

    def run(self) -> RebuildReport:
        started = time.perf_counter()
        keys = segment_keys(self.vault)
        entries = read_journal(self.vault, keys)
        self.report.segments, self.report.entries = len(keys), len(entries)
        newest = latest(entries)
        newest_put = latest(e for e in entries if e.op == "put")
        self.report.assets = len(newest)
        hot = self._hot_keys({source for source, _ in newest})
        with self.catalog.begin() as session:
            by_source: dict[str, tuple[Source, dict[str, Asset]]] = {}
            models: dict[str, Model] = {}
            rebuilt: list[tuple[Asset, str]] = []
            for ident in sorted(newest):
                source_url, key = ident
                if source_url not in by_source:
                    source = queries.get_or_add_source(session, source_url)
                    by_source[source_url] = (source, queries.assets_by_key(session, source))
                source, assets = by_source[source_url]
                put = newest_put.get(ident)
                if put is None:  # only tombstones: an asset the journal never held as archived
                    continue
                asset = assets.get(key)
                created, changed = asset is None, False
                if asset is None or asset.updated_at < from_micros(put.at):
                    still_hot = key in hot.get(source_url, ())
                    asset = self._apply_put(session, source, asset, put, models, still_hot)
                    assets[key] = asset
                    changed = True
                last = newest[ident]
                if last.op == "del" and asset.updated_at < from_micros(last.at):
                    self._apply_tombstone(asset, last)
                    changed = True
                if changed:
                    rebuilt.append((asset, last.segment))
                    if created:
                        self.report.created += 1
                    else:
                        self.report.updated += 1
                else:
                    self.report.unchanged += 1
                state = asset.state.value
                self.report.states[state] = self.report.states.get(state, 0) + 1
            session.flush()  # once: no statement runs per asset until here
            for asset, segment in rebuilt:
                queries.record_event(session, "rebuilt", asset, segment=segment)
            self.report.models = sorted(models)
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _hot_keys(self, sources: set[str]) -> dict[str, set[str]]:
        if self._open_store is None:
            return {}
        found: dict[str, set[str]] = {}
        for url in sorted(sources):
            try:
                found[url] = {info.key for info in self._open_store(url).list()}
            except StorageError as exc:
                self.report.warnings.append(
                    f"source {url} could not be listed ({exc}): its journaled assets are taken as archived"
                )
        return found

    def _apply_put(
        self,
        session: Session,
        source: Source,
        asset: Asset | None,
        entry: Entry,
        models: dict[str, Model],
        still_hot: bool,
    ) -> Asset:
        doc, at = entry.doc, from_micros(entry.at)
        original, where, compact = doc["o"], doc["v"], doc["r"]
        vault_object = self._vault_object(session, where, at)
        if asset is None:
            asset = Asset(source=source, key=entry.ident[1], size=original["z"], last_modified=at)
            session.add(asset)
        asset.sha256 = original["h"]
        asset.size = original["z"]
        asset.etag = original.get("e")
        asset.last_modified = from_micros(original["t"])
        asset.content_type = original.get("c")
        asset.vault_object = vault_object
        asset.vault_offset, asset.vault_length = where.get("off"), where.get("len")
        # Killed between the journal and the delete: the hot copy is still there, and the next
        # sweep, not this rebuild, decides (bytes checked again) whether to release it.
        asset.state = AssetState.VERIFIED if still_hot else AssetState.ARCHIVED
        asset.reason = asset.reason_detail = None
        asset.claimed_by = asset.claimed_until = None
        asset.updated_at = at
        model = self._model(session, doc["m"], models)
        columns: dict[str, Any] = {
            "model_id": model.id,
            "render_profile_id": self._profile(session, "render", compact["r"]).id,
            "gate_profile_id": self._profile(session, "gate", compact["g"]).id,
            "encoding_profile_id": self._profile(session, "encoding", compact["e"]).id,
            "prompt": compact["p"],
            "negative_prompt": compact.get("n", ""),
            "seed": compact["s"],
            "rendered_sha256": compact["h"],
            "rendered_size": compact["z"],
            "metrics": compact["x"],
        }
        if hasattr(Record, "render_sketch"):  # issue 17's column, where it has landed
            sketch = compact.get("sk")
            columns["render_sketch"] = base64.b64decode(sketch) if sketch is not None else None
        queries.put_record(session, asset, columns)
        return asset

    @staticmethod
    def _apply_tombstone(asset: Asset, entry: Entry) -> None:
        state = AssetState(entry.doc["st"])
        asset.state = state
        if state == AssetState.REJECTED:
            asset.reason, asset.reason_detail = "changed-after-verify", entry.doc.get("why")
        asset.updated_at = from_micros(entry.at)

    def _vault_object(self, session: Session, where: dict[str, Any], at: Any) -> Any:
        uri = f"{self.vault.url}/{where['k']}"
        row = self._vault_objects.get(uri) or queries.vault_object_by_uri(session, uri)
        if row is None:
            row = queries.add_vault_object(
                session,
                uri=uri,
                key=where["k"],
                storage_class=where["c"],
                version_id=where.get("i"),
                sha256=where["h"],
                size=where["z"],
                is_pack=bool(where["p"]),
                confirmed_at=from_micros(where["ca"]) if "ca" in where else at,
            )
        self._vault_objects[uri] = row
        return row

    def _model(self, session: Session, doc: dict[str, Any], models: dict[str, Model]) -> Model:
        sha256 = doc["h"]
        if sha256 not in models:
            row = queries.model_by_sha256(session, sha256)
            if row is None:
                name = doc["n"]
                if queries.model_name_taken(session, name):
                    name = f"{name}@{sha256[:12]}"
                row = queries.add_model(
                    session, name=name, sha256=sha256, path=doc["path"], pipeline_class=doc["c"]
                )
            models[sha256] = row
        return models[sha256]

    def _profile(self, session: Session, kind: str, profile_id: str) -> Any:
        if (kind, profile_id) not in self._profiles:
            body = self._body(kind, profile_id)
            row: Any
            if kind == "encoding":
                row = queries.get_or_add_profile(session, profile_id, json.loads(body)["format"], body)
            elif kind == "render":
                doc = json.loads(body)
                row = queries.get_or_add_render_profile(session, doc, doc["software"])
            else:
                doc = json.loads(body)
                report = {**doc, "metrics": dict.fromkeys(doc["metrics"])}
                row = queries.get_or_add_gate_profile(session, report)
            if row.sha256 != profile_id:
                raise IntegrityError(
                    f"{kind} profile {profile_id} read back as {row.sha256}: this archiver cannot "
                    "rebuild it exactly; use the archiver version that wrote the vault"
                )
            self._profiles[kind, profile_id] = row
        return self._profiles[kind, profile_id]

    def _body(self, kind: str, profile_id: str) -> bytes:
        key = profile_key(kind, profile_id)
        body = self.vault.get(key)
        if not profile_body_ok(profile_id, body):
            raise IntegrityError(f"{self.vault.url}/{key} does not hash to its name: it is damaged")
        return body


def rebuild(
    catalog: Catalog, vault: Vault, open_store: Callable[[str], HotStore] | None = None
) -> RebuildReport:
    """Rebuild (or catch up) `catalog` from `vault`'s journal; see the module docstring."""
    return Rebuilder(catalog, vault, open_store).run()
