"""The review server for tests: over a home on a free loopback port, built as `archiver review`
builds it (`reviewing`), the sweep that holds the `memorized` catalogue for review, and the states
it leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from archiver.catalog.database import open_catalog
from archiver.catalog.models import AssetState
from archiver.http.review.app import create_app
from archiver.http.review.server import build
from archiver.settings import load_settings
from archiver.storage import open_hot_store, open_vault
from support.homes import MEMORIZED, catalog_assets, cli, register
from support.servers import serving_app


def sweep_for_review(capsys: pytest.CaptureFixture[str], memorized: dict[str, object], source: Path) -> None:
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--require-review", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["archived"] == 0 and summary["held"] == len(MEMORIZED), summary


@contextmanager
def reviewing(
    home: Path, reviewer: str = "ada", *, state: str | None = None, **options: str
) -> Iterator[str]:
    """The review server over `home` on a free loopback port, as `archiver review` builds it
    (`state`: the review state the page opens on, as `archiver review --state`)."""
    settings = load_settings(home=home, device="cpu")
    catalog = open_catalog(settings.catalog_url)
    vault = open_vault(settings.vault_url, settings.vault_storage_class)
    service = build(settings, catalog, vault, open_hot_store, reviewer=reviewer, **options)
    try:
        with serving_app(create_app(service, state=state), "the review server") as url:
            yield url
    finally:
        service.close()
        catalog.close()


def states(home: Path) -> dict[str, tuple[AssetState, str | None]]:
    return {key: (a.state, a.reason) for key, a in catalog_assets(home).items()}
