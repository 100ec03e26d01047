"""The software stack that renders depend on: what this process runs, and how a record's differs.

A record promises the SHA-256 of its rendered bytes, and those bytes depend on the exact builds of
torch, diffusers, Pillow, numpy and the rest, on CUDA and cuDNN, and on the device. `running_stack`
names them for this process; `compare` and `mismatches` say how the stacks records were made with
differ from it, so that `archiver status` and the mount warn before renders start failing their
hash. Nothing here reads the catalog (`catalog.queries.record_stacks` does) or renders.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Distributions whose builds change rendered bytes or the gate's verdict, by their metadata names:
# the names (and the version strings) records store in `Record.software`.
PACKAGES = ("torch", "diffusers", "transformers", "pillow", "numpy", "safetensors", "scikit-image", "lpips")


def running_stack(device: str | None = None) -> dict[str, str]:
    """This process's stack: python, each of PACKAGES that is installed, torch's CUDA and cuDNN
    builds when it has them, and `device` ("cpu" or "cuda"; by default "cuda" when torch sees one).

    Imports torch, which takes seconds.
    """
    import torch

    stack = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            stack[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if torch.version.cuda:
        stack["cuda"] = torch.version.cuda
    if torch.backends.cudnn.is_available():
        stack["cudnn"] = _cudnn_version(torch.backends.cudnn.version())
    stack["device"] = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return stack


def _install_fingerprint() -> dict[str, str]:
    """What `running_stack` depends on, read without importing torch: the interpreter, each
    package's installed version, and what decides the device (the GPU device files and the variables
    that hide GPUs). When none of it changed, neither did the stack."""
    import glob
    import os
    import sys

    found = {"python": platform.python_version(), "executable": sys.executable}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    found["gpu_files"] = ",".join(sorted(glob.glob("/dev/nvidia*")))
    for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        found[name] = os.environ.get(name, "")
    return found


def running_stack_cached(cache: Path) -> dict[str, str]:
    """`running_stack()`, remembered in `cache` (a JSON file) while nothing it depends on changed:
    `archiver status` answers in a fraction of a second instead of importing torch each time. A
    missing, unreadable or stale cache is recomputed (importing torch) and rewritten."""
    import json

    fingerprint = _install_fingerprint()
    try:
        kept = json.loads(cache.read_text())
        if kept.get("fingerprint") == fingerprint and isinstance(kept.get("stack"), dict):
            return {str(k): str(v) for k, v in kept["stack"].items()}
    except (OSError, ValueError):
        pass
    stack = running_stack()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_name(f".{cache.name}.{os.getpid()}")
        temporary.write_text(json.dumps({"fingerprint": fingerprint, "stack": stack}))
        temporary.replace(cache)  # whole or not at all: a reader never sees half a file
    except OSError:
        pass  # a read-only home still answers, just slower next time
    return stack


def _cudnn_version(number: int | None) -> str:
    """92400 as "9.24.0" (cuDNN 9 counts major * 10000), 8902 as "8.9.2" (before 9: major * 1000)."""
    if number is None:
        return "unknown"
    major, rest = divmod(number, 10000) if number >= 90000 else divmod(number, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _differences(recorded: Mapping[str, Any], running: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(part, recorded, running) for each part the record names whose value differs here ("none"
    when this process lacks it). Parts the record does not name are not compared: nothing is known
    of them."""
    return [
        (name, str(value), running.get(name, "none"))
        for name, value in recorded.items()
        if str(value) != running.get(name)
    ]


def compare(recorded: Mapping[str, str], running: Mapping[str, str]) -> list[str]:
    """Each part of `recorded` that differs in `running`, as "torch 2.13.0 -> 2.14.1"."""
    return [f"{name} {was} -> {now}" for name, was, now in _differences(recorded, running)]


@dataclass(frozen=True)
class Mismatch:
    """How many records were made with a stack that differs from the running one, and how."""

    records: int
    differences: tuple[tuple[str, str, str], ...]  # (part, recorded, running)

    def message(self) -> str:
        made = "1 record was" if self.records == 1 else f"{self.records} records were"
        parts = ", ".join(f"{name} {was} (this machine: {now})" for name, was, now in self.differences)
        return (
            f"{made} made with {parts}: their renders may not match; the vault originals remain the fallback"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "differences": [f"{name} {was} -> {now}" for name, was, now in self.differences],
            "message": self.message(),
        }


def mismatches(stacks: Iterable[tuple[Mapping[str, Any], int]], running: Mapping[str, str]) -> list[Mismatch]:
    """The recorded stacks (each with its record count) that differ from `running`, most records
    first; stacks that differ from it in the same way are counted together."""
    counts: dict[tuple[tuple[str, str, str], ...], int] = {}
    for recorded, records in stacks:
        if differences := tuple(_differences(recorded, running)):
            counts[differences] = counts.get(differences, 0) + records
    found = [Mismatch(records, differences) for differences, records in counts.items()]
    return sorted(found, key=lambda m: -m.records)


# Environment variables that steer torch's CPU kernels: another CPU generation takes other paths
# by itself; these make one machine take them on purpose (and are part of what a device is).
KERNEL_OVERRIDES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS")


def device_fingerprint(device: str, dtype: str) -> dict[str, str]:
    """What makes this machine's renders what they are: the stack, the device's name, the dtype,
    torch's CPU capability and any kernel overrides. `fingerprint_id` names it in the catalog."""
    import torch

    doc = running_stack(device) | {"dtype": dtype, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.startswith("cuda") and torch.cuda.is_available():
        doc["device_name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        doc["device_name"] = _cpu_name()
    for name in KERNEL_OVERRIDES:
        if os.environ.get(name):
            doc[name] = os.environ[name]
    return doc


def fingerprint_id(doc: Mapping[str, str]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(dict(doc), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
