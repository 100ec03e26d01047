"""Shared fixtures. The rooms they come from are in tests/support/ (its __init__ lists them); real parts:
moto's S3 server on 127.0.0.1 (support/s3_server.py) and a throwaway PostgreSQL cluster
(support/pg_server.py), both session-scoped and started only when a test asks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("support")  # the helpers' asserts report like the tests' own
pytest_plugins = [
    "support.models",  # tiny_model_dir, memorized
    "support.s3_server",  # moto_server, s3_client, bucket, moto_restores
    "support.pg_server",  # postgres_url, pg_database
    "support.homes",  # env, source, swept_url, memorized_home
    "support.example",  # example_home
]


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
