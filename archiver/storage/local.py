"""Local-directory backends: a hot store over a directory, and a vault that emulates S3 Glacier.

This module owns every file system call of the storage layer and the translation of OSError into
the neutral storage errors (`_os_errors`). Keys become paths only through `_LocalTree.path`, which
runs `safe_key` and then checks that the resolved path stays under the root, so neither `..` nor a
symbolic link can lead outside it. Symbolic links are not objects: listings skip them and reads
refuse them.

Writes are atomic: a temp file in the target's directory, fsync, `os.replace`, fsync of the
directory. Temp files carry `TEMP_PREFIX`; listings skip them and keys may not use it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shlex
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.errors import (
    AuthorizationError,
    ChecksumMismatch,
    NoSuchBucket,
    NoSuchObject,
    StorageError,
    UnsafeKey,
)
from archiver.storage.base import (
    ARCHIVE_CLASSES,
    Leftover,
    ObjectInfo,
    OnSkip,
    RestoreState,
    RestoreStatus,
    RestoreTier,
    VaultCopy,
    check_restore_args,
    class_to_write,
    confirm_checksum,
    not_restored,
    object_changed,
    safe_key,
    sha256_hex,
)

TEMP_PREFIX = ".archiver-tmp-"
META_DIR = ".archiver-meta"  # the local vault's sidecars live in this subtree of its root


def _utc_now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def _os_errors(where: str, *, writing: bool = False) -> Iterator[None]:
    """Translate OSError raised by the block into the storage layer's neutral errors."""
    try:
        yield
    except OSError as exc:
        if writing and isinstance(exc, FileExistsError | NotADirectoryError | IsADirectoryError):
            raise StorageError(
                f"{where}: a file is in the way of its directory (locally a key cannot also be a 'folder')"
            ) from exc
        if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
            raise NoSuchObject(f"{where} does not exist") from exc
        if isinstance(exc, PermissionError):
            raise AuthorizationError(f"permission denied on {where}: check its owner and mode") from exc
        if exc.errno == errno.ELOOP:
            raise UnsafeKey(f"{where} is a symbolic link; links are not objects") from exc
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(f"no space left for {where}: free some space and retry") from exc
        raise StorageError(f"{where}: {exc.strerror or exc}") from exc


def _change_token(st: os.stat_result) -> str:
    # inode + mtime in ns + size: an atomic replace always gets a new inode, an in-place write a
    # new mtime, so equality means "the very same file, untouched" as far as the OS can tell.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _mkstemp(path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _mkstemp(directory: Path) -> tuple[int, str]:
    name = str(directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), name


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


