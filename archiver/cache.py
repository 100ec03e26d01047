"""The read path's cache of verified bytes on disk, and single-flight work per key.

Owns `DiskCache` (content-addressed files under a directory: an LRU with a hard size limit and a
free-space floor, surviving restarts, every entry re-hashed when it is loaded) and `SingleFlight`
(however many callers ask for the same key at once, the work runs once, on a bounded pool of
workers, with an optional bound on the work waiting for one). Used by archiver/read/policy.py, for
the mount and the HTTP origin alike. It must not know about assets, records or renders: callers
name entries by the SHA-256 the catalog promises, so a loaded entry is checked against exactly
what the record says.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DiskCache:
    """Verified bytes by SHA-256, at most `max_bytes` of them, never leaving less than `min_free` free.

    Entries live at DIR/ab/abcdef… (the SHA-256 of their bytes). Writes go to DIR/tmp and are
    renamed into place, so a reader never sees half an entry; they are not fsynced, because a torn
    entry after a crash fails its hash when loaded and is dropped. The LRU order is the entries'
    mtimes (touched on every hit), so it survives restarts.
    """

    def __init__(self, directory: Path, max_bytes: int, min_free: int = 0) -> None:
        self.directory, self.max_bytes, self.min_free = directory, max_bytes, min_free
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # sha256 -> size, least recent first
        self.total = 0
        self._tmp = directory / "tmp"
        shutil.rmtree(self._tmp, ignore_errors=True)  # leftovers of a crash: never renamed, never valid
        self._tmp.mkdir(parents=True, exist_ok=True)
        found: list[tuple[int, str, int]] = []
        for shard in directory.iterdir():
            if shard.name == "tmp" or not shard.is_dir():
                continue
            for path in shard.iterdir():
                if _SHA256.fullmatch(path.name) and path.name[:2] == shard.name:
                    st = path.stat()
                    found.append((st.st_mtime_ns, path.name, st.st_size))
        for _, sha256, size in sorted(found):
            self._entries[sha256] = size
            self.total += size
        self._evict(0)  # the limit may have been lowered since the last run

    def _path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256

    def size_of(self, sha256: str) -> int | None:
        with self._lock:
            return self._entries.get(sha256)

    def get(self, sha256: str) -> bytes | None:
        """The entry's bytes if present and still hashing to `sha256`; a damaged entry is dropped."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._forget(sha256)
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            log.warning("cache entry %s does not match its SHA-256: dropped, it will be rendered again", path)
            self._forget(sha256)
            path.unlink(missing_ok=True)
            return None
        with self._lock:
            if sha256 not in self._entries:  # written by another process sharing the directory
                self.total += len(data)
            self._entries[sha256] = len(data)
            self._entries.move_to_end(sha256)
        with contextlib.suppress(OSError):
            os.utime(path)  # LRU order that survives a restart
        return data

    def put(self, sha256: str, data: bytes) -> bool:
        """Store verified bytes (the caller checked them); False when the limits leave no room."""
        if len(data) > self.max_bytes:
            return False
        with self._lock:
            if sha256 in self._entries:
                return True
            if not self._evict(len(data)):
                log.warning(
                    "cache at %s: no room for %d bytes (free-space floor %d): served without caching",
                    self.directory,
                    len(data),
                    self.min_free,
                )
                return False
            path = self._path(sha256)
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix=sha256[:12])
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                log.warning("cache at %s: cannot write an entry (%s): served without caching", path, exc)
                return False
            self._entries[sha256] = len(data)
            self.total += len(data)
            return True

    # Links: an entry found by another name, with a note. The read path names a render by the
    # SHA-256 its record promises; a render verified within tolerance has other bytes, so it is
    # stored under its own hash and linked from the promised one, the note saying how it was
    # verified. A link is a line under DIR/links and holds no bytes of its own: a link whose entry
    # was evicted is dropped when next followed.

    def link(self, name: str, target: str, note: str = "") -> None:
        """Make `get_linked(name)` return the entry `target` (stored with `put`) and `note`."""
        if not (_SHA256.fullmatch(name) and _SHA256.fullmatch(target)) or "\n" in note:
            raise ValueError("cache links are named by SHA-256 hex digests, with a one-line note")
        links = self.directory / "links"
        links.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="link")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(f"{target} {note}".rstrip())
            os.replace(tmp, links / name)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            log.warning("cache at %s: cannot write a link (%s)", links, exc)

    def get_linked(self, name: str) -> tuple[bytes, str] | None:
        """The bytes of the entry `name` links to (checked against that entry's own hash) and the
        link's note, or None."""
        try:
            target, _, note = (self.directory / "links" / name).read_text().strip().partition(" ")
        except (FileNotFoundError, NotADirectoryError):
            return None
        data = self.get(target) if _SHA256.fullmatch(target) else None
        if data is None:
            self.unlink(name)
            return None
        return data, note

    def unlink(self, name: str) -> None:
        (self.directory / "links" / name).unlink(missing_ok=True)

    def _free(self) -> int:
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def _evict(self, incoming: int) -> bool:
        """Drop least-recent entries until `incoming` more bytes fit both limits. Holds the lock."""
        while self._entries and (
            self.total + incoming > self.max_bytes or self._free() - incoming < self.min_free
        ):
            sha256, size = self._entries.popitem(last=False)
            self.total -= size
            self._path(sha256).unlink(missing_ok=True)
        return self.total + incoming <= self.max_bytes and self._free() - incoming >= self.min_free

    def _forget(self, sha256: str) -> None:
        with self._lock:
            size = self._entries.pop(sha256, None)
            if size is not None:
                self.total -= size


class QueueFull(Exception):
    """SingleFlight took no new work: as many keys as it may hold are already running or waiting."""


class SingleFlight(Generic[T]):
    """Runs `work` once per key however many callers ask at the same time; all get its result.

    The pool's size is the number of render workers. Renders go through AssetReader, which today
    runs one render at a time per process; extra workers overlap the catalog reads, hashing and
    cache writes around it. This is also where batching would go: on a GPU, keys waiting here that
    share a model could be gathered into one pipeline call (render_batch takes many seeds) instead
    of one call each. Not done yet: AssetReader renders one record per call.

    `max_waiting` bounds the keys queued behind the busy workers: a new key beyond it raises
    QueueFull at once, so a burst of cold keys is refused instead of piling up. A caller asking for
    a key already in flight always joins it. None (the mount's choice) queues without limit.
    """

    def __init__(self, workers: int, max_waiting: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render")
        self._limit = None if max_waiting is None else workers + max_waiting
        self._lock = threading.Lock()
        self._running: dict[str, Future[T]] = {}

    def run(self, key: str, work: Callable[[], T]) -> Future[T]:
        """The future of the work in flight for `key`, started now if none is (QueueFull if full)."""
        with self._lock:
            future = self._running.get(key)
            if future is not None:
                return future
            if self._limit is not None and len(self._running) >= self._limit:
                raise QueueFull(f"{len(self._running)} keys already running or waiting")
            future = self._pool.submit(work)
            self._running[key] = future
        # Outside the lock: a future already done runs its callback at once, in this thread.
        future.add_done_callback(lambda done: self._finished(key, done))
        return future

    def depth(self) -> int:
        """Keys in flight: running on a worker or waiting for one."""
        with self._lock:
            return len(self._running)

    def _finished(self, key: str, future: Future[T]) -> None:
        with self._lock:
            if self._running.get(key) is future:
                del self._running[key]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
