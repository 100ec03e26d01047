"""The mount's file tree: paths to catalog lookups, stat, directory listings and xattrs.

Owns the layout of the mount and nothing else. It reads the catalog (through
`archiver.catalog.queries` only) and never renders, reads the vault or imports fusepy: the
adapter (fusefs/adapter.py) turns these lookups into FUSE replies, and the read policy
(archiver/read/policy.py) produces the bytes. Tested without mounting (tests/test_fusefs_tree.py).

Layout. Only ARCHIVED assets with a record appear, as read-only files whose path is their key
(invariant 6: the name `ls`, `show`, `restore`, `serve` and the xattrs use), whatever the number
of sources: a path never moves because another source was swept. A key held by several sources
shows the oldest source's asset, by the one rule of `queries.resolve_key` (the index's rows come
in its order and the first of a key wins, so sweeping a newer source never changes what a path
reads); the others are counted in `shadowed` and named in the file's `user.archiver.other_sources`
(its `user.archiver.source` names the one shown). `Tree(source_id=...)` (`archiver mount --source
URL`) shows one source alone.

Index. The whole path index is loaded with one query when first needed, and re-checked at most
every `refresh_seconds` with a cheap fingerprint query (count and newest update of the assets):
only a change reloads it. A lookup or a listing is then a dict access: no per-entry work, however
big a directory is. Keys that cannot be paths (empty, `.` or `..` components, a name over 255
bytes, or a path another key already holds: a file `a` and a key `a/b`, where the first in key
order wins) are left out and counted in `skipped`.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset, AssetState
from archiver.errors import NotFound

NAME_MAX = 255  # bytes per path component on Linux
XATTR_PREFIX = "user.archiver."
log = logging.getLogger(__name__)


class NoSuchPath(NotFound):
    """Nothing in the mount has this path."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One archived asset as a file: what stat needs, and the id to read it by."""

    asset_id: int
    key: str
    size: int  # the record's rendered_size: what a read returns
    mtime_ns: int  # the original's last_modified
    rendered_sha256: str  # names the verified bytes in the caches


@dataclass(slots=True)
class DirEntry:
    names: list[str] = field(default_factory=list)  # sorted once, when the index is built
    mtime_ns: int = 0  # the newest file anywhere below


@dataclass
class Index:
    """One immutable snapshot of the mount's paths; replaced whole on refresh."""

    files: dict[str, FileEntry]
    dirs: dict[str, DirEntry]
    fingerprint: tuple[Any, ...]
    skipped: int = 0
    shadowed: int = 0  # keys an older source holds too: the older one's asset is shown
    loaded_at: float = 0.0


def _valid_parts(key: str) -> list[str] | None:
    parts = key.split("/")
    if any(p in ("", ".", "..") or len(p.encode()) > NAME_MAX or "\0" in p for p in parts):
        return None
    return parts


def build_index(entries: list[queries.ArchivedEntry], fingerprint: tuple[Any, ...]) -> Index:
    """The path index for these catalog rows, in (source, key) order: each file once, at its key (the
    first source's wins), each directory's names sorted once."""
    files: dict[str, FileEntry] = {}
    dirs: dict[str, DirEntry] = {"/": DirEntry()}
    children: dict[str, set[str]] = {"/": set()}
    skipped = shadowed = 0
    for row in entries:
        parts = _valid_parts(row.key)
        if parts is None:
            skipped += 1
            continue
        if "/" + row.key in files:  # keys are unique per source: an older source holds this one
            shadowed += 1
            continue
        parent = "/"
        path = ""
        clash = False
        for part in parts[:-1]:
            path = f"{path}/{part}"
            if path in files:  # a file already holds this name: the directory cannot exist
                clash = True
                break
            if path not in children:
                children[parent].add(part)
                children[path] = set()
                dirs[path] = DirEntry()
            parent = path
        path = f"{path}/{parts[-1]}"
        if clash or path in children or path in files:
            skipped += 1
            continue
        mtime_ns = int(row.last_modified.timestamp() * 1e9)
        files[path] = FileEntry(row.asset_id, row.key, row.rendered_size, mtime_ns, row.rendered_sha256)
        children[parent].add(parts[-1])
        ancestor = parent
        while dirs[ancestor].mtime_ns < mtime_ns:  # stops at the first ancestor already as new
            dirs[ancestor].mtime_ns = mtime_ns
            if ancestor == "/":
                break
            ancestor = ancestor.rsplit("/", 1)[0] or "/"
    for path, names in children.items():
        dirs[path].names = sorted(names)
    return Index(files, dirs, fingerprint, skipped, shadowed)


