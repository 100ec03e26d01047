"""Running a mount: the read path wired for FUSE from the settings (the tree, the model preload, the
reader, the disk cache, the read policy), then libfuse in the foreground until it is unmounted.

`archiver mount` calls `run_mount` after checking the mount point and setting up logging; this
module owns what the mount reads through, as `archiver.http.origin.server.build` does for the HTTP
origin. Mount errors are `MountError` (exit code 2).
"""

from __future__ import annotations

import logging
from pathlib import Path

from archiver.cache import DiskCache
from archiver.catalog.database import Catalog
from archiver.catalog.queries import models_in_use, record_stacks
from archiver.errors import MountError
from archiver.modelcheck import check_first_use
from archiver.read.models import ModelPreload
from archiver.read.policy import ReadPolicy
from archiver.read.reader import AssetReader
from archiver.settings import Settings
from archiver.stack import mismatches, running_stack
from archiver.storage import Vault
from fusefs.adapter import ArchiveFUSE, ArchiveOperations
from fusefs.tree import Tree

log = logging.getLogger("fusefs")


def run_mount(
    settings: Settings,
    catalog: Catalog,
    vault: Vault,
    point: Path,
    *,
    cache_size: int,
    allow_other: bool,
    source_id: int | None,
) -> None:
    """Mount the archive (one source's, with `source_id`) at `point` and serve it until unmounted."""
    tree = Tree(catalog, source_id=source_id, refresh_seconds=settings.mount_refresh_seconds)
    tree.index()  # load the index now: a bad catalog fails before anything is mounted
    # resolved_device imports torch (seconds); an explicit cpu leaves that to the first render
    device = "cpu" if settings.device == "cpu" else settings.resolved_device()
    with catalog.begin() as session:
        preload = ModelPreload(models_in_use(session), device)
    reader = AssetReader(catalog, vault, device=device, load=preload.load, wait_for_models=preload.wait)
    check_first_use(catalog, reader)
    cache = DiskCache(settings.cache_dir, cache_size, settings.cache_min_free)
    policy = ReadPolicy(
        catalog,
        reader,
        cache,
        workers=settings.render_workers,
        read_timeout=settings.mount_read_timeout,
        retry_render_after=settings.mount_render_retry_seconds,
        memory_bytes=settings.memory_cache_size,
    )
    index = tree.index()
    log.info(
        "mounting %d archived files at %s (cache %s, %d bytes max)%s",
        len(index.files),
        point,
        settings.cache_dir,
        cache_size,
        (f"; {index.skipped} keys skipped (not valid paths)" if index.skipped else "")
        + (f"; {index.shadowed} keys shown from an older source" if index.shadowed else ""),
    )
    with catalog.begin() as session:
        stacks = record_stacks(session)
    if stacks:  # records made with other builds may no longer render to their hash: say so now
        for mismatch in mismatches(stacks, running_stack(device)):
            log.warning("%s", mismatch.message())
    preload.start()  # the models load while the mount comes up; a read meanwhile waits for them
    operations = ArchiveOperations(tree, policy, str(point))
    try:
        ArchiveFUSE(
            operations,
            str(point),
            foreground=True,
            raw_fi=True,
            ro=True,
            default_permissions=True,
            allow_other=allow_other,
            fsname="archiver",
            subtype="archiver",
        )
    except RuntimeError as exc:
        # libfuse 3 ends its loop with an error code after SIGTERM/SIGINT too: a mount that came up
        # and was taken down by a signal or an unmount ended cleanly.
        if not operations.mounted:
            raise MountError(
                f"fuse could not mount at {point} ({exc}): see fusermount's message above"
            ) from None
    finally:
        policy.shutdown()
    log.info("unmounted %s", point)
