"""`archiver sweep` end to end on real parts: a local directory or moto's S3 server as the source,
the local vault or S3 Glacier as the archive, SQLite as the catalog, the real gate.

The catalogue is one the test model regenerates exactly (see the `memorized` fixture), plus a
distractor the model cannot draw and an image it has no caption for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from support import (
    MEMORIZED,
    assert_nothing_lost,
    assert_nothing_lost_without_the_catalog,
    catalog_assets,
    cli,
    register,
)

from archiver.catalog.database import open_catalog
from archiver.catalog.models import AssetState, Event
from archiver.engine.a1111 import parse_parameters
from archiver.errors import ExitCode
from archiver.sweep.run import BOUNDARIES, KILL_AT_ENV


def test_sweep_archives_what_the_model_regenerates_and_keeps_the_rest(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["archived"] == 4 and summary["scanned"] == 6
    assert summary["rejected"].pop("no-caption") == 1
    assert list(summary["rejected"].values()) == [1] and next(iter(summary["rejected"])).startswith("gate-")
    assert summary["vault_objects"] == 1  # four small originals, one pack
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    assert summary["bytes_freed"] == sum(len(files[k]) for k in MEMORIZED)
    assets = assert_nothing_lost(env, source, files)
    assert {k for k, a in assets.items() if a.state == AssetState.ARCHIVED} == MEMORIZED
    assert not any((source / k).exists() for k in MEMORIZED)
    distractor = assets["shoes/distractor.png"]
    assert (source / "shoes/distractor.png").exists() and "gate-psnr" in (distractor.reason_detail or "")
    assert assets["shoes/uncaptioned.jpg"].reason == "no-caption"
    # status and show agree with the buckets
    code, out, _ = cli(capsys, "status", "--json")
    status = json.loads(out)
    assert status["states"]["archived"]["assets"] == 4 and status["states"]["rejected"]["assets"] == 2
    code, out, _ = cli(capsys, "show", "shoes/tiny-red.png", "--json")
    shown = json.loads(out)
    assert shown["state"] == "archived" and shown["record"]["seed"] == 0 and shown["vault"]["pack"] is True
    assert (
        shown["gate_report"]["passed"] is True
        and shown["original"]["sha256"] == assets["shoes/tiny-red.png"].sha256
    )
    assert [e["event"] for e in shown["history"]] == ["discovered", "verified", "vaulted", "archived"]
    # The A1111 infotext view of the same record.
    code, out, _ = cli(capsys, "show", "shoes/tiny-red.png", "--a1111")
    infotext = parse_parameters(out.rstrip("\n"))
    record = shown["record"]
    assert code == 0 and infotext.prompt == record["prompt"] and infotext.seed == record["seed"]
    assert (infotext.steps, infotext.width, infotext.height) == (record["steps"], 64, 64)
    assert infotext.model_hash == record["model_sha256"][:10] and infotext.extra["Archiver model"] == "tiny"
    code, _, err = cli(capsys, "show", "shoes/distractor.png", "--a1111")
    assert code == ExitCode.NOT_FOUND and "has no record" in err


def test_rerunning_a_finished_sweep_changes_nothing(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    assert cli(capsys, "sweep", str(source), "--model", "tiny", "--json")[0] == 0
    before = sorted(p.name for p in (env / "vault").rglob("*"))
    code, out, _ = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["archived"] == 0 and summary["verified"] == 0 and summary["rejected"] == {}
    assert sorted(p.name for p in (env / "vault").rglob("*")) == before


def test_big_originals_are_single_objects(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ARCHIVER_PACK_THRESHOLD", "0")
    register(capsys, memorized)
    code, out, _ = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["vault_objects"] == 4
    assets = assert_nothing_lost(env, source, memorized["files"])  # type: ignore[arg-type]
    assert all(not assets[k].vault_object.is_pack for k in MEMORIZED)  # type: ignore[union-attr]


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unknown_model_stops_the_sweep_before_it_writes_anything(
    env: Path, source: Path, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    code, _, err = cli(capsys, "sweep", str(source), "--model", "nope", *(["--dry-run"] if dry_run else []))
    assert (
        code == ExitCode.NOT_FOUND and "no model named 'nope'" in err and len(err.strip().splitlines()) == 1
    )
    assert catalog_assets(env) == {}  # no source, no candidate
    with open_catalog(f"sqlite:///{env / 'catalog.db'}").begin() as session:
        assert session.query(Event).count() == 0


def test_dry_run_changes_nothing(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    code, out, _ = cli(
        capsys, "sweep", str(source), "--model", "tiny", "--dry-run", "--json", "--exclude", "*.jpg"
    )
    assert code == 0
    report = json.loads(out)
    assert sorted(c["key"] for c in report["candidates"]) == [
        "shoes/distractor.png",
        "shoes/tiny-green.png",
        "shoes/tiny-red.png",
    ]
    assert {row["vault_class"] for row in report["estimate"]} == {"GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}
    # The net saving in the configured class: the model's bytes all borne by these three (no records
    # yet), one CDN miss per image a month (cost_misses_per_image), the assumed render time (no check).
    net = report["net"]
    model_bytes = sum(p.stat().st_size for p in Path(str(memorized["model"])).rglob("*") if p.is_file())
    assert net["images"] == 3 and net["model_share"] == 1.0 and net["model_bytes"] == model_bytes
    assert net["renders_monthly"] == 3 and net["render_source"].startswith("assumed")
    assert net["net_monthly"] == pytest.approx(
        net["storage_saved_monthly"]
        + net["egress_avoided_monthly"]
        - net["model_storage_monthly"]
        - net["render_compute_monthly"]
        - net["requests_monthly"]
    )
    code, out, _ = cli(capsys, "sweep", str(source), "--model", "tiny", "--dry-run", "--exclude", "*.jpg")
    assert code == 0 and "net saving / month" in out and "break-even render time" in out
    assert ("loses $" if net["loses_money"] else "saves $") in out
    assert catalog_assets(env) == {} and not (env / "vault").exists()
    assert all((source / k).exists() for k in memorized["files"])  # type: ignore[union-attr]


def test_filters_leave_young_and_excluded_objects_alone(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    old = 1_500_000_000  # 2017
    os.utime(source / "shoes/tiny-red.png", (old, old))
    code, out, _ = cli(capsys, "sweep", str(source), "--model", "tiny", "--json", "--older-than", "365d")
    summary = json.loads(out)
    assert code == 0 and summary["archived"] == 1 and summary["skipped"] == {"too-recent": 5}
    assert not (source / "shoes/tiny-red.png").exists() and (source / "shoes/tiny-blue.jpg").exists()


def test_a_hot_object_changed_after_verification_is_not_deleted(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    run = sweep_process(env, source, kill_at="vaulted")
    assert run.returncode == -9
    vaulted = [k for k, a in catalog_assets(env).items() if a.state == AssetState.VAULTED]
    assert vaulted
    (source / vaulted[0]).write_bytes(b"someone uploaded a new version")
    code, out, _ = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["rejected"] == {"changed-after-verify": 1}
    assets = catalog_assets(env)
    assert assets[vaulted[0]].reason == "changed-after-verify"
    assert (source / vaulted[0]).read_bytes() == b"someone uploaded a new version"


def test_a_vault_that_cannot_exist_stops_the_sweep_first(
    env: Path, source: Path, memorized: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code, _, err = cli(capsys, "--vault", str(blocker / "vault"), "sweep", str(source), "--model", "tiny")
    assert code == ExitCode.STORAGE and "cannot create the vault directory" in err and err.count("\n") == 1
    assert catalog_assets(env) == {}
    assert_nothing_lost(env, source, memorized["files"])  # type: ignore[arg-type]


def test_a_failing_vault_upload_leaves_the_hot_copies_untouched(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    s3_client: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The vault bucket is missing: uploads fail after the gate; nothing hot is touched; a re-run
    once the bucket exists resumes from `verified`."""
    register(capsys, memorized)
    vault = "s3://archiver-vault-later/originals"
    code, _, err = cli(capsys, "--vault", vault, "sweep", str(source), "--model", "tiny")
    errors = [line for line in err.splitlines() if line.startswith("archiver: error:")]
    assert code == ExitCode.STORAGE and len(errors) == 1 and "archiver-vault-later" in errors[0], err
    assert all(line.startswith("archiver: ") for line in err.splitlines()), err  # progress, no traceback
    assets = assert_nothing_lost(env, source, memorized["files"])  # type: ignore[arg-type]
    assert {a.state for k, a in assets.items() if k in MEMORIZED} == {AssetState.VERIFIED}
    s3_client.create_bucket(Bucket="archiver-vault-later")  # type: ignore[attr-defined]
    code, out, _ = cli(capsys, "--vault", vault, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["archived"] == 4 and json.loads(out)["verified"] == 0
    assert not any((source / k).exists() for k in MEMORIZED)


def test_an_unreachable_catalog_stops_the_sweep_before_it_touches_anything(
    env: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    code, _, err = cli(
        capsys, "--database-url", "postgresql://u@127.0.0.1:9/db", "sweep", str(source), "--model", "tiny"
    )
    assert code == ExitCode.CATALOG and "cannot open the catalog" in err
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
    assert not (env / "vault").exists()


def sweep_process(
    home: Path, source: Path, kill_at: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVER_HOME": str(home), **settings}
    env.pop(KILL_AT_ENV, None)
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "archiver", "sweep", str(source), "--model", "tiny", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_sweep_stopped_halfway_has_archived_what_it_banked(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """Banks every 2 proofs; SIGKILLed right after its fifth proof is committed: the first four were
    vaulted, journaled and released before it (at least two of them pass: only two of the six images
    are refused), the fifth waits (verified) for the next run."""
    register(capsys, memorized)
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    run = sweep_process(env, source, kill_at="verified:5", ARCHIVER_SWEEP_BANK_EVERY="2")
    assert run.returncode == -9, run.stderr[-500:]
    assets = assert_nothing_lost(env, source, files)
    proved = {k: a.state for k, a in assets.items() if a.state != AssetState.CANDIDATE}
    assert len(proved) == 5, proved
    archived = {k for k, state in proved.items() if state == AssetState.ARCHIVED}
    assert len(archived) >= 2 and archived <= MEMORIZED, proved
    assert all(not (source / key).exists() for key in archived)
    # Only the proof after the last bank is left to finish: verified, or rejected (nothing to bank).
    assert [s for s in proved.values() if s == AssetState.VERIFIED] in ([], [AssetState.VERIFIED])
    final = sweep_process(env, source)
    assert final.returncode == 0, final.stderr[-500:]
    assets = assert_nothing_lost(env, source, files)
    assert {k for k, a in assets.items() if a.state == AssetState.ARCHIVED} == MEMORIZED


@pytest.mark.slow
def test_killed_at_random_moments_then_resumed_loses_nothing(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL at random moments, not only at the named boundaries, with a bank after every proof so
    that proving, vaulting, journaling and deleting interleave; each run resumes the last one's."""
    import random
    import time

    register(capsys, memorized)
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    settings = {**os.environ, "ARCHIVER_HOME": str(env), "ARCHIVER_SWEEP_BANK_EVERY": "1"}
    settings.pop(KILL_AT_ENV, None)
    argv = [sys.executable, "-m", "archiver", "sweep", str(source), "--model", "tiny", "--json"]
    # How long a whole run takes here (a twin home and source), so kills land inside the work.
    twin_home, twin_source = env.parent / "twin-home", env.parent / "twin-hot"
    shutil.copytree(source, twin_source)
    subprocess.run(
        [*argv[:3], "model", "add", str(memorized["model"]), "--name", "tiny"],
        env={**settings, "ARCHIVER_HOME": str(twin_home)},
        check=True,
        capture_output=True,
    )
    started = time.monotonic()
    twin = subprocess.run(
        [*argv[:4], str(twin_source), *argv[5:]],
        env={**settings, "ARCHIVER_HOME": str(twin_home)},
        capture_output=True,
        text=True,
    )
    whole = time.monotonic() - started
    assert twin.returncode == 0, twin.stderr[-500:]
    draw = random.Random(25)
    killed = 0
    for round_ in range(4):
        process = subprocess.Popen(argv, env=settings, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=draw.uniform(0.4, 1.0) * whole)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed += 1
        assert process.returncode in (0, -9), f"round {round_}: {process.stderr.read()[-500:]!r}"  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
        assert_nothing_lost(env, source, files)
        assert_nothing_lost_without_the_catalog(env, source, files, env.parent / f"rebuilt-{round_}.db")
    assert killed >= 2, f"only {killed} of 4 runs were killed before they finished"
    final = subprocess.run(argv, env=settings, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-500:]
    assets = assert_nothing_lost(env, source, files)
    assert {k for k, a in assets.items() if a.state == AssetState.ARCHIVED} == MEMORIZED
    assert all(a.claimed_by is None for a in assets.values())


@pytest.mark.slow
def test_killed_at_every_boundary_then_resumed_loses_nothing(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """A real SIGKILL right after each state boundary in turn, each run resuming the last one's work."""
    register(capsys, memorized)
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    for name in BOUNDARIES:
        run = sweep_process(env, source, kill_at=name)
        assert run.returncode == -9, f"{name}: {run.stderr[-500:]}"
        assert_nothing_lost(env, source, files)
        assert_nothing_lost_without_the_catalog(env, source, files, env.parent / f"rebuilt-{name}.db")
    final = sweep_process(env, source)
    assert final.returncode == 0, final.stderr[-500:]
    assets = assert_nothing_lost(env, source, files)
    assert {k for k, a in assets.items() if a.state == AssetState.ARCHIVED} == MEMORIZED
    assert all(a.claimed_by is None for a in assets.values())


def test_every_key_the_scan_did_not_take_is_counted_and_named(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """A symlink, a non-NFC name, a name with a newline and a non-image: none is taken, none is silent."""
    register(capsys, memorized)
    (source / "shoes/link.png").symlink_to(source / "shoes/tiny-red.png")
    nfd = unicodedata.normalize("NFD", "shoes/café.png")
    (source / nfd).write_bytes(b"x")
    (source / "shoes/two\nlines.png").write_bytes(b"x")
    (source / "notes.txt").write_text("not an image")
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--dry-run", "--json")
    assert code == 0, err
    left = {(row["key"], row["reason"]) for row in json.loads(out)["skipped"]}
    expected = {
        ("shoes/link.png", "symlink"),
        (nfd, "unsafe-key"),
        ("shoes/two\nlines.png", "unsafe-key"),
        ("notes.txt", "not-an-image"),
    }
    assert left == expected
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["skipped"] == {"not-an-image": 1, "symlink": 1, "unsafe-key": 2}
    assert {(u["key"], u["reason"]) for u in summary["unlisted"]} == expected - {
        ("notes.txt", "not-an-image")
    }
    assert summary["scanned"] == len(memorized["files"]) + 4  # type: ignore[arg-type]
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny")  # the table names them too
    assert code == 0 and "not an object (symlink): 'shoes/link.png'" in err


@pytest.mark.slow
def test_a_claimed_candidate_deleted_by_hand_does_not_wedge_later_sweeps(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after claiming; one hot image deleted by hand; the next sweeps (one with --include for
    other keys) finish, the gone image is rejected as `vanished`, the rest are archived."""
    register(capsys, memorized)
    assert sweep_process(env, source, kill_at="claimed").returncode == -9
    (source / "shoes/tiny-green.png").unlink()
    code, out, err = cli(
        capsys, "sweep", str(source), "--model", "tiny", "--include", "shoes/tiny-red.png", "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rejected"]["vanished"] == 1 and summary["skipped"]["not-included"] >= 1
    assets = catalog_assets(env)
    assert assets["shoes/tiny-red.png"].state == AssetState.ARCHIVED
    assert assets["shoes/tiny-green.png"].state == AssetState.REJECTED
    assert assets["shoes/tiny-green.png"].reason == "vanished"
    assert assets["shoes/tiny-blue.jpg"].state == AssetState.CANDIDATE  # left for a run that includes it
    assert all(a.claimed_by is None for a in assets.values())
    code, _, err = cli(capsys, "sweep", str(source), "--model", "tiny")
    assert code == 0, err
    archived = {k for k, a in catalog_assets(env).items() if a.state == AssetState.ARCHIVED}
    assert archived == MEMORIZED - {"shoes/tiny-green.png"}


@pytest.mark.slow
@pytest.mark.parametrize(("killed_at", "state"), [("vault-uploaded", "rejected"), ("vaulted", "vaulted")])
def test_a_hot_object_that_turns_unreadable_mid_sweep_does_not_stop_the_next_one(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    killed_at: str,
    state: str,
) -> None:
    """Killed after a boundary, then the hot file is swapped for a symbolic link (not readable as an
    object): the next sweep finishes; before the vault step the asset is rejected, after it the asset
    stays vaulted (its vault copy is confirmed) with its hot copy kept and counted."""
    register(capsys, memorized)
    assert sweep_process(env, source, kill_at=killed_at).returncode == -9
    # vault-uploaded: the pack is in the vault but not committed, its members still "verified".
    waiting = "verified" if killed_at == "vault-uploaded" else killed_at
    key = next(k for k, a in sorted(catalog_assets(env).items()) if a.state.value == waiting)
    hot = source / key
    hot.rename(hot.with_name("moved-" + hot.name))
    hot.symlink_to(hot.with_name("moved-" + hot.name))
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0, err
    summary = json.loads(out)
    asset = catalog_assets(env)[key]
    assert asset.state.value == state and asset.claimed_by is None
    if state == "rejected":
        assert asset.reason == "changed-after-verify"
    else:
        assert summary["not_deleted"] == {"hot-copy-undeletable": 1}
    assert hot.is_symlink()  # nothing touched what the sweep could not read


@pytest.mark.slow
def test_two_sweeps_at_once_never_process_the_same_asset(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    base = {**os.environ, "ARCHIVER_HOME": str(env)}
    argv = [sys.executable, "-m", "archiver", "sweep", str(source), "--model", "tiny", "--json"]
    runs = [
        subprocess.Popen(argv, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-400:] for _, err in outputs]
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["archived"] for s in summaries) == 4
    assets = assert_nothing_lost(env, source, memorized["files"])  # type: ignore[arg-type]
    catalog = open_catalog(f"sqlite:///{env / 'catalog.db'}")
    with catalog.begin() as session:
        for key in MEMORIZED:
            kinds = [e.kind for e in session.query(Event).filter(Event.asset_id == assets[key].id)]
            assert kinds.count("verified") == 1 and kinds.count("archived") == 1, (key, kinds)
    catalog.close()


def test_sweep_an_s3_bucket_into_s3_glacier(
    env: Path, memorized: dict[str, object], s3_client: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """Source and vault on moto's server: a real HTTP S3 endpoint on 127.0.0.1."""
    import uuid

    hot, cold = f"hot-{uuid.uuid4().hex[:10]}", f"cold-{uuid.uuid4().hex[:10]}"
    client: Any = s3_client
    client.create_bucket(Bucket=hot)
    client.create_bucket(Bucket=cold)
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    for key, data in files.items():
        client.put_object(Bucket=hot, Key=f"catalogue/{key}", Body=data)
    client.put_object(Bucket=hot, Key="elsewhere/shoes/tiny-red.png", Body=files["shoes/tiny-red.png"])
    register(capsys, memorized)
    # The model was trained where these keys had no `catalogue/` (keys are full object keys).
    code, out, err = cli(
        capsys,
        "--vault",
        f"s3://{cold}/vault",
        "sweep",
        f"s3://{hot}/catalogue",
        "--model",
        "tiny",
        "--caption-strip-prefix",
        "catalogue",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["archived"] == 4
    left = sorted(o["Key"] for o in client.list_objects_v2(Bucket=hot)["Contents"])
    assert left == [
        "catalogue/shoes/distractor.png",
        "catalogue/shoes/uncaptioned.jpg",
        "elsewhere/shoes/tiny-red.png",
    ]  # outside the prefix: untouched
    vaulted = client.list_objects_v2(Bucket=cold)["Contents"]  # the pack, and the journal beside it
    (stored,) = [o for o in vaulted if o["Key"].startswith("vault/packs/")]
    assert stored["Key"].startswith("vault/packs/") and stored["StorageClass"] == "GLACIER"
    code, out, _ = cli(
        capsys, "--vault", f"s3://{cold}/vault", "show", "catalogue/shoes/tiny-blue.jpg", "--json"
    )
    shown = json.loads(out)
    assert (
        shown["vault"]["uri"] == f"s3://{cold}/{stored['Key']}"
        and shown["vault"]["storage_class"] == "GLACIER"
    )
    # The pack is in Glacier: a plain GET is refused until restored.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="InvalidObjectState"):
        client.get_object(Bucket=cold, Key=stored["Key"])
    code, out, _ = cli(capsys, "status", "--json")
    assert json.loads(out)["states"]["archived"] == {
        "assets": 4,
        "bytes": sum(len(files[k]) for k in MEMORIZED),
    }


def test_first_renders_batched_across_images_prove_what_one_at_a_time_proves(
    memorized: dict[str, object], tmp_path: Path
) -> None:
    """The sweep renders the trained schedule's first try of several images in one pipeline call
    (`GroupProver.prove_many`); a batch's bytes are never a record's, so the records are the ones
    proving each image alone makes: the same verdicts, steps, seeds and bytes."""
    from archiver.engine.registry import load_model, register_model
    from archiver.engine.rendering import enable_determinism
    from archiver.gate import Gate
    from archiver.prove import GroupProver, SearchLimits

    enable_determinism()
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.begin() as session:
        loaded = load_model(register_model(session, memorized["model"], "tiny"))  # type: ignore[arg-type]
    catalog.close()
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    limits, gate = SearchLimits(max_seeds=2, batch_size=1), Gate()
    alone = GroupProver.for_source(files, files.__getitem__, loaded, gate, limits)
    together = GroupProver.for_source(files, files.__getitem__, loaded, gate, limits)
    one = {key: alone.prove(key)[0] for key in sorted(files)}
    many = {proof.key: proof for proof, _ in together.prove_many(sorted(files), batch=3)}
    assert many.keys() == one.keys()
    for key, proof in one.items():
        other = many[key]
        assert (other.passed, other.reason) == (proof.passed, proof.reason), key
        if proof.passed:
            assert other.spec is not None and proof.spec is not None
            assert (other.spec.steps, other.spec.seed, other.data) == (
                proof.spec.steps,
                proof.spec.seed,
                proof.data,
            )
    assert {key for key, proof in many.items() if proof.passed} == MEMORIZED
