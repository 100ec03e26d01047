"""Shared fixtures. Real parts: moto's S3 server on 127.0.0.1 (tests/s3_server.py) and a throwaway
PostgreSQL cluster (tests/pg_server.py); both are session-scoped and started only when a test asks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pg_server import pg_database, postgres_url  # noqa: F401  (fixtures)

pytest_plugins = ["s3_server"]  # moto_server, s3_client, bucket, moto_restores


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database URL: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def archiver_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment for CLI tests: its own home, no config file, no ARCHIVER_* leaking in."""
    for name in list(os.environ):
        if name.startswith("ARCHIVER_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("ARCHIVER_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return home


TINY_PROMPT = "a rumba sneaker with red laces and a white sole, product photo"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny StableDiffusionPipeline saved with safetensors (renders noise, quickly)."""
    from archiver.engine.pipeline import TinySpec, build_tiny_pipeline

    path = tmp_path_factory.mktemp("model") / "tiny"
    build_tiny_pipeline(TinySpec(vocabulary=[TINY_PROMPT]), seed=0).save_pretrained(
        path, safe_serialization=True
    )
    return path
