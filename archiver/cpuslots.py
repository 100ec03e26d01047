"""Machine-wide CPU slots: how many cores archiver's torch work may keep busy at once, across every
archiver process of this user on this machine.

A render pins its thread count (the bytes depend on it: `engine.rendering.CPU_THREADS`), so the
way to stop several processes (a sweep, a mount, an origin, a training run) from oversubscribing
the cores is not fewer threads but fewer computations at once. There is one slot per core: a
computation on N threads holds N slots (at most all of them) while it runs (a render, a gate
evaluation, a training step) and waits while they are taken. A slot is an `flock` on one of the
files in `slot_dir()`: the kernel releases it when its holder exits or is killed, so no slot is
ever leaked, and it works between threads of one process too (each holder opens its own file).

Free slots are taken at once, whichever they are; when too few are free, a computation gives back
what it took and waits for slots 0, 1, ... in ascending order, so waiters never form a cycle. A
thread that already holds slots takes none again (a gate evaluation inside a held render, say).

It does not choose thread counts (callers do) and knows nothing of torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

SLOTS_ENV = "ARCHIVER_CPU_SLOTS"  # how many slots (cores) the machine has for archiver; 0 turns them off
_held = threading.local()


def slot_count() -> int:
    """Slots on this machine: ARCHIVER_CPU_SLOTS, else the cores this process may run on."""
    configured = os.environ.get(SLOTS_ENV)
    if configured is not None and configured.strip().isdigit():
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def slot_dir() -> Path:
    """Where the slot files live: shared by every archiver process of this user on this machine."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    return base / f"archiver-cpu-slots-{os.getuid()}"


def _open_slot(directory: Path, index: int) -> int:
    return os.open(directory / f"slot-{index}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def cpu_slots(threads: int) -> Iterator[float]:
    """Hold `threads` slots (at most all of them) while the block runs; yields the seconds waited.

    Nested use in one thread takes nothing more. With ARCHIVER_CPU_SLOTS=0 it never waits."""
    total = slot_count()
    if getattr(_held, "depth", 0) or total <= 0:
        _held.depth = getattr(_held, "depth", 0) + 1
        try:
            yield 0.0
        finally:
            _held.depth -= 1
        return
    wanted = max(1, min(threads, total))
    directory = slot_dir()
    directory.mkdir(mode=0o700, exist_ok=True)
    started = time.perf_counter()
    fds = _take(directory, total, wanted)
    try:
        waited = time.perf_counter() - started
        _held.depth = 1
        try:
            yield waited
        finally:
            _held.depth = 0
    finally:
        for fd in fds:
            os.close(fd)  # closing the file releases its lock


def _take(directory: Path, total: int, wanted: int) -> list[int]:
    """`wanted` slots: any free ones at once; else wait for slots 0, 1, ... in ascending order."""
    got: list[int] = []
    for index in range(total):
        fd = _open_slot(directory, index)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        got.append(fd)
        if len(got) == wanted:
            return got
    for fd in got:  # not enough free: give them back, then wait in order (no cycle of waiters)
        os.close(fd)
    got = []
    try:
        for index in range(wanted):
            fd = _open_slot(directory, index)
            got.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        for fd in got:
            os.close(fd)
        raise
    return got


def each_in_slots(steps: Iterable[int], threads: int) -> Iterator[int]:
    """`steps`, with `threads` slots held while the loop body runs for each (a training step)."""
    for step in steps:
        with cpu_slots(threads):
            yield step
