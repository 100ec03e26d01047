"""Behind the review page: the items of one scope, their originals and verified renders, the difference
maps, and decisions. The page's server (`app`) and the static writer (`static`) both call this; it
knows nothing of HTTP.

Renders come through the product's read path (`ReadPolicy` over `AssetReader`): exact, or within the
sketch's tolerance of the accepted render, and say which. The page must show a render or why there
is none, so it takes the policy with `renders_only` (no fallbacks: `NoRender`): it never shows the
vault original in the render's place and never files a restore. Originals come from the hot copy
while it exists, else from the vault only when the vault can read it now; nothing here starts a
thaw, and `locate` says where the original is (and what would bring it back).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset
from archiver.errors import ArchiverError, NoSuchObject, NotFound
from archiver.http.review import decisions, images, items
from archiver.journal import JournalWriter
from archiver.read.policy import NoRender, ReadPolicy, Served
from archiver.read.reader import ArchivedAsset, AssetReader, snapshot
from archiver.storage import HotStore, Vault

MAPS_KEPT = 64  # difference and colour maps kept in memory (a reviewer goes back and forth)


class NoOriginal(Exception):
    """The original cannot be shown now; the message says where it is and what brings it back."""


@dataclass(frozen=True)
class RenderRef:
    asset_id: int
    key: str
    size: int
    rendered_sha256: str


class ReviewService:
    """The review of the assets under `prefix` (of `source`); thread-safe."""

    def __init__(
        self,
        catalog: Catalog,
        vault: Vault,
        reader: AssetReader,
        policy: ReadPolicy,
        open_source: Callable[[str], HotStore],
        journal: JournalWriter,
        *,
        thresholds: Mapping[str, float],
        reviewer: str,
        prefix: str = "",
        source: str | None = None,
    ) -> None:
        self.catalog, self.vault, self.reader, self.policy = catalog, vault, reader, policy
        self._open_source, self.journal = open_source, journal
        self.thresholds, self.reviewer = dict(thresholds), reviewer
        self.prefix, self.source = prefix, source
        self._stores: dict[str, HotStore] = {}
        self._maps: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        with catalog.begin() as session:
            queries.scoped_source(session, source)  # an unknown --source fails now, with its line

    def items(self) -> list[dict[str, Any]]:
        with self.catalog.begin() as session:
            scope = queries.scoped_source(session, self.source)
            return items.describe_all(
                session, queries.review_assets(session, self.prefix, scope), self.thresholds
            )

    def _asset(self, session: Any, asset_id: int) -> Asset:
        asset = session.get(Asset, asset_id)
        in_scope = asset is not None and asset.key.startswith(self.prefix)
        if asset is None or not in_scope or (self.source is not None and asset.source.url != self.source):
            raise NotFound(f"no asset {asset_id} under review here")
        return asset

    def item(self, asset_id: int) -> dict[str, Any]:
        """One item, with where its original is."""
        with self.catalog.begin() as session:
            asset = self._asset(session, asset_id)
            review = queries.reviews(session, [asset.id]).get(asset.id)
            found = items.describe(session, asset, review, self.thresholds)
            url, key, sha256, held = asset.source.url, asset.key, asset.sha256, snapshot(asset)
        found["original"] = self.locate(url, key, sha256, held)
        return found

    def _store(self, url: str) -> HotStore:
        with self._lock:
            if url not in self._stores:
                self._stores[url] = self._open_source(url)
            return self._stores[url]

    def locate(self, url: str, key: str, sha256: str | None, asset: ArchivedAsset) -> dict[str, str]:
        """Where the original is: `hot`, `vault` (readable now), `archive-tier` or `missing`."""
        try:
            self._store(url).head(key)
            changed = "" if sha256 else " (not yet verified)"
            return {"where": "hot", "note": f"the hot copy in {url}{changed}"}
        except NoSuchObject:
            pass
        except ArchiverError as exc:
            return {"where": "missing", "note": f"the hot copy cannot be read: {exc}"}
        if asset.vault_key is None:
            return {"where": "missing", "note": "no hot copy and no vault copy"}
        try:
            readable = self.reader.vault_readable(asset)
        except ArchiverError as exc:
            return {"where": "missing", "note": f"the vault cannot be asked: {exc}"}
        if readable:
            return {"where": "vault", "note": f"the vault copy {asset.vault_key} (verified by its SHA-256)"}
        return {
            "where": "archive-tier",
            "note": f"only in the archive tier ({asset.vault_key}): this page starts no thaw; "
            f"`archiver restore {key} --original` brings it back",
        }

    def original(self, asset_id: int) -> tuple[bytes, str]:
        """The original's bytes and where they came from; NoOriginal if they cannot be read now."""
        with self.catalog.begin() as session:
            asset = self._asset(session, asset_id)
            url, key, held = asset.source.url, asset.key, snapshot(asset)
        try:
            return self._store(url).get(key), "hot"
        except NoSuchObject:
            pass
        except ArchiverError as exc:
            raise NoOriginal(f"{key}: the hot copy cannot be read: {exc}") from None
        where = self.locate(url, key, held.sha256, held)
        if where["where"] != "vault":
            raise NoOriginal(f"{key}: {where['note']}")
        try:
            return self.reader.original(held), "vault"
        except ArchiverError as exc:
            raise NoOriginal(f"{key}: the vault copy cannot be read: {exc}") from None

    def render(self, asset_id: int) -> Served:
        """The verified render (exact, or within tolerance); NoRender or Unavailable if none."""
        with self.catalog.begin() as session:
            asset = self._asset(session, asset_id)
            record = asset.record
            if record is None:
                raise NoRender(f"{asset.key} has no record (the gate kept none): there is no render to show")
            ref = RenderRef(asset.id, asset.key, record.rendered_size, record.rendered_sha256)
        return self.policy.read(ref)

    def difference_map(self, asset_id: int, kind: str) -> bytes:
        """`diff` (amplified pixel difference) or `colour` (the gate's ΔE00 map) of render and original."""
        served = self.render(asset_id)
        cache_key = (asset_id, kind, served.verified.sha256)
        with self._lock:
            if cache_key in self._maps:
                self._maps.move_to_end(cache_key)
                return self._maps[cache_key]
        original, _ = self.original(asset_id)
        if kind == "diff":
            made = images.difference(original, served.data)
        else:
            made = images.colour_map(original, served.data, self.thresholds.get("colour_max", 3.0))
        with self._lock:
            self._maps[cache_key] = made
            while len(self._maps) > MAPS_KEPT:
                self._maps.popitem(last=False)
        return made

    def decide(self, asset_id: int, decision: str, comment: str | None = None) -> dict[str, Any]:
        """Take a decision on one asset (see `decisions`); the item as it stands after it."""
        chosen = decisions.parse_decision(decision)
        with self.catalog.begin() as session:
            self._asset(session, asset_id)
        decisions.apply(
            self.catalog,
            self.journal,
            [decisions.Decision(chosen, asset_id=asset_id, comment=comment)],
            self.reviewer,
        )
        return self.item(asset_id)

    def close(self) -> None:
        self.policy.shutdown()
