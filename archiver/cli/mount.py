"""`archiver mount` and `archiver umount`: the archive as a read-only directory (fusefs/).

Owns the mount's command line: checking the mount point, logging, and running the mount in the
foreground (`fusefs.run.run_mount`, which wires the read path for FUSE) or as a background child.
The file system itself lives in fusefs/; nothing here serves a read.

Mount point errors are `MountError` (exit code 2, USAGE): missing, not a directory, not empty,
already mounted (or a dead mount left behind: `archiver umount` clears it). SIGINT and SIGTERM
unmount cleanly: libfuse's own handlers end its loop and it unmounts before `mount` returns 0.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from archiver.cli.app import App, canonical_source, checked, cli, pass_app
from archiver.errors import MountError
from archiver.units import parse_size

MOUNT_WAIT_SECONDS = 120  # a background mount loads the catalog index before it mounts


def mounted(path: Path) -> bool:
    """Whether `path` is a mount point, dead FUSE mounts included (os.path.ismount says no to those)."""
    target = os.path.abspath(path)
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                point = line.split()[1].encode().decode("unicode_escape")  # \040 for spaces, etc.
                if point == target:
                    return True
    except OSError:
        pass
    return os.path.ismount(target)


def check_mount_point(path: Path) -> Path:
    """The absolute mount point if it can be mounted on, else MountError saying what to do."""
    path = path.absolute()
    if mounted(path):
        try:
            os.statvfs(path)  # always reaches the file system (a stat may be answered from cache)
        except OSError as exc:  # ENOTCONN: the process that served it died
            raise MountError(
                f"{path} is a dead mount ({exc.strerror}): clear it with `archiver umount {path}`"
            ) from None
        raise MountError(f"{path} is already a mount point: unmount it first (`archiver umount {path}`)")
    if not path.exists():
        raise MountError(f"mount point {path} does not exist: create it (mkdir -p {path})")
    if not path.is_dir():
        raise MountError(f"mount point {path} is not a directory: mount on an empty directory")
    try:
        if any(path.iterdir()):
            raise MountError(f"mount point {path} is not empty: mount on an empty directory")
    except PermissionError:
        raise MountError(f"mount point {path} cannot be read: mount on a directory you own") from None
    return path


def _fusermount() -> str:
    for name in ("fusermount", "fusermount3"):
        if found := shutil.which(name):
            return found
    raise MountError("fusermount is not installed: apt-get install fuse3")


@cli.command()
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option("--foreground", "-f", is_flag=True, help="Stay attached; log to stderr; Ctrl-C unmounts.")
@click.option(
    "--cache-size",
    callback=checked(parse_size),
    help="Size limit of the on-disk cache: 500MiB, 20GB [ARCHIVER_CACHE_SIZE, bytes; 10 GiB].",
)
@click.option("--allow-other", is_flag=True, help="Let other users read the mount (needs user_allow_other).")
@click.option(
    "--source",
    callback=canonical_source,
    help="Show only this source. Otherwise a key several sources hold shows the oldest source's asset "
    "(user.archiver.source names it, user.archiver.other_sources the others).",
)
@pass_app
def mount(
    app: App,
    mountpoint: Path,
    foreground: bool,
    cache_size: str | None,
    allow_other: bool,
    source: str | None,
) -> None:
    """Show the archived images at MOUNTPOINT (read-only), each at its key: the path `ls`, `show`,
    `restore` and `serve` use, which never moves because another source was swept.

    Opening a file regenerates it and checks it against its record; verified bytes are cached.
    When a render fails, the vault original is served if it is readable; otherwise the open fails
    with EREMOTE ("Object is remote") and a restore is requested. Unmount with `archiver umount`.
    """

    point = check_mount_point(mountpoint)
    size = parse_size(cache_size) if cache_size else app.settings.cache_size
    if not foreground:
        _mount_in_background(app, point, cache_size, allow_other, source)
        return
    _serve(app, point, size, allow_other, source)


def _serve(app: App, point: Path, cache_size: int, allow_other: bool, source: str | None) -> None:
    try:
        from fusefs.run import run_mount
    except (OSError, ImportError) as exc:  # mfusepy raises OSError without libfuse3
        raise MountError(f"cannot load libfuse 3 ({exc}): apt-get install fuse3") from None
    from archiver.catalog.queries import scoped_source

    # One line per failed open, and per render and fallback.
    app.log_to_stderr("archiver mount", {"fusefs": logging.INFO, "archiver.read.policy": logging.INFO})
    with app.catalog.begin() as session:
        scope = scoped_source(session, source)
        source_id = None if scope is None else scope.id
    run_mount(
        app.settings,
        app.catalog,
        app.vault,
        point,
        cache_size=cache_size,
        allow_other=allow_other,
        source_id=source_id,
    )


def _mount_in_background(
    app: App, point: Path, cache_size: str | None, allow_other: bool, source: str | None
) -> None:
    """Run `mount --foreground` as a detached child and return once the mount is up (or say why not)."""
    settings = app.settings
    settings.ensure_home()
    log_path = settings.home / f"mount-{hashlib.sha256(str(point).encode()).hexdigest()[:8]}.log"
    env = {
        **os.environ,
        "ARCHIVER_HOME": str(settings.home),
        "ARCHIVER_DATABASE_URL": settings.catalog_url,
        "ARCHIVER_VAULT": settings.vault_url,
        "ARCHIVER_VAULT_STORAGE_CLASS": settings.vault_storage_class,
    }
    if settings.config_file is not None:
        env["ARCHIVER_CONFIG_FILE"] = str(settings.config_file)
    level = [] if app.log_level is None else ["--log-level", logging.getLevelName(app.log_level).lower()]
    argv = [sys.executable, "-m", "archiver", *level, "mount", str(point), "--foreground"]
    argv += ["--cache-size", cache_size] if cache_size else []
    argv += ["--allow-other"] if allow_other else []
    argv += ["--source", source] if source else []
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
        )
    deadline = time.monotonic() + MOUNT_WAIT_SECONDS
    while not mounted(point):
        if child.poll() is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit code {child.returncode}"
            raise MountError(f"the mount at {point} did not start: {last.removeprefix('archiver: error: ')}")
        if time.monotonic() > deadline:
            child.terminate()
            raise MountError(
                f"the mount at {point} did not come up in {MOUNT_WAIT_SECONDS} s: see {log_path}"
            )
        time.sleep(0.1)
    click.echo(f"mounted at {point} (log: {log_path}); unmount with `archiver umount {point}`")


@cli.command()
@click.argument("mountpoint", type=click.Path(path_type=Path))
def umount(mountpoint: Path) -> None:
    """Unmount an archiver mount (fusermount -u); the mount's process then exits."""
    point = mountpoint.absolute()
    if not mounted(point):
        raise MountError(f"{point} is not mounted")
    done = subprocess.run([_fusermount(), "-u", str(point)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise MountError(f"cannot unmount {point}: {reason}; close the files open there and try again")
