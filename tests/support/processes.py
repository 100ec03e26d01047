"""Running `archiver` as users run it: a whole process with a clean environment of its own.

`base_env(home, **extra)` is this process's environment without any ARCHIVER_* setting or CPU
code-path override (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA), pointed at `home`, on the CPU, plus
`extra`; `archiver(env, *argv)` runs one command to the end; `wait_until` polls with a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# A short seed search for the tiny `memorized` model: it regenerates its images at seed 0.
SHORT_SEARCH = {
    "ARCHIVER_SEED_SEARCH_MAX": "2",
    "ARCHIVER_SEED_SEARCH_BATCH": "1",
    # Banks by count and at the end only: banking every 30 s would cut a sweep into as many packs
    # as a loaded machine takes half-minutes (the tests that bank mid-sweep set a count).
    "ARCHIVER_SWEEP_BANK_SECONDS": "86400",
}

# Set only by the tests that make renders take other CPU code paths (tests/test_records_travel_example.py).
CPU_PATH_OVERRIDES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_") and k not in CPU_PATH_OVERRIDES
    }
    return (
        env
        | {"ARCHIVER_HOME": str(home), "XDG_CONFIG_HOME": str(home / "no-config"), "ARCHIVER_DEVICE": "cpu"}
        | extra
    )


def archiver(env: dict[str, str], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m archiver ARGV` in `env`, to its end: its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "archiver", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_until(check: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)
