"""The FUSE adapter (libfuse 3 through mfusepy): FUSE calls to tree lookups and served bytes,
exceptions to errnos.

Owns the protocol only, and is the only module that imports the binding. Paths and attributes come
from fusefs/tree.py, bytes from the product's read policy (archiver/read/policy.py); nothing here
reads the catalog, renders or decides a policy. The mount is read-only: every call that would change
something answers EROFS.

How the kernel is kept from calling Python (docs/architecture.md, "The mount", has the numbers):
- Zero-message opens. `open` answers ENOSYS once; a kernel with no-open support (Linux 4.19+,
  FUSE_CAP_NO_OPEN_SUPPORT) then never sends OPEN or RELEASE again and opens every file with
  keep_cache, so verified bytes stay in the page cache across opens and a warm open + read never
  reaches this process. The read policy therefore runs at the first `read` of a file (its failures
  surface there: cp and tar report "Object is remote" as a read error), and `read` slices the
  policy's memory LRU by path, with no per-handle state. (Python's buffered `open()` asks isatty:
  the kernel forwards every ioctl to the file system, and libfuse answers it ENOSYS in C.)
- Long entry and attribute timeouts (ATTR_TIMEOUT): an archived entry is immutable. A catalog
  change is pushed to the kernel instead (`Invalidator`: every `refresh_seconds` the tree is
  re-checked and the changed paths are invalidated through libfuse's notify calls).
- Attributes with the listing (readdirplus): `ls -l`, `find -size`, rsync and scandir + stat get
  every entry's attributes with the listing, not one getattr per entry. Each directory's entries
  are built once per tree snapshot (`Listings`: encoded names and complete stat structs in one C
  array), so serving a listing is one libfuse filler call per entry.

Served bytes of another size. A render within tolerance on other hardware, or the vault original,
may differ in size from the record's rendered_size, which stat reported. The first read that learns
it tells the kernel (`_size_learned`): a larger file has its attributes invalidated before that read
replies (attributes only: the pages being read stay locked until the reply), so the reader's next
read past the old end fetches the new size and the rest of the bytes; a smaller file needs nothing,
since the kernel shrinks a file whose read comes back short. Stat and listings report the served
size from then on.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy prefers libfuse2 when both are installed
import mfusepy

from archiver.errors import NotFound
from archiver.read.policy import (
    Busy,
    ReadPolicy,
    Remote,
    StillRendering,
    Unavailable,
    VaultFailed,
)
from archiver.read.reader import Verified
from fusefs.tree import XATTR_PREFIX, FileEntry, Index, NoSuchPath, Tree

log = logging.getLogger("fusefs")
FuseOSError = mfusepy.FuseOSError

# The read policy's outcomes as errnos (docs/architecture.md, "The mount", says why EREMOTE).
ERRNOS: dict[type[Unavailable], int] = {
    Remote: errno.EREMOTE,  # only in the archive tier: "Object is remote"; a restore was requested
    VaultFailed: errno.EIO,  # real damage: a vault copy failing its checksum, an unreachable vault
    StillRendering: errno.ETIMEDOUT,  # the render goes on and fills the cache: read it again later
    Busy: errno.EAGAIN,  # never raised here: the mount does not bound its render queue
}

RENDERS_XATTR = XATTR_PREFIX + "renders"  # render attempts for this file by this mount process
SERVED_XATTR = XATTR_PREFIX + "served"  # "rehydrated" or "original": what the last read returned
# How the last read's bytes were verified: "exact", "within-tolerance 66.2 dB" (this machine's
# render, its sketch that many dB from the accepted render's) or "original".
VERIFIED_XATTR = XATTR_PREFIX + "verified"
# The bytes reading the file gives (`sha256sum` agrees with it): the record's render until a read
# returned other bytes, then those. The original's are `original_sha256` and `original_size`.
SERVED_SHA256_XATTR = XATTR_PREFIX + "served_sha256"
SERVED_SIZE_XATTR = XATTR_PREFIX + "served_size"

# Seconds the kernel may trust an entry and its attributes without asking: archived entries are
# immutable, and catalog changes are invalidated explicitly (Invalidator).
ATTR_TIMEOUT = 86_400.0
# libfuse 3 (fuse_common.h)
FUSE_CAP_NO_OPEN_SUPPORT = 1 << 17
FUSE_READDIR_PLUS = 1 << 0  # readdir's flags: the kernel asked for readdirplus
FUSE_FILL_DIR_PLUS = 1 << 1  # the filler's flags: this entry's stat is complete

_lib = mfusepy._libfuse
_lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_lib.fuse_get_session.argtypes = [ctypes.c_void_p]
_lib.fuse_get_session.restype = ctypes.c_void_p
_lib.fuse_lowlevel_notify_inval_inode.argtypes = [
    ctypes.c_void_p,
    ctypes.c_uint64,
    ctypes.c_int64,
    ctypes.c_int64,
]

# libfuse's filler with the stat passed by address: a listing hands it pointers into one C array
FILL_BY_ADDRESS = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
)
STAT_SIZE = ctypes.sizeof(mfusepy.c_stat)
# Entries whose listings are kept at most (about 200 bytes each: a struct stat and the encoded name);
# beyond it the oldest-built directory's listing is dropped and built again when listed.
LISTING_CACHE_ENTRIES = 1_000_000

F = TypeVar("F", bound=Callable[..., Any])


def errnos(method: F) -> F:
    """Every FUSE call goes through this: the one place exceptions become errnos."""

    @functools.wraps(method)
    def call(self: ArchiveOperations, *args: Any) -> Any:
        try:
            return method(self, *args)
        except FuseOSError:
            raise
        except Unavailable as exc:
            code = ERRNOS.get(type(exc), errno.EIO)
            log.error("%s: %s", errno.errorcode[code], exc)
            raise FuseOSError(code) from None
        except NotFound:
            raise FuseOSError(errno.ENOENT) from None
        except IsADirectoryError:
            raise FuseOSError(errno.EISDIR) from None
        except NotADirectoryError:
            raise FuseOSError(errno.ENOTDIR) from None
        except Exception:
            log.exception("%s%r failed unexpectedly: answering EIO", method.__name__, args[:1])
            raise FuseOSError(errno.EIO) from None

    return call  # type: ignore[return-value]


class ArchiveOperations(mfusepy.Operations):
    """A read-only FUSE file system over a Tree (paths) and a ReadPolicy (bytes)."""

    use_ns = True  # st_*time in nanoseconds

    def __init__(self, tree: Tree, policy: ReadPolicy, mountpoint: str) -> None:
        self.tree, self.policy, self.mountpoint = tree, policy, mountpoint
        self.mounted = False  # set once libfuse has mounted and called init
        self.zero_message_opens = False  # set in init when the kernel supports no-open
        self._told: dict[int, int] = {}  # asset id -> a size the kernel was told, where not the record's
        self._told_lock = threading.Lock()
        self._fuse: int | None = None  # struct fuse *, for libfuse's notify calls
        self._invalidator: Invalidator | None = None
        self.listings = Listings(tree, policy.served)

    def init_with_config(self, conn: Any, config: Any) -> None:
        config.entry_timeout = config.attr_timeout = ATTR_TIMEOUT
        config.negative_timeout = 0.0  # a key swept in appears at the next tree refresh
        self.zero_message_opens = bool(conn.capable & FUSE_CAP_NO_OPEN_SUPPORT)
        self._fuse = _lib.fuse_get_context().contents.fuse
        self._invalidator = Invalidator(self)
        self._invalidator.start()
        self.mounted = True
        log.info(
            "libfuse %d.%d: %s, attributes trusted for %.0f s, listings with attributes (readdirplus)",
            mfusepy.fuse_version_major,
            mfusepy.fuse_version_minor,
            "zero-message opens" if self.zero_message_opens else "no no-open support: one OPEN per open",
            ATTR_TIMEOUT,
        )

    def destroy(self, path: str) -> None:
        if self._invalidator is not None:
            self._invalidator.stop()
        self.policy.shutdown()

    # --- attributes and listings ---

    @errnos
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        attrs = self.tree.stat(path)
        if attrs["st_mode"] & 0o170000 == 0o100000 and self.policy.served:
            attrs["st_size"] = self.policy.served_size(self.tree.file(path))
        return attrs

    @errnos
    def listing(self, path: str) -> Listing:
        """The directory's entries for readdirplus (the lookup fails here, as an errno)."""
        return self.listings.get(path)

    @errnos
    def readdir(self, path: str, fh: int) -> list[str]:
        """The names alone; registers readdir with libfuse, which ArchiveFUSE.readdir_fuse_3 serves."""
        return [".", "..", *self.tree.readdir(path)]

    # --- reading ---

    @errnos
    def open(self, path: str, fi: Any) -> int:
        if fi.flags & os.O_ACCMODE != os.O_RDONLY or fi.flags & (os.O_TRUNC | os.O_CREAT):
            raise FuseOSError(errno.EROFS)
        if self.zero_message_opens:
            raise FuseOSError(errno.ENOSYS)  # the kernel stops sending OPEN and keeps pages across opens
        self.tree.file(path)
        fi.keep_cache = 1  # verified bytes never change: the page cache may keep them across opens
        return 0

    @errnos
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        entry = self.tree.file(path)
        data = self.policy.read(entry).data
        if len(data) != self._told.get(entry.asset_id, entry.size):
            self._size_learned(path, entry, len(data))
        return bytes(memoryview(data)[offset : offset + size])

    def _size_learned(self, path: str, entry: FileEntry, size: int) -> None:
        """The served bytes are `size` long, not what stat said: tell the kernel once (module doc)."""
        with self._told_lock:
            known = self._told.get(entry.asset_id, entry.size)
            if known == size:
                return
            self._told[entry.asset_id] = size
        self.listings.forget(self.tree.normalize(path).rsplit("/", 1)[0] or "/")  # its size is stale there
        log.info("%s: served %d bytes, not the record's %d: attributes updated", entry.key, size, entry.size)
        if size > known:
            # The kernel's node id is the inode number libfuse reports (no use_ino); the open
            # file's dentry is cached, so this stat asks nothing of this process.
            node = os.lstat(os.path.join(self.mountpoint, path.lstrip("/"))).st_ino
            _lib.fuse_lowlevel_notify_inval_inode(_lib.fuse_get_session(self._fuse), node, -1, 0)

    @errnos
    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    @errnos
    def access(self, path: str, amode: int) -> int:
        self.tree.stat(path)
        if amode & os.W_OK:
            raise FuseOSError(errno.EROFS)
        return 0

    # --- extended attributes ---

    @errnos
    def listxattr(self, path: str) -> list[str]:
        names = self.tree.xattr_names(path)
        return [*names, RENDERS_XATTR, SERVED_XATTR, VERIFIED_XATTR] if names else names

    @errnos
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        # Tools ask every file for security.* and system.posix_acl_*: answer without a lookup.
        if not name.startswith(XATTR_PREFIX):
            raise FuseOSError(errno.ENODATA)
        if name in (RENDERS_XATTR, SERVED_XATTR, VERIFIED_XATTR):
            entry = self.tree.file(path)
            if name == RENDERS_XATTR:
                return str(self.policy.renders[entry.asset_id]).encode()
            last = self.policy.served.get(entry.asset_id)
            if last is None:
                return b""
            return (last.served_from if name == SERVED_XATTR else last.describe()).encode()
        if name in (SERVED_SHA256_XATTR, SERVED_SIZE_XATTR):
            last = self.policy.served.get(self.tree.file(path).asset_id)
            if last is not None:  # what a read returned: another render within tolerance, or the original
                return (last.sha256 if name == SERVED_SHA256_XATTR else str(last.size)).encode()
        value = self.tree.xattrs(path).get(name)
        if value is None:
            raise FuseOSError(errno.ENODATA)
        return value

    # --- the mount is read-only ---

    def _read_only(self, *args: Any) -> Any:
        raise FuseOSError(errno.EROFS)

    chmod = chown = create = link = mkdir = mknod = rename = rmdir = symlink = _read_only
    truncate = unlink = utimens = write = setxattr = removexattr = _read_only


