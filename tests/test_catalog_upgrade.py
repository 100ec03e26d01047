"""`archiver db upgrade` on an archive written at the previous schema: it still mounts and restores.

The archive is the `memorized` catalogue swept for real (SQLite, and PostgreSQL), then taken back
to schema 0001 by the migration's downgrade (0001's wide records, full gate reports, hex digests,
text times). Until `archiver db upgrade` runs, commands refuse it; after, every record says what it
said before, the mount reads every file back to its record's SHA-256, and restores (rehydrated and
byte-exact originals) work. tests/test_migrations.py checks the same migration on rows written as
0001's code wrote them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support import MEMORIZED, catalog_assets, cli
from support.mounts import read_through_a_mount

from archiver.catalog.database import alembic_config, connect
from archiver.catalog.models import AssetState


def shown(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    found = {}
    for key in sorted(MEMORIZED):
        code, out, err = cli(capsys, "show", key, "--json")
        assert code == 0, err
        found[key] = json.loads(out)
    return found


def _sketchless(shown: dict[str, object]) -> dict[str, object]:
    record = dict(shown["record"])  # type: ignore[call-overload]
    record["render_sketch"] = None
    return shown | {"record": record}


def test_an_archive_at_the_previous_schema_mounts_and_restores_after_db_upgrade(
    swept_url: str, env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    from alembic import command

    before = shown(capsys)
    with connect(swept_url) as conn:
        command.downgrade(alembic_config(conn), "0001")
    code, _, err = cli(capsys, "ls")
    assert code == 4 and "run `archiver db upgrade`" in err
    code, out, err = cli(capsys, "db", "upgrade")
    assert code == 0 and "upgraded from schema 0001" in out, err
    after = shown(capsys)
    # Records, gate reports, vault locations and history, all as they were; only the render sketch
    # (0003) is gone with the schema that had none, until a first exact render makes it again.
    assert {k: v["record"]["render_sketch"] for k, v in after.items()} == dict.fromkeys(MEMORIZED)  # type: ignore[index]
    assert after == {k: _sketchless(v) for k, v in before.items()}

    if swept_url.startswith("sqlite"):
        _mount_and_read_back(env, memorized, before)
        # Each exact render the mount read gave its record its sketch back, the sweep's own.
        assert {k: v["record"] for k, v in shown(capsys).items()} == {
            k: v["record"] for k, v in before.items()
        }

    code, out, err = cli(capsys, "restore", "shoes/tiny-red.png", "--json")
    assert code == 0 and json.loads(out)["jobs"][0]["state"] == "done", err
    data = (source / "shoes/tiny-red.png").read_bytes()
    assert hashlib.sha256(data).hexdigest() == before["shoes/tiny-red.png"]["record"]["rendered_sha256"]  # type: ignore[index]
    code, out, err = cli(capsys, "restore", "shoes/tiny-blue.jpg", "--original", "--json")
    assert code == 0 and json.loads(out)["jobs"][0]["state"] == "done", err
    assert (source / "shoes/tiny-blue.jpg").read_bytes() == memorized["files"]["shoes/tiny-blue.jpg"]  # type: ignore[index]
    if swept_url.startswith("sqlite"):
        states = {key: asset.state for key, asset in catalog_assets(env).items()}
        assert states["shoes/tiny-red.png"] == states["shoes/tiny-blue.jpg"] == AssetState.RESTORED


def _mount_and_read_back(
    home: Path, memorized: dict[str, object], records: dict[str, dict[str, object]]
) -> None:
    read = read_through_a_mount(home, MEMORIZED)  # None without FUSE: the restores below still run
    for key, data in (read or {}).items():
        assert hashlib.sha256(data).hexdigest() == records[key]["record"]["rendered_sha256"], key  # type: ignore[index]
