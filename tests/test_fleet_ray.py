"""`archiver sweep --ray` and `archiver survey --ray` on a real local Ray (started once for this
module, on 127.0.0.1 only, 2 CPUs): the same assets archived as a single-process sweep of the same
source while an actor is killed in the middle of a batch, a driver killed with SIGKILL losing
nothing, the same hitlist as a local survey, and the refusals (no Ray installed, a SQLite catalog
with a remote cluster) as one line and exit code 3.

The catalogue is `memorized` (tests/support/models.py): four images the tiny model regenerates
exactly, a distractor it cannot draw, an uncaptioned image.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import MEMORIZED, assert_nothing_lost, catalog_assets, cli, register
from support.survey_source import build_source

from archiver.catalog.database import open_catalog
from archiver.catalog.models import AssetState, Event
from archiver.errors import ExitCode
from archiver.fleet.cluster import size_pool, start_local
from archiver.fleet.sweep import KILL_ACTOR_ENV
from archiver.storage.vault_format import read_manifest
from archiver.sweep.run import KILL_AT_ENV

RAY_ARGS = ("--ray-actors", "2", "--ray-batch", "2")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """One local Ray for the module: 2 CPUs, loopback only, no dashboard; its GCS address."""
    import ray

    start_local(num_cpus=2)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def states(home: Path) -> dict[str, tuple[object, ...]]:
    """What the catalog says of each key: state, reason, seed, rendered and original SHA-256."""
    return {
        key: (
            a.state,
            a.reason,
            a.record.seed if a.record else None,
            a.record.rendered_sha256 if a.record else None,
            a.sha256,
            a.claimed_by,
        )
        for key, a in catalog_assets(home).items()
    }


def vault_originals(home: Path) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """The originals and packs in the vault: kind and members (key, SHA-256, size) of each. (A pack's
    own name hashes its manifest, which names its source directory: another name for the twin.)"""
    vault = home / "vault"
    found = []
    for path in sorted(vault.rglob("*")):
        kind = path.relative_to(vault).parts[0]
        if not path.is_file() or kind not in ("originals", "packs"):
            continue
        if kind == "packs":
            members = [(m.key, m.sha256, m.size) for m in read_manifest(path.read_bytes())]
        else:
            members = [("", path.name, path.stat().st_size)]
        found.append((kind, sorted(members)))
    return sorted(found)


def verified_events(home: Path) -> dict[str, int]:
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        counts: dict[str, int] = {}
        for key, asset in catalog_assets(home).items():
            kinds = [e.kind for e in session.query(Event).filter(Event.asset_id == asset.id)]
            counts[key] = kinds.count("verified")
    catalog.close()
    return counts


def test_a_ray_sweep_with_an_actor_killed_mid_batch_archives_what_a_single_process_sweep_does(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ray_address: str,
) -> None:
    """The same source swept alone and with --ray (two actors, batches of two) into two homes; on
    Ray, one actor SIGKILLs itself after proving the first key of a batch (a test hook). Ray
    restarts it and proves that batch again; nothing of it had been committed, so nothing twice:
    the same summary, catalog, vault and hot copies as the single-process sweep."""
    twin = tmp_path / "twin"
    shutil.copytree(source, twin)
    home = tmp_path / "ray-home"
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0, err
    alone = json.loads(out)
    code, _, err = cli(capsys, "--home", str(home), "model", "add", str(memorized["model"]), "--name", "tiny")
    assert code == 0, err
    token = tmp_path / "kill-token"
    token.write_text("")
    monkeypatch.setenv(KILL_ACTOR_ENV, str(token))
    code, out, err = cli(
        capsys, "--home", str(home), "sweep", str(twin), "--model", "tiny", "--json", *RAY_ARGS, "--ray"
    )
    assert code == 0, err
    killed = Path(f"{token}.killed")
    assert not token.exists() and killed.exists(), "no actor was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(int(killed.read_text()), 0)
    fleet = json.loads(out)
    # The same summary, but for where and how long (banks follow the clock), and the renders spent:
    # each actor samples determinism from its own first record, and one process batches its first
    # tries (a batch winner is rendered alone again) where an actor renders each alone.
    for summary in (alone, fleet):
        summary.pop("seconds"), summary.pop("source"), summary.pop("banks")
        assert summary.pop("steps_rendered") > 0
    assert fleet == alone and fleet["archived"] == len(MEMORIZED)
    assert states(home) == states(env)
    assert {k for k, (state, *_) in states(home).items() if state == AssetState.ARCHIVED} == MEMORIZED
    assert all(count == 1 for key, count in verified_events(home).items() if key in MEMORIZED)
    assert vault_originals(home) == vault_originals(env)  # one pack of the same four originals
    assert sorted(p.name for p in twin.rglob("*")) == sorted(p.name for p in source.rglob("*"))
    assert_nothing_lost(home, twin, memorized["files"])  # type: ignore[arg-type]
    monkeypatch.delenv(KILL_ACTOR_ENV)
    code, out, err = cli(
        capsys, "--home", str(home), "sweep", str(twin), "--model", "tiny", "--json", "--ray"
    )
    assert code == 0 and json.loads(out)["verified"] == 0 and json.loads(out)["archived"] == 0, err


def test_a_driver_killed_with_sigkill_loses_nothing_and_the_next_run_finishes(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    ray_address: str,
) -> None:
    """`archiver sweep --ray=ADDRESS` in its own process, joined to the module's Ray, SIGKILLed as
    soon as its first proof is committed; a second sweep takes its claims over and finishes."""
    register(capsys, memorized)
    argv = [sys.executable, "-m", "archiver", "sweep", str(source), "--model", "tiny", "--json"]
    # The driver SIGKILLs itself right after its first committed proof (the crash tests' hook):
    # deterministic, where polling the catalog could land after the sweep was done.
    driver = subprocess.run(
        [*argv, "--ray-batch", "2", f"--ray={ray_address}"],
        env={**os.environ, "ARCHIVER_HOME": str(env), KILL_AT_ENV: "verified"},
        capture_output=True,
        timeout=600,
    )
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-800:]
    killed_with = catalog_assets(env)
    assert any(a.claimed_by for a in killed_with.values()), "killed before it claimed anything"
    assert {a.state for a in killed_with.values()} & {AssetState.CANDIDATE, AssetState.VERIFIED}, (
        "killed after the sweep was done"
    )
    assert_nothing_lost(env, source, memorized["files"])  # type: ignore[arg-type]
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json", "--ray")
    assert code == 0 and json.loads(out)["archived"] == len(MEMORIZED), err  # none before the kill
    assets = assert_nothing_lost(env, source, memorized["files"])  # type: ignore[arg-type]
    assert {k for k, a in assets.items() if a.state == AssetState.ARCHIVED} == MEMORIZED
    assert all(a.claimed_by is None for a in assets.values())
    assert all(count == 1 for key, count in verified_events(env).items() if key in MEMORIZED)


def test_a_ray_survey_finds_what_a_local_survey_finds(
    archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], ray_address: str
) -> None:
    """tests/support/survey_source.py's source (the rumba shoes among noise, shapes and bad input), described
    by two actors in batches of 64: the same hitlist, counts and bad input as a local survey."""
    source = tmp_path / "survey-source"
    build_source(source)
    reports = []
    for ray_args in ((), ("--ray-actors", "2", "--ray")):
        code, out, err = cli(capsys, "survey", str(source), "--json", *ray_args)
        assert code == 0, err
        report = json.loads(out)
        report.pop("seconds"), report.pop("images_per_second")
        reports.append(report)
    assert reports[0] == reports[1]
    assert reports[1]["hitlist"][0]["core"] == 48 and reports[1]["images"] == 82


def test_without_ray_installed_one_line_names_the_extra(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(capsys, memorized)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--ray")
    assert code == ExitCode.CONFIG and err.count("\n") == 1 and "pip install 'archiver[ray]'" in err
    assert out == "" and catalog_assets(env) == {}
    assert all((source / key).exists() for key in memorized["files"])  # type: ignore[union-attr]


def test_a_sqlite_catalog_with_a_remote_cluster_is_refused_in_one_line(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    code, _, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--ray=ray://10.9.8.7:10001")
    assert code == ExitCode.CONFIG and err.count("\n") == 1 and "PostgreSQL" in err and "10.9.8.7" in err
    assert catalog_assets(env) == {}


def test_actors_get_one_gpu_each_or_a_share_of_the_cpus_but_one() -> None:
    gpus = size_pool({"CPU": 32.0, "GPU": 4.0})
    assert (gpus.actors, gpus.num_gpus, gpus.num_cpus) == (4, 1.0, 1.0)
    small = size_pool({"CPU": 2.0}, actors=2)
    assert (small.actors, small.num_gpus, small.num_cpus, small.threads) == (2, 0.0, 0.5, 1)
    assert size_pool({"CPU": 2.0}).actors == 1 and size_pool({"CPU": 16.0}).num_cpus == 1.0
    assert "num_gpus" not in small.remote_args() and gpus.remote_args()["num_gpus"] == 1.0
