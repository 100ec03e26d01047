"""Machine-wide CPU slots (`archiver.cpuslots`): real flocks, real threads and a real process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archiver import cpuslots


@pytest.fixture
def slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return cpuslots.slot_dir()


def _overlaps(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize(("cores", "threads", "most"), [(1, 1, 1), (2, 1, 2), (2, 2, 1), (4, 2, 2)])
def test_holders_never_use_more_slots_than_the_machine_has(
    slots: Path, monkeypatch: pytest.MonkeyPatch, cores: int, threads: int, most: int
) -> None:
    monkeypatch.setenv(cpuslots.SLOTS_ENV, str(cores))
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            with cpuslots.cpu_slots(threads):
                start = time.perf_counter()
                time.sleep(0.02)
                end = time.perf_counter()
            with lock:
                spans.append((start, end))

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len(spans) == 12
    # 2-thread computations on 4 cores may run two at once, never three; on 2 cores one at a time.
    assert _overlaps(spans) <= most
    if cores // threads > 1:
        assert _overlaps(spans) > 1  # and they do run side by side when there is room


def test_a_nested_holder_takes_nothing_more(slots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpuslots.SLOTS_ENV, "1")
    with cpuslots.cpu_slots(1), cpuslots.cpu_slots(2) as waited:  # a deadlock if it took the slot again
        assert waited == 0.0


def test_a_killed_holder_releases_its_slot(slots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpuslots.SLOTS_ENV, "1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from archiver.cpuslots import cpu_slots\n"
            "with cpu_slots(1):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        taken = threading.Event()

        def take() -> None:
            with cpuslots.cpu_slots(1):
                taken.set()

        waiter = threading.Thread(target=take)
        waiter.start()
        assert not taken.wait(0.5)  # the other process holds the only slot
        holder.kill()
        assert taken.wait(10)  # the kernel released it with the process
        waiter.join()
    finally:
        holder.kill()
        holder.wait()


def test_zero_slots_turn_them_off(slots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpuslots.SLOTS_ENV, "0")
    with cpuslots.cpu_slots(8) as waited:
        assert waited == 0.0
    assert not slots.exists()


def test_training_steps_hold_slots_one_step_at_a_time(slots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpuslots.SLOTS_ENV, "1")
    seen = []
    for step in cpuslots.each_in_slots(range(3), 1):
        with cpuslots.cpu_slots(1) as waited:  # nested inside the step: already held
            seen.append((step, waited))
    assert seen == [(0, 0.0), (1, 0.0), (2, 0.0)]
    with cpuslots.cpu_slots(1) as waited:  # released after the last step
        assert waited < 1.0
