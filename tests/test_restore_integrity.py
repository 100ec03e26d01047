"""Integrity reported truthfully both ways (issue 28, items 1-5): a healthy vault is never called
damaged, a damaged one never clean.

On moto's S3 (a hot bucket, a GLACIER vault with packs): a rehydrated restore leaves what the vault
copy is checked against as it was, so `restore --original` of the prefix and `fsck --read-data`
succeed after it (item 1); a second restore of a key back hot says so and renders nothing (item 3);
a pack overwritten with flipped bytes and no checksum is reported by plain `fsck` and as corrupt
by `--read-data`, and its member's restore is refused (items 1 and 4). On a local vault: `fsck
--read-data` reads what it thaws at once (item 2), a single original flipped in place is reported
by plain `fsck` (item 4), and the temporary file a killed write leaves is listed with what to do
(item 5).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import MEMORIZED, catalog_assets, cli, register

from archiver.catalog.database import open_catalog
from archiver.errors import ExitCode
from archiver.fsck import fsck as run_fsck
from archiver.storage import LocalVault

RED = "shoes/tiny-red.png"


def loose_pngs(files: dict[str, bytes]) -> dict[str, bytes]:
    """The catalogue with its PNGs saved uncompressed: the same pixels (the gate passes them, the
    model renders them exactly) in other bytes and sizes than the record's render, as originals
    from another encoder are."""
    out = dict(files)
    for key in [k for k in MEMORIZED if k.endswith(".png")]:
        with Image.open(io.BytesIO(files[key])) as image:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=0)
        out[key] = buffer.getvalue()
    return out


def test_a_rehydrated_restore_never_changes_what_the_vault_copy_is_checked_against(
    env: Path,
    memorized: dict[str, object],
    s3_client: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hot, cold = bucket, f"{bucket}-cold"
    s3_client.create_bucket(Bucket=cold)
    files = loose_pngs(memorized["files"])  # type: ignore[arg-type]
    for key, data in files.items():
        s3_client.put_object(Bucket=hot, Key=key, Body=data)
    register(capsys, memorized)
    vault = ("--vault", f"s3://{cold}/vault")
    code, out, err = cli(capsys, *vault, "sweep", f"s3://{hot}", "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["archived"] == len(MEMORIZED), err
    before = catalog_assets(env)[RED]
    assert before.vault_object is not None and before.vault_object.is_pack
    assert before.record is not None and before.record.rendered_size != before.size  # not the same bytes

    # Item 1: rehydrate one member of the pack; the original's identity stays as it was.
    code, out, err = cli(capsys, *vault, "restore", RED, "--json")
    assert code == 0, err
    rendered = s3_client.get_object(Bucket=hot, Key=RED)["Body"].read()
    assert hashlib.sha256(rendered).hexdigest() == before.record.rendered_sha256
    after = catalog_assets(env)[RED]
    assert (after.size, after.sha256, after.etag) == (before.size, before.sha256, before.etag)
    assert (after.hot_sha256, after.hot_size) == (before.record.rendered_sha256, len(rendered))

    # Item 3: asking again says so and renders nothing.
    code, out, err = cli(capsys, *vault, "restore", RED, "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "jobs": [],
        "already_restored": [{"key": RED, "source": f"s3://{hot}", "restored": "rehydrated"}],
    }

    # The byte-exact originals of the whole prefix: the rehydrated member's render is replaced.
    code, out, err = cli(
        capsys, *vault, "restore", "--prefix", "shoes/", "--original", "--tier", "Bulk", "--wait", "--json"
    )
    assert code == 0, err
    assert {(j["mode"], j["state"]) for j in json.loads(out)["jobs"]} == {("original", "done")}
    for key in MEMORIZED:
        assert s3_client.get_object(Bucket=hot, Key=key)["Body"].read() == files[key], key
    code, out, err = cli(capsys, *vault, "fsck", "--read-data", "--json")
    assert code == 0 and json.loads(out)["clean"], out + err
    code, out, _ = cli(capsys, *vault, "restore", "--prefix", "shoes/", "--original", "--json")
    assert code == 0 and json.loads(out)["jobs"] == []
    assert {a["restored"] for a in json.loads(out)["already_restored"]} == {"original"}

    # A damaged member is still damage: the pack overwritten with two bytes flipped in a member's
    # frame, by a plain PUT (no SHA-256 checksum), in GLACIER like the rest.
    green = catalog_assets(env)["shoes/tiny-green.png"]
    assert green.vault_object is not None
    pack_key = f"vault/{green.vault_object.key}"
    pack = bytearray(s3_client.get_object(Bucket=cold, Key=pack_key)["Body"].read())
    pack[(green.vault_offset or 0) + 30] ^= 0x01
    pack[(green.vault_offset or 0) + 31] ^= 0x01
    s3_client.put_object(Bucket=cold, Key=pack_key, Body=bytes(pack), StorageClass="GLACIER")
    # Item 4: plain fsck (HEAD only) does not call it clean: its checksum is gone.
    code, out, _ = cli(capsys, *vault, "fsck", "--json")
    report = json.loads(out)
    assert code == ExitCode.INTEGRITY and report["problems"] == {"unverified": 1}
    assert report["findings"][0]["where"] == green.vault_object.key
    code, out, _ = cli(capsys, *vault, "fsck", "--read-data", "--json")
    report = json.loads(out)
    assert code == ExitCode.INTEGRITY and report["problems"] == {"corrupt": 1}, report
    # Its member, gone from the hot bucket, is refused from the vault and nothing hot is written.
    s3_client.delete_object(Bucket=hot, Key="shoes/tiny-green.png")
    code, out, _ = cli(capsys, *vault, "restore", "shoes/tiny-green.png", "--original", "--wait", "--json")
    (job,) = json.loads(out)["jobs"]
    assert code == ExitCode.INTEGRITY and job["state"] == "failed" and "damaged" in job["reason"]
    assert "Contents" not in s3_client.list_objects_v2(Bucket=hot, Prefix="shoes/tiny-green.png")


# --- a local vault ---


@pytest.fixture
def local_sweep(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """The `memorized` catalogue swept into the default local vault (GLACIER): the two larger
    originals single, the two smaller in a pack. Returns the vault directory."""
    sizes = sorted(len(memorized["files"][k]) for k in MEMORIZED)  # type: ignore[index]
    monkeypatch.setenv("ARCHIVER_PACK_THRESHOLD", str(sizes[1] + 1))
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["archived"] == len(MEMORIZED), err
    assets = catalog_assets(env)
    packed = {assets[k].vault_object.is_pack for k in MEMORIZED}  # type: ignore[union-attr]
    assert packed == {True, False}
    return env / "vault"


def test_fsck_read_data_reads_what_a_local_vault_thaws_at_once(
    env: Path, local_sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 2: nothing in a local vault is left `thawing`: its restores are done when asked."""
    code, out, err = cli(capsys, "fsck", "--read-data", "--json")
    report = json.loads(out)
    assert code == 0 and report["clean"] and report["objects"] == 3, out + err
    code, out, err = cli(capsys, "fsck", "--read-data")
    assert code == 0 and "3 vault objects (read and hashed)" in out and "clean" in out, err
    # A vault that does take time (an hour here), two days on, when those restored copies have
    # expired: the thaws are asked for and reported pending, exit 7.
    later = datetime.now(UTC) + timedelta(days=2)
    slow = LocalVault(local_sweep, "GLACIER", restore_delay=timedelta(hours=1), clock=lambda: later)
    catalog = open_catalog(f"sqlite:///{env / 'catalog.db'}")
    try:
        report = run_fsck(catalog, slow, read_data=True)
    finally:
        catalog.close()
    assert report.pending_only and {f.kind for f in report.findings} == {"thawing"}
    assert len(report.findings) == 3


