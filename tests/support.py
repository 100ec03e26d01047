"""Helpers shared by the command-line tests: running `archiver` in process, and a swept catalogue.

`env`, `source` and `swept_url` are fixtures (conftest registers this module as a plugin): `env` is
a clean home with a short seed search (the gate judges with its real, pretrained LPIPS trunk);
`source` is a hot directory holding the `memorized` catalogue (see conftest.py); `swept_url` a
catalog (SQLite, and PostgreSQL) holding a real sweep of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.catalog.database import open_catalog
from archiver.catalog.models import Asset
from archiver.cli import main

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
