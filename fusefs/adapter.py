"""The fusepy adapter: FUSE calls to tree lookups and served bytes, exceptions to errnos.

Owns the protocol only: it holds open handles and slices their bytes, and it maps exceptions onto
errnos in one place (`__call__`, `ERRNOS`). Paths and attributes come from fusefs/tree.py, bytes
from the product's read policy (archiver/readpolicy.py); nothing here reads the catalog, renders or
decides a policy. The mount is read-only: every call that would change something answers EROFS.

Opening a file produces its verified bytes (all failures surface at open, where cp and tar report
them), so `read` cannot fail. fusepy runs with `raw_fi=True` so that `open` gets libfuse's
`fuse_file_info` and sets `keep_cache`: verified rehydrated bytes never change, so the kernel may
keep them in its page cache across opens and warm reads never reach this process. A vault
original whose size differs from the record's rendered_size is opened with `direct_io` instead,
so the kernel does not clip it to the size stat reported earlier.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from fuse import FuseOSError, Operations

from archiver.errors import NotFound
from archiver.readpolicy import Busy, ReadPolicy, Remote, StillRendering, Unavailable, VaultFailed
from fusefs.tree import XATTR_PREFIX, Tree

log = logging.getLogger("fusefs")

# The read policy's outcomes as errnos (docs/architecture.md, "The mount", says why EREMOTE).
ERRNOS: dict[type[Unavailable], int] = {
    Remote: errno.EREMOTE,  # only in the archive tier: "Object is remote"; a restore was requested
    VaultFailed: errno.EIO,  # real damage: a vault copy failing its checksum, an unreachable vault
    StillRendering: errno.ETIMEDOUT,  # the render goes on and fills the cache: open it again later
    Busy: errno.EAGAIN,  # never raised here: the mount does not bound its render queue
}

RENDERS_XATTR = XATTR_PREFIX + "renders"  # render attempts for this file by this mount process
SERVED_XATTR = XATTR_PREFIX + "served"  # "rehydrated" or "original": what the last open returned
# How the last open's bytes were verified: "exact", "within-tolerance 66.2 dB" (this machine's
# render, its sketch that many dB from the accepted render's) or "original".
VERIFIED_XATTR = XATTR_PREFIX + "verified"


class ArchiveOperations(Operations):
    """A read-only FUSE file system over a Tree (paths) and a ReadPolicy (bytes)."""

    use_ns = True  # st_*time in nanoseconds (fusepy's float seconds are deprecated)

    def __init__(self, tree: Tree, policy: ReadPolicy) -> None:
        self.tree, self.policy = tree, policy
        self._handles: dict[int, memoryview] = {}
        self._next_fh = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, op: str, *args: Any) -> Any:
        """Every FUSE call comes through here: the one place exceptions become errnos."""
        try:
            return super().__call__(op, *args)
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
            log.exception("%s%r failed unexpectedly: answering EIO", op, args[:1])
            raise FuseOSError(errno.EIO) from None

    # --- reading ---

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        attrs = self.tree.stat(path)
        if attrs["st_mode"] & 0o170000 == 0o100000 and self.policy.served:
            attrs["st_size"] = self.policy.served_size(self.tree.file(path))
        return attrs

    def readdir(self, path: str, fh: int) -> Iterator[str]:
        # fusepy hands libfuse no offsets, so libfuse takes the whole listing in one call and pages
        # it to the kernel itself; the names come from the tree's prebuilt, sorted list. Not a
        # generator: the lookup must fail here, inside __call__, to become an errno.
        return itertools.chain([".", ".."], itertools.chain.from_iterable(self.tree.pages(path)))

    def open(self, path: str, fi: Any) -> int:
        if fi.flags & os.O_ACCMODE != os.O_RDONLY or fi.flags & (os.O_TRUNC | os.O_CREAT):
            raise FuseOSError(errno.EROFS)
        entry = self.tree.file(path)
        served = self.policy.read(entry)
        with self._lock:
            fh = next(self._next_fh)
            self._handles[fh] = memoryview(served.data)
        fi.fh = fh
        if len(served.data) == entry.size:
            fi.keep_cache = 1
        else:
            fi.direct_io = 1
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        try:
            data = self._handles[fi.fh]
        except KeyError:
            raise FuseOSError(errno.EBADF) from None
        return bytes(data[offset : offset + size])

    def release(self, path: str, fi: Any) -> int:
        with self._lock:
            self._handles.pop(fi.fh, None)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    def access(self, path: str, amode: int) -> int:
        self.tree.stat(path)
        if amode & os.W_OK:
            raise FuseOSError(errno.EROFS)
        return 0

    # --- extended attributes ---

    def listxattr(self, path: str) -> list[str]:
        names = self.tree.xattr_names(path)
        return [*names, RENDERS_XATTR, SERVED_XATTR, VERIFIED_XATTR] if names else names

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
            return (last.origin if name == SERVED_XATTR else last.describe()).encode()
        value = self.tree.xattrs(path).get(name)
        if value is None:
            raise FuseOSError(errno.ENODATA)
        return value

    # Calls with nothing to do are not registered with libfuse at all (fusepy skips None): each
    # would cost a round trip into Python per open or close, and a FLUSH answered ENOSYS once is
    # never sent again by the kernel. This halves the cost of a warm open.
    flush = fsync = opendir = releasedir = fsyncdir = lock = bmap = ioctl = init = None

    # --- the mount is read-only ---

    def _read_only(self, *args: Any) -> Any:
        raise FuseOSError(errno.EROFS)

    chmod = chown = create = link = mkdir = mknod = rename = rmdir = symlink = _read_only
    truncate = unlink = utimens = write = setxattr = removexattr = _read_only

    def destroy(self, path: str) -> None:
        self.policy.shutdown()
