"""What the origin serves: keys to archived assets, their validators, and their verified bytes.

Owns the origin's view of the archive, behind the `Assets` protocol that the routes (app.py) call:
  - `lookup(key)`: the asset a URL names. The URL path is the asset's key (`GET /shoes/red.png`),
    the same name `ls`, `show`, `restore` and the mount use. A key held by several sources names
    the oldest source's asset, by the one rule of `queries.resolve_key` (the index's rows come in
    its order, and the first of a key wins): sweeping a newer source never changes what a URL
    serves, and a CDN caches it for a year. Each entry carries its source and the others that hold
    the key, which the responses name (`x-archiver-source`, `x-archiver-other-sources`);
    `--source URL` restricts an origin to one source.
  - `describe(entry)`: the representation's validators and type, from the catalog (the record's
    rendered_sha256 and rendered_size, the original's last_modified, the encoding profile's
    format), without rendering; `peek` answers the same from memory once it is known.
  - `recall(entry)` / `read(entry)`: verified bytes through the read policy (archiver/read/policy.py).

`CatalogAssets` is the catalog-backed implementation: the whole key index is loaded with one query
(the mount's `queries.archived_entries`: archived assets with a record) and reloaded by `refresh()`
only when the catalog's fingerprint changed, so a lookup is a dict access. This is also the seam
for `archiver serve --bundle` (the edge mode): a bundle-backed `Assets` answers the same four
calls from an edge bundle's compact records, with no catalog and no vault.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.errors import NotFound
from archiver.read.policy import ReadPolicy, Served, ServedFrom

log = logging.getLogger(__name__)

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One archived asset in the index: what the read policy needs (an `AssetRef`) and its mtime."""

    asset_id: int
    source_id: int
    key: str
    size: int  # the record's rendered_size
    rendered_sha256: str
    last_modified: datetime  # the original's
    source: str = ""  # the URL of the source whose asset this is
    others: tuple[str, ...] = ()  # the other sources that hold the key (not served here)


@dataclass(frozen=True, slots=True)
class Representation:
    """What a response says about the bytes it carries (or would carry)."""

    sha256: str  # of the bytes: the strong ETag, quoted
    size: int
    content_type: str
    last_modified: datetime
    served_from: ServedFrom  # "rehydrated", or "original" once the vault original is what is served
    original_sha256: str  # the original's ("" if never recorded): other bytes than these, unless
    original_size: int  # `origin` is "original"

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


class Assets(Protocol):
    """The origin's source of truth. `lookup`, `peek` and `recall` never block (the event loop
    calls them); `describe`, `read` and `refresh` may (they run on worker threads)."""

    def __len__(self) -> int: ...  # keys served

    def lookup(self, key: str) -> Entry: ...

    def peek(self, entry: Entry) -> Representation | None: ...

    def describe(self, entry: Entry) -> Representation: ...

    def recall(self, entry: Entry) -> Served | None: ...

    def read(self, entry: Entry) -> Served: ...

    def refresh(self) -> bool: ...

    def queue_depth(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Details:
    rendered_sha256: str  # what they were loaded for: a new record means new details
    content_type: str
    sha256: str  # the original's
    size: int


class CatalogAssets:
    """`Assets` over the catalog and the read policy. Thread-safe."""

    def __init__(self, catalog: Catalog, policy: ReadPolicy, *, source: str | None = None) -> None:
        self.catalog, self.policy = catalog, policy
        self._source_url = source
        self._source_id: int | None = None
        self._index: dict[str, Entry] = {}
        self._fingerprint: tuple[Any, ...] | None = None
        self._details: dict[int, _Details] = {}
        self._reload = threading.Lock()

    def __len__(self) -> int:
        return len(self._index)

    def refresh(self) -> bool:
        """Reload the key index if the catalog changed since the last load; True when it did."""
        with self._reload, self.catalog.begin() as session:
            fingerprint = queries.archived_fingerprint(session)
            if fingerprint == self._fingerprint:
                return False
            if self._source_url is not None and self._source_id is None:
                source = queries.scoped_source(session, self._source_url)
                assert source is not None
                self._source_id = source.id
            sources = queries.archived_sources(session)
            rows: dict[str, list[queries.ArchivedEntry]] = {}
            for row in queries.archived_entries(session):  # in resolve_key's order: the oldest source first
                rows.setdefault(row.key, []).append(row)
        index: dict[str, Entry] = {}
        for key, holders in rows.items():
            served = [r for r in holders if self._source_id in (None, r.source_id)]
            if not served:
                continue
            row, others = served[0], [r for r in holders if r is not served[0]]
            index[key] = Entry(
                row.asset_id,
                row.source_id,
                key,
                row.rendered_size,
                row.rendered_sha256,
                row.last_modified,
                sources.get(row.source_id, ""),
                tuple(sources.get(other.source_id, "") for other in others),
            )
        shadowed = sum(1 for entry in index.values() if entry.others)
        if shadowed:
            log.warning(
                "%d keys are held by several sources: the origin serves the oldest source's "
                "(x-archiver-source names it); `archiver serve --source URL` serves one source alone",
                shadowed,
            )
        self._index, self._fingerprint = index, fingerprint  # replaced whole
        return True

    def lookup(self, key: str) -> Entry:
        entry = self._index.get(key)
        if entry is None:
            raise NotFound(f"{key}: not in the archive")
        return entry

    def peek(self, entry: Entry) -> Representation | None:
        details = self._details.get(entry.asset_id)
        if details is None or details.rendered_sha256 != entry.rendered_sha256:
            return None
        last = self.policy.served.get(entry.asset_id)
        if last is not None and last.mode != "exact":
            # What this origin serves for the asset: the original, or its own render within
            # tolerance; either way under the ETag of those bytes, never the record's.
            return Representation(
                last.sha256, last.size, details.content_type, entry.last_modified, last.served_from,
                details.sha256, details.size,
            )  # fmt: skip
        return Representation(
            entry.rendered_sha256, entry.size, details.content_type, entry.last_modified, "rehydrated",
            details.sha256, details.size,
        )  # fmt: skip

    def describe(self, entry: Entry) -> Representation:
        known = self.peek(entry)
        if known is not None:
            return known
        with self.catalog.begin() as session:
            asset = queries.archived_asset(session, entry.asset_id)
            if asset is None or asset.record is None:
                raise NotFound(f"{entry.key}: no longer in the archive")
            fmt = asset.record.encoding_profile.format
            content_type = CONTENT_TYPES.get(fmt) or asset.content_type or "application/octet-stream"
            self._details[entry.asset_id] = _Details(
                asset.record.rendered_sha256, content_type, asset.sha256 or "", asset.size
            )
        described = self.peek(entry)
        if described is None:  # the record changed under the index: the next refresh catches up
            raise NotFound(f"{entry.key}: its record changed; try again")
        return described

    def recall(self, entry: Entry) -> Served | None:
        return self.policy.recall(entry)

    def read(self, entry: Entry) -> Served:
        return self.policy.read(entry)

    def queue_depth(self) -> int:
        return self.policy.queue_depth()

    def close(self) -> None:
        self.policy.shutdown()
