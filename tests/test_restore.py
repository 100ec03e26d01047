"""`archiver restore` on a swept catalogue: rehydration and originals, local and on moto's S3,
a Glacier restore held in progress, and the failures that must leave everything hot untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import MEMORIZED, catalog_assets, cli, register
from support.homes import SweptHome
from support.processes import SHORT_SEARCH

from archiver.catalog.models import AssetState
from archiver.errors import ExitCode
from archiver.storage import open_vault


@pytest.fixture
def swept(memorized_home: SweptHome, archiver_env: Path, monkeypatch: pytest.MonkeyPatch) -> SweptHome:
    """The session's sweep of the whole `memorized` catalogue (the two images the gate rejects too),
    put back as the sweep left it: restores write into its source, where the catalog says it is."""
    for name, value in {**SHORT_SEARCH, "ARCHIVER_HOME": str(memorized_home.home)}.items():
        monkeypatch.setenv(name, value)
    return memorized_home.reset()


def test_rehydrate_restore_writes_the_recorded_bytes(
    swept: SweptHome, capsys: pytest.CaptureFixture[str]
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
    swept: SweptHome, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
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
    swept: SweptHome, capsys: pytest.CaptureFixture[str]
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
    swept: SweptHome, capsys: pytest.CaptureFixture[str]
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
    swept: SweptHome, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    got, _, err = cli(capsys, *argv)
    assert got == code and says in err


def test_restore_status_lists_jobs(swept: SweptHome, capsys: pytest.CaptureFixture[str]) -> None:
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
    code, _, err = cli(capsys, "--vault", vault, "sweep", f"s3://{hot}", "--model", "tiny")
    assert code == 0, err
    pack_key = catalog_assets(env)["shoes/tiny-red.png"].vault_object.key  # type: ignore[union-attr]
    # Hold the pack's restore "in progress" (moto's state manager; see tests/support/s3_server.py).
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
