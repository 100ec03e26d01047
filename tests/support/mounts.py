"""Real FUSE mounts for tests: `archiver mount MP --foreground` in a process of its own, waited for
with a deadline and always unmounted (`fusermount -u -z` as the last resort).

`require_fuse()` skips a test (fails it under CI=true) when /dev/fuse, fusermount, rsync or
libfuse 3 is missing; `fuse_missing()` only says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.processes import base_env, wait_until


def fuse_missing() -> str | None:
    """Why a mount cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    for tool in ("fusermount", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    try:
        import fusefs.adapter  # noqa: F401
    except (OSError, ImportError) as exc:
        return f"mfusepy cannot load libfuse 3: {exc}"
    return None


def require_fuse() -> None:
    """Skip the calling test without FUSE, with the reason; under CI=true that is a failure."""
    if (reason := fuse_missing()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"FUSE mounts are required under CI=true: {reason}")
        pytest.skip(f"FUSE mount tests skipped: {reason}")


@dataclass
class Mount:
    point: Path
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_mount(home: Path, point: Path, log: Path, **env: str) -> Mount:
    """`archiver mount POINT --foreground` over `home` (base_env, plus `env`), once it is mounted."""
    point.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "archiver", "mount", str(point), "--foreground"],
            env=base_env(home, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    mount = Mount(point, process, log)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the mount exited with {process.returncode}: {mount.log_text()[-800:]}")
        return os.path.ismount(point)

    try:
        wait_until(up, 60, f"the mount at {point}")
    except BaseException:
        stop_mount(mount)
        raise
    return mount


def stop_mount(mount: Mount) -> None:
    """Unmount whatever happened: SIGTERM, then fusermount -u -z and a kill as the last resort."""
    if mount.process.poll() is None:
        mount.process.send_signal(signal.SIGTERM)
        try:
            mount.process.wait(20)
        except subprocess.TimeoutExpired:
            mount.process.kill()
            mount.process.wait(10)
    if os.path.ismount(mount.point) or listed(mount.point):
        subprocess.run(["fusermount", "-u", "-z", str(mount.point)], capture_output=True)


def listed(point: Path) -> bool:
    """Whether the kernel still lists a mount at `point` (a dead one too, which ismount misses)."""
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(point) for line in mounts)


def read_through_a_mount(home: Path, keys: Iterable[str]) -> dict[str, bytes] | None:
    """Each key's bytes, read through a real mount of `home` (at home/../mp); None without FUSE,
    which tests/test_mount.py reports."""
    if fuse_missing() is not None:
        return None
    mount = start_mount(home, home.parent / "mp", home.parent / "mount.log")
    try:
        return {key: (mount.point / key).read_bytes() for key in sorted(keys)}
    finally:
        stop_mount(mount)