class ArchiveFUSE(mfusepy.FUSE):
    """mfusepy's FUSE with readdirplus from prebuilt listings (mfusepy itself passes the file type only)."""

    operations: ArchiveOperations

    def readdir_fuse_3(self, path: bytes, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        try:
            listing = self.operations.listing(path.decode(self.encoding, self.errors))
        except FuseOSError as exc:
            return -(exc.errno or errno.EIO)
        fill = ctypes.cast(filler, FILL_BY_ADDRESS)
        names, address = listing.names, ctypes.addressof(listing.stats)
        entry_flag = FUSE_FILL_DIR_PLUS if flags & FUSE_READDIR_PLUS else 0
        # Each entry carries its offset (its position + 1): libfuse then fills the kernel's buffer
        # straight from this call, one call per buffer, starting where the last one stopped
        # (libfuse 3 walks its own copy of the listing from the start for every buffer otherwise).
        # "." and ".." go without FUSE_FILL_DIR_PLUS: libfuse looks those up itself.
        for position in range(offset, len(names)):
            stat = address + position * STAT_SIZE
            if fill(buf, names[position], stat, position + 1, entry_flag if position >= 2 else 0):
                break
        return 0


@dataclass(frozen=True, slots=True)
class Listing:
    """One directory's entries as readdirplus hands them to libfuse: ".", "..", then its names, each
    encoded, with its complete stat at the same position in one C array."""

    names: list[bytes]
    stats: ctypes.Array[mfusepy.c_stat]


class Listings:
    """Each directory's Listing, built at its first listing and kept for the life of the tree snapshot
    (a refresh that changed the catalog starts over), so serving a listing does no per-entry Python
    work. At most LISTING_CACHE_ENTRIES entries are kept (about 200 bytes each); a directory whose
    served sizes changed is built again (`forget`). Thread-safe."""

    def __init__(self, tree: Tree, served: Mapping[int, Verified], encoding: str = "utf-8") -> None:
        self.tree, self.served, self.encoding = tree, served, encoding  # served: the read policy's
        self._lock = threading.Lock()
        self._index: Index | None = None
        self._cache: dict[str, Listing] = {}  # by directory, oldest built first
        self._entries = 0
        self._generation = 0  # bumped by forget: a listing built meanwhile is not kept

    def get(self, path: str) -> Listing:
        index, path = self.tree.index(), self.tree.normalize(path)
        with self._lock:
            if index is not self._index:
                self._index, self._cache, self._entries = index, {}, 0
            listing, generation = self._cache.get(path), self._generation
        if listing is not None:
            return listing
        listing = self.build(index, path)
        with self._lock:
            if self._index is index and self._generation == generation and path not in self._cache:
                self._cache[path] = listing
                self._entries += len(listing.names)
                while self._entries > LISTING_CACHE_ENTRIES and len(self._cache) > 1:
                    self._entries -= len(self._cache.pop(next(iter(self._cache))).names)
        return listing

    def forget(self, directory: str) -> None:
        """Build `directory`'s listing again at its next listing (a file's served size changed)."""
        with self._lock:
            self._generation += 1
            if (dropped := self._cache.pop(directory, None)) is not None:
                self._entries -= len(dropped.names)

    def build(self, index: Index, path: str) -> Listing:
        directory = index.dirs.get(path)
        if directory is None:
            if path in index.files:
                raise NotADirectoryError(path)
            raise NoSuchPath(f"{path}: not in the archive")
        count = len(directory.names) + 2
        template = mfusepy.c_stat(st_mode=0o100444, st_nlink=1, st_uid=self.tree.uid, st_gid=self.tree.gid)
        stats = (mfusepy.c_stat * count).from_buffer_copy(bytes(template) * count)
        prefix = path.rstrip("/") + "/"
        served = self.served
        for position, name in enumerate(directory.names, 2):
            st = stats[position]
            full = prefix + name
            entry = index.files.get(full)
            if entry is not None:
                last = served.get(entry.asset_id)
                st.st_size = size = entry.size if last is None else last.size
                st.st_blocks = (size + 511) // 512
                mtime_ns = entry.mtime_ns
            else:
                st.st_mode, st.st_nlink = 0o40555, 2
                mtime_ns = index.dirs[full].mtime_ns
            sec, nsec = divmod(mtime_ns, 1_000_000_000)
            atime, mtime, ctime = st.st_atimespec, st.st_mtimespec, st.st_ctimespec
            atime.tv_sec = mtime.tv_sec = ctime.tv_sec = sec
            atime.tv_nsec = mtime.tv_nsec = ctime.tv_nsec = nsec
        for position in (0, 1):  # "." and "..": libfuse takes their type only
            stats[position].st_mode, stats[position].st_nlink = 0o40555, 2
        names = [b".", b"..", *(name.encode(self.encoding, "surrogateescape") for name in directory.names)]
        return Listing(names, stats)


class Invalidator(threading.Thread):
    """Every `refresh_seconds`, re-checks the tree against the catalog and invalidates, through
    libfuse, the kernel's attributes and pages of every path that changed or went away (a path
    libfuse never looked up has nothing cached and is skipped). A removed file then answers ENOENT
    to stat within `refresh_seconds`; a new one appears in the next listing (no negative caching)."""

    def __init__(self, ops: ArchiveOperations) -> None:
        super().__init__(name="fusefs-invalidator", daemon=True)
        self.ops = ops
        self._stop_event = threading.Event()
        self._seen = ops.tree.index()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(max(self.ops.tree.refresh_seconds, 0.05)):
            try:
                current = self.ops.tree.index()
                if current is not self._seen:
                    changed = changed_paths(self._seen, current)
                    for path in changed:
                        _lib.fuse_invalidate_path(self.ops._fuse, path.encode())
                    self._seen = current
                    if changed:
                        log.info("catalog changed: %d paths invalidated", len(changed))
            except Exception:
                log.exception(
                    "re-checking the tree failed; trying again in %s s", self.ops.tree.refresh_seconds
                )


def changed_paths(old: Index, new: Index) -> list[str]:
    """Paths whose attributes or listing differ between two snapshots, or that went away."""
    paths = [p for p, entry in old.files.items() if new.files.get(p) != entry]
    for path, directory in old.dirs.items():
        now = new.dirs.get(path)
        if now is None or now.names != directory.names or now.mtime_ns != directory.mtime_ns:
            paths.append(path)
    return paths
