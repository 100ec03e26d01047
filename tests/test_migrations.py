"""Alembic migrations: `upgrade head` on an empty SQLite file and an empty PostgreSQL database
gives exactly the schema the models describe; downgrade and upgrade again round-trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from archiver.catalog.database import connect, head_revision, schema_status, upgrade
from archiver.catalog.models import Base

REPO = Path(__file__).resolve().parents[1]


def schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    return list(diff)


def test_upgrade_head_matches_models(catalog_url: str) -> None:
    with connect(catalog_url) as conn:
        upgrade(conn)
    assert schema_diff(catalog_url) == []
    with connect(catalog_url) as conn:
        assert schema_status(conn).current == head_revision()


def test_downgrade_to_base_and_back(catalog_url: str) -> None:
    from alembic import command

    from archiver.catalog.database import alembic_config

    with connect(catalog_url) as conn:
        upgrade(conn)
        command.downgrade(alembic_config(conn), "base")
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        upgrade(conn)
    assert schema_diff(catalog_url) == []


def test_alembic_command_line_upgrades_empty_database(catalog_url: str) -> None:
    """The plain `alembic upgrade head` from the repository root works too (alembic.ini)."""
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={catalog_url}", "upgrade", "head"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert schema_diff(catalog_url) == []
