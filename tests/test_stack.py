"""The software stack check: `archiver.stack` on its own, then `archiver status` and the mount's log
on a catalog swept for real whose records claim an older torch."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from support import cli
from support.homes import SweptHome
from support.mounts import require_fuse, start_mount, stop_mount

from archiver.catalog.database import open_catalog
from archiver.catalog.models import Record
from archiver.catalog.queries import set_record_software
from archiver.stack import (
    PACKAGES,
    _cudnn_version,
    _install_fingerprint,
    compare,
    mismatches,
    running_stack,
    running_stack_cached,
)

TORCH = importlib.metadata.version("torch")
OLD_TORCH = "2.13.0" if TORCH != "2.13.0" else "2.12.0"


def test_running_stack_names_the_installed_builds_and_the_device() -> None:
    import torch

    stack = running_stack()
    assert stack["python"] == platform.python_version()
    for name in PACKAGES:
        assert stack[name] == importlib.metadata.version(name), name
    assert stack["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert stack.get("cuda") == torch.version.cuda
    if torch.backends.cudnn.is_available():
        assert re.fullmatch(r"\d+\.\d+\.\d+", stack["cudnn"])
    assert running_stack(device="cpu")["device"] == "cpu"


def test_cudnn_version_numbers_read_as_releases() -> None:
    assert (_cudnn_version(92400), _cudnn_version(90100), _cudnn_version(8902)) == (
        "9.24.0",
        "9.1.0",
        "8.9.2",
    )


def test_compare_names_each_recorded_part_that_differs() -> None:
    running = {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.4.6", "device": "cpu"}
    assert compare({"torch": "2.14.1", "numpy": "2.4.6"}, running) == []
    assert compare({"torch": "2.13.0", "numpy": "2.4.6"}, running) == ["torch 2.13.0 -> 2.14.1"]
    # a part this process lacks is a difference; one the record does not name is unknown, not one
    assert compare({"numpy": "2.3.0", "cuda": "13.0"}, running) == [
        "numpy 2.3.0 -> 2.4.6",
        "cuda 13.0 -> none",
    ]


def test_mismatches_count_records_that_differ_the_same_way_together() -> None:
    running = {"torch": "2.14.1", "numpy": "2.4.6", "transformers": "5.24.0"}
    stacks = [
        ({"torch": "2.13.0", "numpy": "2.4.6"}, 3),
        ({"torch": "2.13.0", "numpy": "2.4.6", "transformers": "5.24.0"}, 2),  # same difference
        ({"torch": "2.14.1", "numpy": "2.3.0"}, 1),
        ({"torch": "2.14.1", "numpy": "2.4.6"}, 7),  # this machine's
    ]
    found = mismatches(stacks, running)
    assert [m.message() for m in found] == [
        "5 records were made with torch 2.13.0 (this machine: 2.14.1): their renders may not match; "
        "the vault originals remain the fallback",
        "1 record was made with numpy 2.3.0 (this machine: 2.4.6): their renders may not match; "
        "the vault originals remain the fallback",
    ]
    assert found[0].to_dict()["differences"] == ["torch 2.13.0 -> 2.14.1"]
    assert mismatches(stacks[3:], running) == []


def _age_torch(catalog_url: str, records: int) -> None:
    """Make `records` of the catalog's records claim they were made with OLD_TORCH."""
    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        for record in session.scalars(select(Record).order_by(Record.asset_id).limit(records)):
            set_record_software(session, record, {**record.software, "torch": OLD_TORCH})
    catalog.close()


def test_the_cached_stack_is_used_only_while_the_install_is_unchanged(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "stack.json"
    assert running_stack_cached(cache) == running_stack()  # computed and remembered
    kept = json.loads(cache.read_text())
    assert kept["fingerprint"] == _install_fingerprint()
    # What the cache holds is what is answered while the install is the same ...
    cache.write_text(json.dumps({**kept, "stack": {**kept["stack"], "cudnn": "remembered"}}))
    assert running_stack_cached(cache)["cudnn"] == "remembered"
    # ... and recomputed once any package's version differs from the one it was made under.
    stale = {**kept["fingerprint"], "torch": OLD_TORCH}
    cache.write_text(json.dumps({"fingerprint": stale, "stack": {**kept["stack"], "cudnn": "stale"}}))
    assert running_stack_cached(cache) == running_stack()
    assert json.loads(cache.read_text())["fingerprint"]["torch"] == TORCH
    cache.write_text("{half a fi")  # torn or foreign: recomputed, not an error
    assert running_stack_cached(cache) == running_stack()


def test_status_names_records_made_with_another_torch(
    swept_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "status")
    assert code == 0 and "this machine" not in out  # the sweep recorded this machine's stack
    code, out, _ = cli(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["stack_mismatches"] == []

    _age_torch(swept_url, 3)
    line = (
        f"3 records were made with torch {OLD_TORCH} (this machine: {TORCH}): their renders may not match; "
        "the vault originals remain the fallback"
    )
    code, out, _ = cli(capsys, "status")
    assert code == 0 and out.splitlines()[-1] == line and out.count("this machine") == 1
    code, out, _ = cli(capsys, "status", "--json")
    assert json.loads(out)["stack_mismatches"] == [
        {"records": 3, "differences": [f"torch {OLD_TORCH} -> {TORCH}"], "message": line}
    ]


@pytest.mark.fuse
def test_the_mount_logs_records_made_with_another_torch_when_it_starts(
    memorized_home: SweptHome, tmp_path: Path
) -> None:
    require_fuse()
    home = memorized_home.copy_home(tmp_path / "home")
    _age_torch(f"sqlite:///{home / 'catalog.db'}", 1)
    mount = start_mount(home, tmp_path / "mp", tmp_path / "mount.log")
    try:
        log = mount.log_text()
    finally:
        stop_mount(mount)
    assert f"archiver mount: 1 record was made with torch {OLD_TORCH} (this machine: {TORCH})" in log
