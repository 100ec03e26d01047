"""Lose the catalog, lose nothing: the vault describes itself, `db rebuild --from-vault`, `fsck`.

Real parts throughout: the `memorized` catalogue swept for real (the real gate) into moto's S3
server or the local vault, SQLite and PostgreSQL catalogs, the CLI in process, a real mount.
The kill-at-every-boundary test in test_sweep.py also rebuilds a catalog from the vault after
each kill and checks that every original is hot or restorable through it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from support import MEMORIZED, catalog_assets, cli
from support.mounts import read_through_a_mount

from archiver.catalog.models import AssetState
from archiver.errors import ExitCode
from archiver.storage import open_vault
from archiver.storage.vault_format import original_key, read_object_metadata

SHOWN = ("state", "original", "record", "vault", "gate_report", "model")


def sweep_singles_and_packs(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    memorized: dict[str, object],
    tmp_path: Path,
    source: Path,
    *vault: str,
) -> Path:
    """Register a copy of the model, sweep `source` with the two largest originals as single vault
    objects and the two smallest in a pack; returns the model's directory."""
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    sizes = sorted(len(files[key]) for key in MEMORIZED)
    monkeypatch.setenv("ARCHIVER_PACK_THRESHOLD", str(sizes[2]))
    model = tmp_path / "models" / "tiny"
    shutil.copytree(memorized["model"], model)  # type: ignore[arg-type]
    code, _, err = cli(capsys, *vault, "model", "add", str(model), "--name", "tiny")
    assert code == 0, err
    code, out, err = cli(capsys, *vault, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["archived"] == len(MEMORIZED) and summary["vault_objects"] == 3, (sizes, summary)
    return model


def shown(capsys: pytest.CaptureFixture[str], *vault: str) -> dict[str, dict[str, Any]]:
    found = {}
    for key in sorted(MEMORIZED):
        code, out, err = cli(capsys, *vault, "show", key, "--json")
        assert code == 0, err
        doc = json.loads(out)
        found[key] = {name: doc.get(name) for name in SHOWN}
    return found


def drop_catalog(url: str) -> None:
    """The catalog is lost: the SQLite file is gone, the PostgreSQL database emptied."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{env / 'catalog.db'}"
    url = str(request.getfixturevalue("pg_database"))
    monkeypatch.setenv("ARCHIVER_DATABASE_URL", url)
    return url


@pytest.mark.s3
def test_lose_the_catalog_rebuild_it_from_an_s3_vault(
    catalog: str,
    env: Path,
    source: Path,
    tmp_path: Path,
    memorized: dict[str, object],
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cold = f"cold-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=cold)
    vault = ("--vault", f"s3://{cold}/vault")
    model = sweep_singles_and_packs(capsys, monkeypatch, memorized, tmp_path, source, *vault)
    before = shown(capsys, *vault)

    # Every vault object names what it holds.
    listed = {o["Key"]: o for o in s3_client.list_objects_v2(Bucket=cold)["Contents"]}
    singles = {k: a for k, a in before.items() if not a["vault"]["pack"]}
    assert len(singles) == 2
    for key, asset in singles.items():
        sha256 = asset["original"]["sha256"]
        head = s3_client.head_object(Bucket=cold, Key=f"vault/{original_key(sha256)}")
        assert head["StorageClass"] == "GLACIER"
        assert read_object_metadata(head["Metadata"]) == (str(source.resolve().as_uri()), key, sha256)
    journal = [k for k in listed if k.startswith("vault/journal/")]
    assert journal and all(listed[k].get("StorageClass", "STANDARD") == "STANDARD" for k in journal)
    assert sum(k.startswith("vault/models/") for k in listed) == 1
    kinds = sorted(k.split("/")[2] for k in listed if k.startswith("vault/profiles/"))
    assert kinds == ["encoding", "encoding", "gate", "render"]  # PNG and JPEG

    # Lose the catalog and the model's files; the vault alone brings both back.
    drop_catalog(catalog)
    shutil.rmtree(model)
    code, out, err = cli(capsys, *vault, "db", "rebuild", "--from-vault", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["states"] == {"archived": 4} and report["created"] == 4
    (model_sha,) = report["models"]
    code, out, err = cli(capsys, *vault, "model", "fetch", model_sha, str(tmp_path / "fetched"))
    assert code == 0 and "'tiny'" in out, err
    assert shown(capsys, *vault) == before  # records, gate reports, originals, vault locations, models

    # Twice: the same catalog.
    code, out, err = cli(capsys, *vault, "db", "rebuild", "--from-vault", "--json")
    again = json.loads(out)
    assert code == 0 and (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4), err
    assert shown(capsys, *vault) == before

    code, out, err = cli(capsys, *vault, "fsck", "--json")
    assert code == 0 and json.loads(out)["clean"] and json.loads(out)["objects"] == 3, out + err
    # Reading the data thaws the Glacier objects first; moto finishes a restore at once, so they
    # are read in the same run (issue 28, item 2).
    code, out, err = cli(capsys, *vault, "fsck", "--read-data", "--json")
    assert code == 0 and json.loads(out)["clean"], out + err

    if catalog.startswith("sqlite"):
        _mount_and_read_back(env, before)


def _mount_and_read_back(home: Path, before: dict[str, dict[str, Any]]) -> None:
    read = read_through_a_mount(home, MEMORIZED)  # None without FUSE
    for key, data in (read or {}).items():
        assert hashlib.sha256(data).hexdigest() == before[key]["record"]["rendered_sha256"], key


def test_fsck_finds_missing_corrupt_orphaned_and_unrebuilt_and_a_rebuild_merges(
    env: Path,
    source: Path,
    tmp_path: Path,
    memorized: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A local vault (GLACIER_IR: reads without a thaw). An old backup of the catalog catches up by a
    merge; a restore's tombstone survives the catalog's loss; fsck names each kind of damage."""
    monkeypatch.setenv("ARCHIVER_VAULT_STORAGE_CLASS", "GLACIER_IR")
    backup = tmp_path / "old.db"
    code, out, err = cli(capsys, "db", "backup", str(backup))
    assert code == 0 and backup.exists(), err  # an empty catalog, before the sweep
    sweep_singles_and_packs(capsys, monkeypatch, memorized, tmp_path, source)
    before = shown(capsys)
    code, out, _ = cli(capsys, "fsck", "--read-data", "--json")
    assert code == 0 and json.loads(out)["clean"], out

    # A catalog restored from the backup taken before the sweep: fsck sees what the journal holds
    # and the catalog lacks; the rebuild merges it in.
    shutil.copy(backup, env / "catalog.db")
    code, out, _ = cli(capsys, "fsck", "--json")
    assert code == ExitCode.INTEGRITY and json.loads(out)["problems"] == {"not-in-catalog": 4}
    code, out, err = cli(capsys, "db", "rebuild", "--from-vault", "--json")
    assert code == 0 and json.loads(out)["states"] == {"archived": 4}, err
    assert shown(capsys) == before
    assert cli(capsys, "fsck")[0] == 0

    # A restore is journaled: after the catalog's loss the asset is restored, not archived.
    code, out, err = cli(capsys, "restore", "shoes/tiny-red.png", "--json")
    assert code == 0 and json.loads(out)["jobs"][0]["state"] == "done", err
    drop_catalog(f"sqlite:///{env / 'catalog.db'}")
    code, out, err = cli(capsys, "db", "rebuild", "--from-vault", "--json")
    assert code == 0 and json.loads(out)["states"] == {"archived": 3, "restored": 1}, err
    states = {key: asset.state for key, asset in catalog_assets(env).items()}
    assert states["shoes/tiny-red.png"] == AssetState.RESTORED

    # Damage: one single deleted, one overwritten (its sidecar still says the old SHA-256, but no
    # longer vouches for the file, so a plain fsck reports it unverified and reading the data
    # calls it corrupt: issue 28, item 4), and an original nobody names.
    vault = open_vault(str(env / "vault"), "GLACIER_IR")
    singles = sorted(original_key(a["original"]["sha256"]) for a in before.values() if not a["vault"]["pack"])
    vault.delete(singles[0])
    (env / "vault" / singles[1]).write_bytes(b"not the original")
    stray = b"nobody's original"
    vault.put(original_key(hashlib.sha256(stray).hexdigest()), stray)
    code, out, _ = cli(capsys, "fsck", "--json")
    found = json.loads(out)
    assert code == ExitCode.INTEGRITY and found["problems"] == {"missing": 1, "orphan": 1, "unverified": 1}
    code, out, _ = cli(capsys, "fsck", "--read-data", "--json")
    found = json.loads(out)
    assert code == ExitCode.INTEGRITY and found["problems"] == {"corrupt": 1, "missing": 1, "orphan": 1}
    assert {f["where"] for f in found["findings"] if f["kind"] != "orphan"} == set(singles)
    code, out, err = cli(capsys, "fsck")
    assert code == ExitCode.INTEGRITY and "missing\t" in out and "orphan\t" in out and "problem" in err


def test_db_backup_refuses_what_it_cannot_do(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "status")[0] == 0
    (tmp_path / "taken").write_text("")
    code, _, err = cli(capsys, "db", "backup", str(tmp_path / "taken"))
    assert code == ExitCode.CONFIG and "exists" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "--database-url", "postgresql://nobody@127.0.0.1:1/x", "db", "backup", "f")
    assert code == ExitCode.CONFIG and "pg_dump" in err
    code, _, err = cli(capsys, "db", "rebuild")
    assert code == ExitCode.USAGE and "--from-vault" in err
    # A mistyped vault path is an error, not a new empty vault and an empty catalog (issue 28, item 6).
    typo = tmp_path / "vualt"
    code, _, err = cli(capsys, "db", "rebuild", "--from-vault", str(typo))
    assert code == ExitCode.NOT_FOUND and f"no vault at {typo}" in err and err.count("\n") == 1
    assert not typo.exists()
    code, _, err = cli(capsys, "model", "fetch", "0" * 64, str(tmp_path / "m"))
    assert code == ExitCode.NOT_FOUND and "no model" in err