def test_plain_fsck_reports_a_single_original_changed_in_place(
    env: Path, local_sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 4: two bytes flipped in place in a single original, its sidecar (the archiver's
    metadata, with the SHA-256) kept: plain fsck reports it, --read-data calls it corrupt."""
    assets = catalog_assets(env)
    single = next(o for k in sorted(MEMORIZED) if (o := assets[k].vault_object) and not o.is_pack)
    assert cli(capsys, "fsck")[0] == 0
    path = local_sweep / single.key
    with open(path, "r+b") as stored:
        stored.seek(100)
        two = stored.read(2)
        stored.seek(100)
        stored.write(bytes(b ^ 0xFF for b in two))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # a write a tick later
    code, out, err = cli(capsys, "fsck")
    assert code == ExitCode.INTEGRITY and f"unverified\t{single.key}" in out, out + err
    assert "fsck --read-data" in out
    code, out, _ = cli(capsys, "fsck", "--read-data", "--json")
    report = json.loads(out)
    assert code == ExitCode.INTEGRITY and report["problems"] == {"corrupt": 1}
    assert report["findings"][0]["where"] == single.key


KILL_BEFORE_SIDECAR = """
import os, signal, sys
from archiver.storage import open_vault
real = os.replace
def replace(src, dst):
    if "/.archiver-meta/" in str(dst):  # the data file is in place; its sidecar is not yet
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
open_vault(sys.argv[1], "GLACIER").put("profiles/encoding/" + "ab" * 32, b"{}", storage_class="STANDARD")
"""


def test_fsck_lists_what_a_killed_write_left_and_says_what_to_do(
    env: Path, local_sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 5: a write SIGKILLed between writing a profile's sidecar and renaming it leaves a
    temporary file under .archiver-meta/profiles/encoding/; fsck lists it and the command that
    removes it, and calls nothing damaged."""
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_SIDECAR, str(local_sweep)], check=False)
    assert killed.returncode == -9
    (left,) = (local_sweep / ".archiver-meta" / "profiles" / "encoding").glob(".archiver-tmp-*")
    code, out, err = cli(capsys, "fsck")
    assert code == 0, out + err
    assert f"leftover\t{left}" in out and f"rm {left}" in err and "nothing is damaged" in err
    code, out, _ = cli(capsys, "fsck", "--json")
    report = json.loads(out)
    assert report["clean"] and [item["where"] for item in report["leftovers"]] == [str(left)]
    left.unlink()
    code, out, _ = cli(capsys, "fsck", "--json")
    assert code == 0 and json.loads(out)["leftovers"] == []


def test_a_stale_catalog_size_reads_by_the_manifest_and_damage_still_fails() -> None:
    """A catalog from before schema 0006 may hold a render's size for a pack member (the upgrade
    cannot know the original's): the pack's manifest gives it, the SHA-256 still decides."""
    from dataclasses import replace

    from archiver.errors import IntegrityError
    from archiver.storage.vault_format import build_pack, read_catalogued_member, read_member

    files = {"shoes/a.png": b"a" * 3000, "shoes/b.png": b"b" * 1234}
    pack, members = build_pack(list(files.items()))
    member = members[0]
    stale = replace(member, size=member.size + 77)
    with pytest.raises(IntegrityError, match="claims"):
        read_member(pack, stale)
    assert read_catalogued_member(pack, stale) == files[member.key]
    with pytest.raises(IntegrityError):  # another SHA-256: no manifest entry vouches for it
        read_catalogued_member(pack, replace(stale, sha256="00" * 32))
    damaged = bytearray(pack)
    damaged[member.offset + member.length // 2] ^= 0xFF
    with pytest.raises(IntegrityError, match="damaged"):
        read_catalogued_member(bytes(damaged), stale)