class _LocalTree:
    """A root directory and the only way keys become paths under it."""

    def __init__(self, root: Path, reserved: tuple[str, ...] = ()) -> None:
        self.root = Path(root).expanduser().absolute()
        self._reserved = reserved

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def resolved_root(self) -> Path:
        try:
            return self.root.resolve(strict=True)
        except FileNotFoundError:
            raise NoSuchBucket(f"directory {self.root} does not exist: create it or fix the path") from None

    def path(self, key: str) -> Path:
        safe_key(key)
        first, _, _ = key.partition("/")
        if first in self._reserved or key.rpartition("/")[2].startswith(TEMP_PREFIX):
            raise UnsafeKey(f"object key {key!r} uses a name reserved for archiver's own files")
        root = self.resolved_root()
        path = root / key
        # safe_key already refuses '..'; resolving catches symbolic links that lead out of root.
        if not path.resolve().is_relative_to(root):
            raise UnsafeKey(f"object key {key!r} leads outside {root} through a symbolic link")
        return path

    def stat(self, key: str, path: Path) -> os.stat_result:
        with _os_errors(self.where(key)):
            st = os.stat(path, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeKey(f"{self.where(key)} is a symbolic link; links are not objects")
        if not stat.S_ISREG(st.st_mode):
            raise NoSuchObject(f"{self.where(key)} is not a regular file")
        return st

    def walk(self, prefix: str, on_skip: OnSkip | None = None) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(key, entry) for every regular file whose key starts with `prefix`, in S3 key order;
        `on_skip(key, reason)` hears of every other entry under `prefix` (symlinks, sockets...)."""
        directory, _, _ = prefix.rpartition("/")
        start = self.path(directory) if directory else self.resolved_root()
        base = f"{directory}/" if directory else ""
        yield from self._walk(start, base, prefix, on_skip or _ignore)

    def _walk(
        self, directory: Path, base: str, prefix: str, on_skip: OnSkip
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory's entries with '/' appended to subdirectory names yields the keys of
        # the whole tree in plain string order, which is the order S3 lists in.
        files_and_dirs: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) or (not base and entry.name in self._reserved):
                continue
            if entry.is_dir(follow_symlinks=False):
                files_and_dirs.append((entry.name + "/", entry, True))
            elif entry.is_file(follow_symlinks=False):
                files_and_dirs.append((entry.name, entry, False))
            elif (base + entry.name).startswith(prefix):
                on_skip(base + entry.name, "symlink" if entry.is_symlink() else "not-a-file")
        for name, entry, is_dir in sorted(files_and_dirs, key=lambda t: t[0]):
            key = base + name
            if not (key.startswith(prefix) or prefix.startswith(key)):
                continue
            if is_dir:
                yield from self._walk(Path(entry.path), key, prefix, on_skip)
            else:
                yield key, entry


def _ignore(key: str, reason: str) -> None:
    pass


class LocalHotStore:
    """A hot store over a directory; keys are POSIX paths relative to `root`."""

    def __init__(self, root: Path) -> None:
        self._tree = _LocalTree(root)
        root_path = self._tree.resolved_root()
        if not root_path.is_dir():
            raise NoSuchBucket(f"{root_path} is not a directory: point the source at a directory")

    @property
    def url(self) -> str:
        return self._tree.url

    @property
    def selection(self) -> str:
        return ""  # a directory source is the directory given: its keys are relative to it

    @property
    def root(self) -> Path:
        return self._tree.root

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, etag=_change_token(st), last_modified=_mtime(st))

    def list(self, prefix: str = "", on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        for key, entry in self._tree.walk(prefix, on_skip):
            try:
                safe_key(key)
            except UnsafeKey:  # e.g. an NFD name or a newline, written by another tool: not addressable
                (on_skip or _ignore)(key, "unsafe-key")
                continue
            with _os_errors(self._tree.where(key)):
                st = entry.stat(follow_symlinks=False)
            yield self._info(key, st)

    def head(self, key: str) -> ObjectInfo:
        path = self._tree.path(key)
        return self._info(key, self._tree.stat(key, path))

    def get(self, key: str) -> bytes:
        path = self._tree.path(key)
        with _os_errors(self._tree.where(key)):
            return _read_nofollow(path)

    def put(self, key: str, data: bytes) -> ObjectInfo:
        path = self._tree.path(key)
        with _os_errors(self._tree.where(key), writing=True):
            _atomic_write(path, data)
        return self.head(key)

    def delete_if_unchanged(self, key: str, expected: ObjectInfo) -> None:
        path = self._tree.path(key)
        where = self._tree.where(key)
        if expected.etag is None:
            raise ValueError("delete_if_unchanged needs the ObjectInfo returned by head/list/put")
        # POSIX has no conditional unlink. Renaming first takes exactly the file that is there
        # now out of reach of writers; we then compare *that* file and either delete it or put it
        # back. A crash in between leaves the bytes in a TEMP_PREFIX file, never lost.
        tomb = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}.deleting")
        with _os_errors(where):
            self._tree.stat(key, path)  # refuse links and non-files before touching anything
            os.rename(path, tomb)
        with _os_errors(where):
            current = _change_token(os.stat(tomb, follow_symlinks=False))
            if current == expected.etag:
                os.unlink(tomb)
                _fsync_dir(path.parent)
                return
            # Put it back, unless a writer has created a newer object there meanwhile: that one
            # supersedes the file we took, exactly as if we had never looked.
            try:
                os.link(tomb, path)
            except FileExistsError:
                os.unlink(tomb)
            except OSError:  # no hard links on this file system
                if not os.path.lexists(path):
                    os.rename(tomb, path)
            else:
                os.unlink(tomb)
        raise object_changed(where)


@dataclass(frozen=True)
class _Sidecar:
    storage_class: str
    sha256: str
    size: int
    stored_at: datetime
    restore: dict[str, Any] | None = None  # tier, days, requested_at, ready_at, expiry (ISO 8601)
    metadata: dict[str, str] | None = None  # what the object holds, as S3 user metadata says it
    # The data file's mtime (ns) when it was stored: a file written since (in place, or replaced)
    # no longer has the SHA-256 above vouched for. None in sidecars written before it was kept.
    mtime_ns: int | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "storage_class": self.storage_class,
            "sha256": self.sha256,
            "size": self.size,
            "stored_at": self.stored_at.isoformat(),
            "restore": self.restore,
        }
        if self.metadata:
            doc["metadata"] = dict(self.metadata)
        if self.mtime_ns is not None:
            doc["mtime_ns"] = self.mtime_ns
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> _Sidecar:
        try:
            doc = json.loads(raw)
            return cls(
                storage_class=doc["storage_class"],
                sha256=doc["sha256"],
                size=int(doc["size"]),
                stored_at=datetime.fromisoformat(doc["stored_at"]),
                restore=doc.get("restore"),
                metadata=doc.get("metadata"),
                mtime_ns=int(doc["mtime_ns"]) if "mtime_ns" in doc else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(
                f"vault metadata of {where} is unreadable ({exc}): restore it from backup"
            ) from exc


class LocalVault:
    """A vault in a directory that behaves like S3 Glacier.

    Each object is a data file at `root/<key>` plus a JSON sidecar at `root/.archiver-meta/<key>.json`
    (storage class, SHA-256, size, restore request). The sidecar is written after the data, so an
    object exists exactly when its sidecar does. GLACIER and DEEP_ARCHIVE objects refuse `get` until
    a restore was requested and `restore_delay` has passed; the restored copy then stays readable
    for the requested number of days. GLACIER_IR and STANDARD read without a restore.
    """

    def __init__(
        self,
        root: Path,
        storage_class: str = "GLACIER",
        *,
        restore_delay: timedelta = timedelta(0),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        class_to_write(None, storage_class)  # a class no backend knows is refused here, not at a put
        self._tree = _LocalTree(root, reserved=(META_DIR,))
        try:
            self._tree.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # not "no such object": the vault itself cannot exist there
            raise StorageError(
                f"cannot create the vault directory {self._tree.root} ({exc.strerror}): "
                "set ARCHIVER_VAULT to a writable directory or s3://bucket/prefix"
            ) from None
        self._storage_class = storage_class
        self.restore_delay = restore_delay
        self._clock = clock

    @property
    def url(self) -> str:
        return self._tree.url

    @property
    def storage_class(self) -> str:
        return self._storage_class

    def _meta_path(self, key: str) -> Path:
        # `key` has passed safe_key via _tree.path; appending '.json' cannot collide with another
        # key's sidecar because every sidecar name ends in it.
        return self._tree.resolved_root() / META_DIR / f"{key}.json"

    def _sidecar(self, key: str) -> _Sidecar:
        where = self._tree.where(key)
        with _os_errors(where):
            raw = _read_nofollow(self._meta_path(key))
        return _Sidecar.from_json(raw, where)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> VaultCopy:
        path = self._tree.path(key)
        where = self._tree.where(key)
        digest = sha256_hex(data)
        stored_class = class_to_write(storage_class, self._storage_class)
        with _os_errors(where, writing=True):
            _atomic_write(path, data)
            mtime_ns = os.stat(path, follow_symlinks=False).st_mtime_ns
            sidecar = _Sidecar(
                stored_class, digest, len(data), self._clock(), None, dict(metadata or {}) or None, mtime_ns
            )
            _atomic_write(self._meta_path(key), sidecar.to_json())
            stored = sha256_hex(_read_nofollow(path))  # read back what is on disk, not what we sent
        confirm_checksum(digest, stored, uri=where)
        return VaultCopy(
            uri=path.as_uri(),
            key=key,
            storage_class=stored_class,
            version_id=None,
            sha256=digest,
            size=len(data),
        )

    def head(self, key: str) -> ObjectInfo:
        path = self._tree.path(key)
        sidecar = self._sidecar(key)
        st = self._tree.stat(key, path)
        # As an S3 HEAD reports no checksum for an object overwritten without one: the sidecar's
        # SHA-256 is reported only while the data file is the one it was recorded for.
        untouched = st.st_size == sidecar.size and sidecar.mtime_ns in (None, st.st_mtime_ns)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=_change_token(st),
            last_modified=_mtime(st),
            storage_class=sidecar.storage_class,
            sha256=sidecar.sha256 if untouched else None,
            metadata=sidecar.metadata,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key, entry in self._tree.walk(prefix):
            with _os_errors(self._tree.where(key)):
                st = entry.stat(follow_symlinks=False)
            yield ObjectInfo(key=key, size=st.st_size, etag=_change_token(st), last_modified=_mtime(st))

    def _state(self, sidecar: _Sidecar) -> RestoreState:
        if sidecar.storage_class not in ARCHIVE_CLASSES:
            return RestoreState(RestoreStatus.NOT_ARCHIVED)
        if sidecar.restore is None:
            return RestoreState(RestoreStatus.ARCHIVED)
        now = self._clock()
        ready_at = datetime.fromisoformat(sidecar.restore["ready_at"])
        expiry = datetime.fromisoformat(sidecar.restore["expiry"])
        if now < ready_at:
            return RestoreState(RestoreStatus.IN_PROGRESS)
        if now < expiry:
            return RestoreState(RestoreStatus.AVAILABLE, expiry)
        return RestoreState(RestoreStatus.ARCHIVED)  # the restored copy expired

    def restore_state(self, key: str) -> RestoreState:
        self._tree.path(key)
        return self._state(self._sidecar(key))

    def request_restore(self, key: str, tier: RestoreTier, days: int) -> RestoreState:
        check_restore_args(tier, days)
        self._tree.path(key)
        sidecar = self._sidecar(key)
        state = self._state(sidecar)
        if state.status in (RestoreStatus.NOT_ARCHIVED, RestoreStatus.IN_PROGRESS):
            return state
        now = self._clock()
        if state.status is RestoreStatus.AVAILABLE:
            # As on S3: asking again for a restored copy only moves its expiry.
            assert sidecar.restore is not None
            restore = {**sidecar.restore, "days": days, "expiry": (now + timedelta(days=days)).isoformat()}
        else:
            ready_at = now + self.restore_delay
            restore = {
                "tier": tier,
                "days": days,
                "requested_at": now.isoformat(),
                "ready_at": ready_at.isoformat(),
                "expiry": (ready_at + timedelta(days=days)).isoformat(),
            }
        updated = replace(sidecar, restore=restore)
        with _os_errors(self._tree.where(key)):
            _atomic_write(self._meta_path(key), updated.to_json())
        return self._state(updated)

    def get(self, key: str) -> bytes:
        path = self._tree.path(key)
        where = self._tree.where(key)
        sidecar = self._sidecar(key)
        state = self._state(sidecar)
        if not state.readable:
            raise not_restored(where, in_progress=state.status is RestoreStatus.IN_PROGRESS)
        with _os_errors(where):
            data = _read_nofollow(path)
        if sha256_hex(data) != sidecar.sha256:
            raise ChecksumMismatch(f"{where}: bytes on disk do not match the SHA-256 recorded when stored")
        return data

    def leftovers(self) -> Iterator[Leftover]:
        """Temporary files (`TEMP_PREFIX`) that an interrupted write left, data or sidecar: every
        write goes through one and renames it, so a process killed in between leaves it."""
        root = self._tree.resolved_root()
        for directory, _, files in os.walk(root):
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    path = Path(directory) / name
                    with _os_errors(str(path)):
                        st = os.stat(path, follow_symlinks=False)
                    yield Leftover(str(path), st.st_size, _mtime(st), f"rm {shlex.quote(str(path))}")

    def delete(self, key: str) -> None:
        path = self._tree.path(key)
        with _os_errors(self._tree.where(key)):
            # Sidecar first: without it the object no longer exists, even if a crash leaves data.
            for victim in (self._meta_path(key), path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(victim)