class Tree:
    """The mount's paths over a catalog. Thread-safe: lookups read one immutable snapshot."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        source_id: int | None = None,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.source_id = source_id  # one source alone (`mount --source`), else all of them
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._index: Index | None = None
        self._checked_at = 0.0
        self._reload = threading.Lock()
        self.uid, self.gid = os.getuid(), os.getgid()

    # --- the index ---

    def index(self) -> Index:
        """The current snapshot, re-checked against the catalog when older than refresh_seconds."""
        index = self._index
        if index is not None and self._clock() - self._checked_at < self.refresh_seconds:
            return index
        if index is not None and not self._reload.acquire(blocking=False):
            return index  # another thread is checking: serve the snapshot we have meanwhile
        if index is None:
            self._reload.acquire()
        try:
            if self._index is not None and self._clock() - self._checked_at < self.refresh_seconds:
                return self._index  # loaded by the thread we waited for
            self.refresh()
            assert self._index is not None
            return self._index
        finally:
            self._reload.release()

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the index if the catalog changed (or `force`); True when it was reloaded."""
        with self.catalog.begin() as session:
            fingerprint = queries.archived_fingerprint(session)
            current = self._index
            if current is not None and not force and current.fingerprint == fingerprint:
                self._checked_at = self._clock()
                return False
            index = build_index(queries.archived_entries(session, self.source_id), fingerprint)
        if index.shadowed:
            log.warning(
                "%d keys are held by several sources: the mount shows the oldest source's; "
                "`archiver mount --source URL` shows one source alone",
                index.shadowed,
            )
        index.loaded_at = self._clock()
        self._index, self._checked_at = index, index.loaded_at
        return True

    # --- lookups ---

    @staticmethod
    def normalize(path: str) -> str:
        return "/" + path.strip("/") if path.strip("/") else "/"

    def file(self, path: str) -> FileEntry:
        """The file at `path`; NoSuchPath if there is none (IsADirectoryError for a directory)."""
        index, path = self.index(), self.normalize(path)
        entry = index.files.get(path)
        if entry is None:
            if path in index.dirs:
                raise IsADirectoryError(path)
            raise NoSuchPath(f"{path}: not in the archive")
        return entry

    def stat(self, path: str) -> dict[str, int]:
        """lstat-like attributes: files 0o444 sized as their rendered bytes, directories 0o555."""
        index, path = self.index(), self.normalize(path)
        common = {"st_uid": self.uid, "st_gid": self.gid}
        if (entry := index.files.get(path)) is not None:
            return {
                **common,
                "st_mode": stat.S_IFREG | 0o444,
                "st_nlink": 1,
                "st_size": entry.size,
                "st_blocks": (entry.size + 511) // 512,
                "st_mtime": entry.mtime_ns,
                "st_ctime": entry.mtime_ns,
                "st_atime": entry.mtime_ns,
            }
        if (directory := index.dirs.get(path)) is not None:
            return {
                **common,
                "st_mode": stat.S_IFDIR | 0o555,
                "st_nlink": 2,
                "st_size": 0,
                "st_mtime": directory.mtime_ns,
                "st_ctime": directory.mtime_ns,
                "st_atime": directory.mtime_ns,
            }
        raise NoSuchPath(f"{path}: not in the archive")

    def _names(self, path: str) -> list[str]:
        index, path = self.index(), self.normalize(path)
        directory = index.dirs.get(path)
        if directory is None:
            if path in index.files:
                raise NotADirectoryError(path)
            raise NoSuchPath(f"{path}: not in the archive")
        return directory.names

    def readdir(self, path: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """One page of a directory's names (sorted), from `offset`: a slice of a prebuilt list."""
        end = None if limit is None else offset + limit
        return self._names(path)[offset:end]

    def pages(self, path: str, size: int = 4096) -> Iterator[list[str]]:
        """A directory's names page by page, all from one snapshot even if a refresh happens meanwhile.
        The lookup happens now (errors are raised here), the paging as the iterator is consumed."""
        names = self._names(path)
        return (names[start : start + size] for start in range(0, len(names), size))

    # --- extended attributes: where a file comes from ---

    XATTRS = (
        "key", "source", "other_sources", "state", "prompt", "seed", "model", "lpips",
        "original_sha256", "original_size", "served_sha256", "served_size",
    )  # fmt: skip

    def xattr_names(self, path: str) -> list[str]:
        if self.normalize(path) in self.index().dirs:
            return []
        self.file(path)
        return [XATTR_PREFIX + name for name in self.XATTRS]

    def xattrs(self, path: str) -> dict[str, bytes]:
        """`user.archiver.*` for a file, read from its catalog row now (state may have moved on)."""
        entry = self.file(path)
        with self.catalog.begin() as session:
            asset = queries.archived_asset(session, entry.asset_id)
            if asset is None:
                raise NoSuchPath(f"{path}: no longer in the catalog")
            values = describe(asset)
            holders = queries.resolve_key(session, asset.key, asset.source, [AssetState.ARCHIVED])
            values["other_sources"] = ", ".join(holders.others)
        return {XATTR_PREFIX + name: value.encode() for name, value in values.items()}


def describe(asset: Asset) -> dict[str, str]:
    """The provenance a user sees with `getfattr -d`: the key (the name `show` and `restore` take, and
    the file's path), its source, state, prompt, seed, model, LPIPS, and two SHA-256s and sizes by
    name: the original's (what the vault holds) and the served bytes' (what reading the file gives:
    here the record's render; the adapter puts the last read's in their place once there is one).
    `Tree.xattrs` adds the other sources that hold the key."""
    record = asset.record
    values = {
        "key": asset.key,
        "source": asset.source.url,
        "state": asset.state.value,
        "original_sha256": asset.sha256 or "",
        "original_size": str(asset.size),
    }
    if record is not None:
        values |= {"served_sha256": record.rendered_sha256, "served_size": str(record.rendered_size)}
        lpips = (record.gate_report or {}).get("metrics", {}).get("lpips")
        values |= {
            "prompt": record.prompt,
            "seed": str(record.seed),
            "model": f"{record.model.name} sha256:{record.model.sha256}",
            "lpips": "" if lpips is None else repr(float(lpips)),
        }
    return values
