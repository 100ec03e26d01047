"""Homes for the command-line tests: running `archiver` in process, and swept catalogues.

`env`, `source`, `swept_url` and `memorized_home` are fixtures (conftest registers this module as a
plugin): `env` is a clean home with a short seed search (the gate judges with its real, pretrained
LPIPS trunk); `source` is a hot directory holding the `memorized` catalogue (support/models.py);
`swept_url` a catalog (SQLite, and PostgreSQL) holding a real sweep of it, made for the test;
`memorized_home` one sweep of it made once per session (`SweptHome`), for the tests that only need
an archive to read, mount, serve or restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archiver.catalog.database import open_catalog
from archiver.catalog.models import Asset, AssetState
from archiver.cli import main
from archiver.storage import open_vault
from archiver.storage.vault_format import PackMember, read_member
from support.processes import SHORT_SEARCH

# The images of the `memorized` catalogue that its model regenerates exactly.
MEMORIZED = {"shoes/tiny-red.png", "shoes/tiny-blue.jpg", "shoes/tiny-green.png", "shoes/tiny-pink.jpg"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `archiver ARGV` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(archiver_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in SHORT_SEARCH.items():
        monkeypatch.setenv(name, value)
    return archiver_env


@pytest.fixture
def source(tmp_path: Path, memorized: dict[str, object]) -> Path:
    root = tmp_path / "hot"
    write_files(memorized["files"])(root)  # type: ignore[arg-type]
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


@dataclass(frozen=True)
class SweptHome:
    """A sweep made once, at `root/live`, and kept as it left it in `root/pristine`.

    The catalog names its source and vault by absolute path, so a test that writes (a restore puts
    files back into the source, a test damages a vault copy) first calls `reset()`, which puts
    `live` back as the sweep left it, rather than working on a copy somewhere else. A test that
    reads the archive through a home's settings only (a mount, the origin) may `copy_home()`.
    """

    root: Path
    model: Path  # the registered model's files: a test that breaks them must mend them
    summary: dict[str, Any]  # what `archiver sweep --json` printed
    assets: dict[str, Asset]  # as the sweep left them

    @property
    def home(self) -> Path:
        return self.root / "live" / "home"

    @property
    def hot(self) -> Path:
        return self.root / "live" / "hot"

    def reset(self) -> SweptHome:
        shutil.rmtree(self.root / "live")
        shutil.copytree(self.root / "pristine", self.root / "live")
        return self

    def copy_home(self, home: Path) -> Path:
        """A copy of the swept home (catalog and vault) at `home`, with an empty cache."""
        shutil.copytree(self.root / "pristine" / "home", home, ignore=shutil.ignore_patterns("cache"))
        return home


@contextlib.contextmanager
def only_settings(home: Path, settings: dict[str, str]) -> Iterator[None]:
    """For this block, ARCHIVER_* is `settings` alone, at `home`, on the CPU, with no config file."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in [n for n in os.environ if n.startswith("ARCHIVER_")]:
            patch.delenv(variable)
        own = {
            "ARCHIVER_HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "no-config"),
            "ARCHIVER_DEVICE": "cpu",
        }
        for variable, value in (settings | own).items():
            patch.setenv(variable, value)
        yield


def sweep_once(
    root: Path, fill: Callable[[Path], object], model: Path, name: str, settings: dict[str, str]
) -> SweptHome:
    """`fill(hot)`, then `archiver model add MODEL --name NAME` and `archiver sweep HOT --model NAME`
    in this process with `only_settings(settings)`; kept as a `SweptHome`."""
    live = root / "live"
    fill(live / "hot")
    out = io.StringIO()
    with only_settings(live / "home", settings), contextlib.redirect_stdout(out):
        assert main(["model", "add", str(model), "--name", name]) == 0
        out.truncate(0)
        out.seek(0)
        assert main(["sweep", str(live / "hot"), "--model", name, "--json"]) == 0
    shutil.copytree(live, root / "pristine")
    return SweptHome(root, model, json.loads(out.getvalue()), catalog_assets(live / "home"))


def write_files(files: dict[str, bytes]) -> Callable[[Path], None]:
    def fill(root: Path) -> None:
        for key, data in files.items():
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

    return fill


@pytest.fixture(scope="session")
def memorized_home(tmp_path_factory: pytest.TempPathFactory, memorized: dict[str, object]) -> SweptHome:
    """The whole `memorized` catalogue swept once per session with a short seed search, with a copy of
    its model of its own: MEMORIZED archived, the distractor and the uncaptioned image rejected."""
    root = tmp_path_factory.mktemp("memorized-home")
    model = root / "model"
    shutil.copytree(memorized["model"], model)  # type: ignore[arg-type]
    swept = sweep_once(root, write_files(memorized["files"]), model, "tiny", SHORT_SEARCH)  # type: ignore[arg-type]
    archived = {key for key, asset in swept.assets.items() if asset.state == AssetState.ARCHIVED}
    assert archived == MEMORIZED and len(swept.assets) == len(memorized["files"])  # type: ignore[arg-type]
    assert not any((swept.hot / key).exists() for key in MEMORIZED)
    return swept


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
