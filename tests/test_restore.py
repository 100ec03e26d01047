"""`archiver restore` on a swept catalogue: rehydration and originals, local and on moto's S3,
a Glacier restore held in progress, and the failures that must leave everything hot untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import MEMORIZED, catalog_assets, cli, register

from archiver.catalog.models import AssetState
from archiver.cli import main
from archiver.errors import ExitCode
from archiver.storage import open_vault


@dataclass(frozen=True)
class Swept:
    home: Path
    hot: Path


SWEEP_ENV = {
    "ARCHIVER_SEED_SEARCH_MAX": "2",
    "ARCHIVER_SEED_SEARCH_BATCH": "1",
}


@pytest.fixture(scope="module")
def swept_once(tmp_path_factory: pytest.TempPathFactory, memorized: dict[str, object]) -> tuple[Path, Path]:
    """Sweep the memorized catalogue once per module; `swept` resets it before each test.

    The catalog holds absolute paths (source and vault URLs), so each test gets the same
    directories back, restored from a pristine copy, rather than a copy somewhere else.
    """
    root = tmp_path_factory.mktemp("swept")
    live, pristine = root / "live", root / "pristine"
    hot = live / "hot"
    for key, data in memorized["files"].items():  # type: ignore[union-attr]
        (hot / key).parent.mkdir(parents=True, exist_ok=True)
        (hot / key).write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("ARCHIVER_")]:
            patch.delenv(name)
        for name, value in {
            **SWEEP_ENV,
            "ARCHIVER_HOME": str(live / "home"),
            "XDG_CONFIG_HOME": str(root / "xdg"),
        }.items():
            patch.setenv(name, value)
        assert main(["model", "add", str(memorized["model"]), "--name", "tiny"]) == 0
        assert main(["sweep", str(hot), "--model", "tiny", "--json"]) == 0
    assert not any((hot / k).exists() for k in MEMORIZED)
    shutil.copytree(live, pristine)
    return live, pristine


@pytest.fixture
def swept(swept_once: tuple[Path, Path], archiver_env: Path, monkeypatch: pytest.MonkeyPatch) -> Swept:
    live, pristine = swept_once
    shutil.rmtree(live)
    shutil.copytree(pristine, live)
    for name, value in {**SWEEP_ENV, "ARCHIVER_HOME": str(live / "home")}.items():
        monkeypatch.setenv(name, value)
    return Swept(home=live / "home", hot=live / "hot")


def test_rehydrate_restore_writes_the_recorded_bytes(
    swept: Swept, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "restore", "shoes/tiny-red.png", "--json")
    assert code == 0, err
    (job,) = json.loads(out)["jobs"]
    assert (job["mode"], job["state"]) == ("rehydrate", "done")
    asset = catalog_assets(swept.home)["shoes/tiny-red.png"]
    data = (swept.hot / "shoes/tiny-red.png").read_bytes()
    assert hashlib.sha256(data).hexdigest() == asset.record.rendered_sha256  # type: ignore[union-attr]
    assert asset.state == AssetState.RESTORED
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == ("PNG", (64, 64))
    # Asking again says it is already restored, and renders nothing (no new job). These originals
    # are the model's exact renders, so the bytes back hot are the original's.
    code, out, _ = cli(capsys, "restore", "shoes/tiny-red.png", "--json")
    assert code == 0 and json.loads(out) == {
        "jobs": [],
        "already_restored": [
            {"key": "shoes/tiny-red.png", "source": swept.hot.as_uri(), "restored": "original"}
        ],
    }
    code, out, _ = cli(capsys, "restore", "shoes/tiny-red.png")
    assert code == 0 and "shoes/tiny-red.png is already restored (original)" in out
    code, out, _ = cli(capsys, "restore", "status", "shoes/tiny-red.png", "--json")
    assert len(json.loads(out)["jobs"]) == 1
    assert (swept.hot / "shoes/tiny-red.png").read_bytes() == data


def test_original_restore_from_a_pack_is_byte_exact(
    swept: Swept, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "restore", "--prefix", "shoes/tiny-", "--original", "--json")
    assert code == 0, err
    jobs = json.loads(out)["jobs"]
    assert (
        len(jobs) == 4
        and {j["state"] for j in jobs} == {"done"}
        and {j["mode"] for j in jobs} == {"original"}
    )
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    for key in MEMORIZED:
        assert (swept.hot / key).read_bytes() == files[key]
    assets = catalog_assets(swept.home)
    assert {assets[k].state for k in MEMORIZED} == {AssetState.RESTORED}
    code, out, _ = cli(capsys, "show", "shoes/tiny-blue.jpg", "--json")
    events = [e["event"] for e in json.loads(out)["history"]]
    assert events[-5:] == [
        "restore-requested",
        "restore-in_progress",
        "restore-available",
        "restore-copied",
        "restored",
    ]


def test_a_corrupted_vault_copy_is_refused_and_nothing_hot_changes(
    swept: Swept, capsys: pytest.CaptureFixture[str]
) -> None:
    asset = catalog_assets(swept.home)["shoes/tiny-green.png"]
    vault_key = asset.vault_object.key  # type: ignore[union-attr]
    (stored,) = [
        p for p in (swept.home / "vault").rglob("*") if p.is_file() and p.as_posix().endswith(vault_key)
    ]
    damaged = bytearray(stored.read_bytes())
    damaged[(asset.vault_offset or 0) + 40] ^= 0xFF  # inside the member's frame
    stored.write_bytes(bytes(damaged))
    code, out, _ = cli(capsys, "restore", "shoes/tiny-green.png", "--original", "--json")
    assert code == ExitCode.INTEGRITY
    (job,) = json.loads(out)["jobs"]
    assert job["state"] == "failed" and ("SHA-256" in job["reason"] or "damaged" in job["reason"])
    assert not (swept.hot / "shoes/tiny-green.png").exists()
    assert catalog_assets(swept.home)["shoes/tiny-green.png"].state == AssetState.ARCHIVED


def test_an_occupied_hot_location_is_not_overwritten(
    swept: Swept, capsys: pytest.CaptureFixture[str]
) -> None:
    (swept.hot / "shoes/tiny-pink.jpg").write_bytes(b"somebody else's new file")
    code, out, _ = cli(capsys, "restore", "shoes/tiny-pink.jpg", "--original", "--json")
    assert code == ExitCode.INTEGRITY and "left as it is" in json.loads(out)["jobs"][0]["reason"]
    assert (swept.hot / "shoes/tiny-pink.jpg").read_bytes() == b"somebody else's new file"


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["restore", "shoes/nope.png"], ExitCode.NOT_FOUND, "no asset 'shoes/nope.png'"),
        (["restore", "shoes/distractor.png"], ExitCode.NOT_FOUND, "is rejected, not archived"),
        (["restore"], ExitCode.USAGE, "exactly one of KEY or --prefix"),
        (["restore", "shoes/tiny-red.png", "--tier", "Fast"], ExitCode.USAGE, "Fast"),
        (["restore", "status", "shoes/nope.png"], ExitCode.NOT_FOUND, "no asset"),
    ],
)
def test_bad_restore_requests(
    swept: Swept, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    got, _, err = cli(capsys, *argv)
    assert got == code and says in err


def test_restore_status_lists_jobs(swept: Swept, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "restore", "shoes/tiny-red.png")[0] == 0
    code, out, _ = cli(capsys, "restore", "status", "--json")
    assert code == 0 and [(j["key"], j["state"]) for j in json.loads(out)["jobs"]] == [
        ("shoes/tiny-red.png", "done")
    ]
    code, out, _ = cli(capsys, "restore", "status", "--open", "--json")
    assert json.loads(out)["jobs"] == []


def test_glacier_restore_held_in_progress_then_waited_for(
    env: Path,
    memorized: dict[str, object],
    s3_client: Any,
    moto_server: str,
    moto_restores: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On moto's S3: the vault pack is in GLACIER; the restore is reported pending while moto holds
    it, and `restore --wait` completes once it is released."""
    hot, cold = f"hot-{uuid.uuid4().hex[:10]}", f"cold-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=hot)
    s3_client.create_bucket(Bucket=cold)
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    for key, data in files.items():
        s3_client.put_object(Bucket=hot, Key=key, Body=data)
    register(capsys, memorized)
    vault = f"s3://{cold}/vault"
    assert cli(capsys, "--vault", vault, "sweep", f"s3://{hot}", "--model", "tiny")[0] == 0
    pack_key = catalog_assets(env)["shoes/tiny-red.png"].vault_object.key  # type: ignore[union-attr]
    # Hold the pack's restore "in progress" (moto's state manager; see tests/s3_server.py).
    moto_restores.step_after(1)
    open_vault(vault, "GLACIER").request_restore(pack_key, "Standard", 1)
    moto_restores.hold()
    code, out, _ = cli(capsys, "--vault", vault, "restore", "shoes/tiny-red.png", "--original", "--json")
    assert code == ExitCode.PENDING and json.loads(out)["jobs"][0]["state"] == "in_progress"
    code, out, _ = cli(capsys, "--vault", vault, "restore", "status", "shoes/tiny-red.png", "--json")
    assert json.loads(out)["jobs"][0]["state"] == "in_progress"
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archiver",
            "--vault",
            vault,
            "restore",
            "shoes/tiny-red.png",
            "--original",
            "--wait",
            "--poll",
            "0.5",
            "--timeout",
            "120",
            "--json",
        ],
        env={**os.environ, "ARCHIVER_HOME": str(env)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    assert waiting.poll() is None  # still waiting on the vault
    moto_restores.finish()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err[-500:]
    assert json.loads(out)["jobs"][0]["state"] == "done"
    assert (
        s3_client.get_object(Bucket=hot, Key="shoes/tiny-red.png")["Body"].read()
        == files["shoes/tiny-red.png"]
    )
