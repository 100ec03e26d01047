"""Helpers shared by the command-line tests: running `archiver` in process, and a swept catalogue.

`env`, `source` and `swept_url` are fixtures (conftest registers this module as a plugin): `env` is
a clean home with a short seed search (the gate judges with its real, pretrained LPIPS trunk);
`source` is a hot directory holding the `memorized` catalogue (see conftest.py); `swept_url` a
catalog (SQLite, and PostgreSQL) holding a real sweep of it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from archiver.catalog.database import open_catalog
from archiver.catalog.models import Asset, AssetState
from archiver.cli import main
from archiver.storage import open_vault
from archiver.storage.vault_format import PackMember, read_member

# The images of the `memorized` catalogue that its model regenerates exactly.
MEMORIZED = {"shoes/tiny-red.png", "shoes/tiny-blue.jpg", "shoes/tiny-green.png", "shoes/tiny-pink.jpg"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `archiver ARGV` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(archiver_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ARCHIVER_SEED_SEARCH_MAX", "2")
    monkeypatch.setenv("ARCHIVER_SEED_SEARCH_BATCH", "1")
    # Banks by count and at the end only: banking every 30 s would cut a sweep into as many packs
    # as a loaded machine takes half-minutes (the tests that bank mid-sweep set a count).
    monkeypatch.setenv("ARCHIVER_SWEEP_BANK_SECONDS", "86400")
    return archiver_env


@pytest.fixture
def source(tmp_path: Path, memorized: dict[str, object]) -> Path:
    root = tmp_path / "hot"
    for key, data in memorized["files"].items():  # type: ignore[union-attr]
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return root


def register(capsys: pytest.CaptureFixture[str], memorized: dict[str, object]) -> None:
    code, _, err = cli(capsys, "model", "add", str(memorized["model"]), "--name", "tiny")
    assert code == 0, err


def sweep_memorized(capsys: pytest.CaptureFixture[str], memorized: dict[str, object], source: Path) -> None:
    """Register the `memorized` model as "tiny" and sweep `source` with it: all of MEMORIZED archived."""
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["archived"] == len(MEMORIZED), err


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def swept_url(
    request: pytest.FixtureRequest,
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A catalog (SQLite, and PostgreSQL) holding a real sweep of the `memorized` catalogue."""
    url = f"sqlite:///{env / 'catalog.db'}"
    if request.param == "postgresql":
        url = str(request.getfixturevalue("pg_database"))
        monkeypatch.setenv("ARCHIVER_DATABASE_URL", url)
    sweep_memorized(capsys, memorized, source)
    return url


def catalog_assets(home: Path) -> dict[str, Asset]:
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        assets = {a.key: a for a in session.query(Asset).all()}
        for a in assets.values():
            _ = a.vault_object, a.record, a.source  # load before the session closes
    catalog.close()
    return assets


def vault_bytes(home: Path, asset: Asset) -> bytes:
    """The original as the vault holds it, read the way a restore would (restore, then get)."""
    obj = asset.vault_object
    assert obj is not None and obj.confirmed_at is not None
    vault = open_vault(str(home / "vault"), "GLACIER")
    vault.request_restore(obj.key, "Standard", 1)
    data = vault.get(obj.key)
    if not obj.is_pack:
        return data
    member = PackMember(
        asset.key, asset.sha256 or "", asset.size, asset.vault_offset or 0, asset.vault_length or 0
    )
    return read_member(data, member)


def assert_nothing_lost(home: Path, hot: Path, files: dict[str, bytes]) -> dict[str, Asset]:
    """Every original is readable, byte for byte, from where the catalog says it is.

    Before `vaulted` the hot copy is the only copy and must be intact. From `vaulted` on the vault
    copy is confirmed and must hold the original; the hot copy may be gone (a crash between the
    delete and its commit), but if it is there it is still the original.
    """
    assets = catalog_assets(home)
    for key, original in files.items():
        asset = assets.get(key)
        in_vault = asset is not None and asset.state in (AssetState.VAULTED, AssetState.ARCHIVED)
        if in_vault:
            assert asset is not None
            assert vault_bytes(home, asset) == original, f"{key}: {asset.state} but the vault copy differs"
            assert hashlib.sha256(original).hexdigest() == asset.sha256
        if not in_vault or (hot / key).exists():
            assert (hot / key).read_bytes() == original, f"{key}: hot copy lost while {asset and asset.state}"
    return assets


def assert_nothing_lost_without_the_catalog(home: Path, hot: Path, files: dict[str, bytes], db: Path) -> None:
    """The catalog is lost: a catalog rebuilt from the vault alone (`archiver.rebuild`) still finds
    every original, hot (intact) or in the vault where the rebuilt catalog says it is."""
    from archiver.rebuild import rebuild
    from archiver.storage import open_hot_store

    catalog = open_catalog(f"sqlite:///{db}")
    rebuild(catalog, open_vault(str(home / "vault"), "GLACIER"), open_hot_store)
    with catalog.begin() as session:
        assets = {a.key: a for a in session.query(Asset).all()}
        for asset in assets.values():
            _ = asset.vault_object
    catalog.close()
    for key, original in files.items():
        if (hot / key).exists():
            assert (hot / key).read_bytes() == original, key
            continue
        asset = assets.get(key)
        assert asset is not None and asset.state == AssetState.ARCHIVED, f"{key} lost with the catalog"
        assert vault_bytes(home, asset) == original
