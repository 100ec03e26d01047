"""Alembic migrations: `upgrade head` on an empty SQLite file and an empty PostgreSQL database
gives exactly the schema the models describe; downgrade and upgrade again round-trips; 0002 moves
what records share into profiles on rows written as 0001's code wrote them, and back.
(tests/test_catalog_upgrade.py upgrades a swept archive and mounts and restores it.)"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, select, text

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


def test_the_schema_head_named_in_code_is_the_newest_migration() -> None:
    """Opening a catalog compares with `SCHEMA_HEAD` instead of importing Alembic: a new migration
    must bump it."""
    from alembic.script import ScriptDirectory

    from archiver.catalog.database import SCHEMA_HEAD, alembic_config, known_revisions

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [SCHEMA_HEAD] == [head_revision()]
    assert SCHEMA_HEAD in known_revisions() and len(known_revisions()) == len(list(script.walk_revisions()))


def test_the_install_names_every_package_and_no_top_level_migrations(tmp_path: Path) -> None:
    import tomllib

    named = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("archiver", "fusefs")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert named == folders | {"archiver._migrations"}
    # From outside the repository (so the working directory is not on the path): the catalog's
    # migrations are found under archiver, and there is no `migrations` package to import.
    probe = (
        "import importlib.util as u; from archiver.catalog.database import migrations_dir; "
        "print(u.find_spec('migrations'), migrations_dir().name)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.split() == ["None", "migrations"], done.stderr


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


# --- 0002: compact records, on rows as the 0001 code wrote them ---

WHEN = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
SCHEDULER = {"_class_name": "DDIMScheduler", "beta_end": 0.012, "clip_sample": False, "steps_offset": 1}
THRESHOLDS = {"lpips_max": 0.05, "worst_tile_max": 0.1, "psnr_min": 30.0, "colour_max": 3.0, "tiles": 4.0}
BACKBONE = {"net": "alex", "backbone": "pretrained", "trunk_sha256": "44" * 32}
STACK = {"torch": "2.14.1", "diffusers": "0.42.1", "pillow": "13.0.0"}


def _report(lpips: float, siblings: bool, software: dict[str, str]) -> dict[str, object]:
    metrics: dict[str, object] = {"deterministic": True, "lpips": lpips, "psnr": 38.97874848127964}
    if siblings:
        metrics |= {"sibling_margin_db": 1e9, "nearest_sibling_psnr": 25.721784354306934}
    return {
        "passed": True,
        "failures": [],
        "metrics": metrics,
        "thresholds": THRESHOLDS,
        "backbone": BACKBONE,
        "software": software,
        "nearest_sibling": "shoes/green.png" if siblings else None,
    }


# Three records as `save_record` wrote them at 0001: two rendered alike (one render profile), one
# with another torch (a second); one judged without siblings (other metric names: a second gate profile).
OLD_RECORDS = [
    ("shoes/red.png", 3, 0.0005934179644100368, True, STACK),
    ("shoes/blue.jpg", 0, 0.00123456789, True, STACK),
    ("shoes/pink.png", 7, 0.002, False, STACK | {"torch": "2.13.0"}),
]


def _write_0001_catalog(url: str) -> None:
    with connect(url) as conn:
        upgrade(conn, "0001")
    with connect(url) as conn:  # a second connection, as `archiver db upgrade` meets a catalog
        meta = MetaData()
        meta.reflect(conn)
        t = meta.tables
        conn.execute(t["sources"].insert().values(id=1, url="file:///hot", created_at=WHEN))
        conn.execute(
            t["models"]
            .insert()
            .values(id=1, name="tiny", sha256="ab" * 32, path="/m", pipeline_class="P", created_at=WHEN)
        )
        conn.execute(
            t["encoding_profiles"].insert().values(id="cd" * 32, format="PNG", body=b"{}", created_at=WHEN)
        )
        conn.execute(
            t["vault_objects"]
            .insert()
            .values(
                id=1,
                uri="file:///vault/packs/p.tar",
                key="packs/p.tar",
                storage_class="GLACIER",
                version_id=None,
                sha256="ef" * 32,
                size=99,
                is_pack=True,
                confirmed_at=WHEN,
                created_at=WHEN,
            )
        )
        for i, (key, seed, lpips, siblings, software) in enumerate(OLD_RECORDS, 1):
            conn.execute(
                t["assets"]
                .insert()
                .values(
                    id=i,
                    source_id=1,
                    key=key,
                    state="archived",
                    size=1000 + i,
                    etag=f'"{i}"',
                    last_modified=WHEN,
                    sha256=f"{i:064x}",
                    vault_object_id=1,
                    vault_offset=i,
                    vault_length=9,
                    created_at=WHEN,
                    updated_at=WHEN,
                )
            )
            conn.execute(
                t["records"]
                .insert()
                .values(
                    id=i,
                    asset_id=i,
                    model_id=1,
                    encoding_profile_id="cd" * 32,
                    pipeline_class="P",
                    scheduler_class="DDIMScheduler",
                    scheduler_config=SCHEDULER,
                    prompt=f"a photo of {key}",
                    negative_prompt="",
                    seed=seed,
                    steps=20,
                    guidance_scale=1.0,
                    width=64,
                    height=64,
                    eta=0.0,
                    rng="cpu",
                    dtype="float32",
                    rendered_sha256=f"{i + 100:064x}",
                    rendered_size=900 + i,
                    gate_report=_report(lpips, siblings, software),
                    software=software,
                    created_at=WHEN,
                )
            )
            conn.execute(
                t["events"]
                .insert()
                .values(
                    at=WHEN,
                    asset_id=i,
                    kind="vaulted",
                    detail={"previous": "verified", "reason": None, "vault_uri": "file:///vault/packs/p.tar"},
                )
            )


def test_0002_moves_what_records_share_into_profiles_and_back(catalog_url: str) -> None:
    from archiver.catalog.database import alembic_config, open_catalog
    from archiver.catalog.models import Asset, Event, GateProfile, RenderProfile
    from archiver.catalog.queries import record_stacks
    from archiver.engine.rehydrate import RenderSpec

    _write_0001_catalog(catalog_url)
    with connect(catalog_url) as conn:
        upgrade(conn)
    assert schema_diff(catalog_url) == []
    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        assert session.query(RenderProfile).count() == 2 and session.query(GateProfile).count() == 2
        assets = {a.key: a for a in session.query(Asset)}
        for i, (key, seed, lpips, siblings, software) in enumerate(OLD_RECORDS, 1):
            asset = assets[key]
            record = asset.record
            assert record is not None
            assert (asset.sha256, asset.last_modified, asset.size) == (f"{i:064x}", WHEN, 1000 + i)
            assert (record.rendered_sha256, record.rendered_size) == (f"{i + 100:064x}", 900 + i)
            assert RenderSpec.from_record(record) == RenderSpec(
                pipeline_class="P",
                scheduler_class="DDIMScheduler",
                scheduler_config=SCHEDULER,
                prompt=f"a photo of {key}",
                negative_prompt="",
                seed=seed,
                steps=20,
                guidance_scale=1.0,
                width=64,
                height=64,
            )
            report = _report(lpips, siblings, software) | {"nearest_sibling": None}
            report["metrics"] = {
                k: v if v is True else float(f"{v:.4g}") for k, v in report["metrics"].items()
            }
            assert record.gate_report == report
            assert record.encoding_profile.sha256 == "cd" * 32 and record.encoding_profile.body == b"{}"
            assert record.software == software
        # the history is left as it was written
        (event,) = session.query(Event).filter(Event.asset_id == assets["shoes/red.png"].id)
        assert event.at == WHEN and event.detail["vault_uri"] == "file:///vault/packs/p.tar"
        stacks = sorted(record_stacks(session), key=lambda s: s[1])
        assert stacks == [(STACK | {"torch": "2.13.0"}, 1), (STACK, 2)]
    catalog.close()

    from alembic import command

    with connect(catalog_url) as conn:
        command.downgrade(alembic_config(conn), "0001")
    with connect(catalog_url) as conn:
        meta = MetaData()
        meta.reflect(conn)
        rows = conn.execute(select(meta.tables["records"]).order_by(text("id"))).mappings().all()
        old_assets = conn.execute(select(meta.tables["assets"]).order_by(text("id"))).mappings().all()
    assert [(r["seed"], r["scheduler_config"], r["steps"], r["software"]) for r in rows] == [
        (seed, SCHEDULER, 20, software) for _, seed, _, _, software in OLD_RECORDS
    ]
    assert [r["rendered_sha256"] for r in rows] == [f"{i + 100:064x}" for i in (1, 2, 3)]
    assert [a["sha256"] for a in old_assets] == [f"{i:064x}" for i in (1, 2, 3)]
    assert rows[0]["gate_report"]["metrics"]["lpips"] == 0.0005934
    with connect(catalog_url) as conn:  # and up again
        upgrade(conn)
    assert schema_diff(catalog_url) == []


# --- 0005: smaller rows (codes, float32 metrics, no empty details) ---


def _add_event(url: str, kind: str) -> None:
    """An event of `kind` with an empty detail for asset 1, at its first event's time."""
    with connect(url) as conn:
        conn.execute(
            text(
                "INSERT INTO events (at, asset_id, kind, detail) "
                "SELECT at, 1, :kind, '{}' FROM events WHERE asset_id = 1"
            ),
            {"kind": kind},
        )
        conn.commit()


def _raw(url: str, sql: str) -> list[tuple[object, ...]]:
    with connect(url) as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def test_0005_stores_codes_float32_metrics_and_no_empty_details_and_back(catalog_url: str) -> None:
    from alembic import command

    from archiver.catalog.database import alembic_config, open_catalog
    from archiver.catalog.models import Asset, AssetState, Event

    _write_0001_catalog(catalog_url)
    with connect(catalog_url) as conn:
        upgrade(conn, "0004")
    _add_event(catalog_url, "archived")
    with connect(catalog_url) as conn:
        conn.execute(text("UPDATE assets SET state = 'rejected' WHERE id = 3"))
        conn.commit()
    before = sorted(_raw(catalog_url, "SELECT asset_id, metrics FROM records"))
    assert all(isinstance(metrics, str) for _, metrics in before) or catalog_url.startswith("postgresql")

    with connect(catalog_url) as conn:
        upgrade(conn)
    assert schema_diff(catalog_url) == []
    # stored small: a code for the state and the kind, 4 bytes a metric, NULL for an empty detail
    assert sorted(_raw(catalog_url, "SELECT id, state FROM assets")) == [(1, 5), (2, 5), (3, 6)]
    assert sorted(_raw(catalog_url, "SELECT DISTINCT kind FROM events")) == [(4,), (5,)]
    assert _raw(catalog_url, "SELECT COUNT(*) FROM events WHERE detail IS NULL") == [(1,)]
    sizes = sorted(_raw(catalog_url, "SELECT asset_id, length(metrics) FROM records"))
    assert sizes == [(1, 4 * 5), (2, 4 * 5), (3, 4 * 3)]
    # records keyed by their asset: no id of their own, no second index on asset_id
    with connect(catalog_url) as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("records")}
        assert "id" not in columns and inspect(conn).get_pk_constraint("records")["constrained_columns"] == [
            "asset_id"
        ]
        assert inspect(conn).get_unique_constraints("records") == []
    # and read back as they were
    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        assets = {a.id: a for a in session.query(Asset)}
        assert [assets[i].state for i in (1, 2, 3)] == [AssetState.ARCHIVED] * 2 + [AssetState.REJECTED]
        record = assets[1].record
        assert record is not None
        assert record.metrics == [True, 0.0005934, 38.98, 1e9, 25.72]
        assert record.gate_report["metrics"]["lpips"] == 0.0005934
        events = session.query(Event).filter(Event.asset_id == 1).order_by(Event.id).all()
        assert [(e.kind, e.detail) for e in events] == [
            ("vaulted", {"previous": "verified", "reason": None, "vault_uri": "file:///vault/packs/p.tar"}),
            ("archived", {}),
        ]
    catalog.close()

    with connect(catalog_url) as conn:
        command.downgrade(alembic_config(conn), "0004")
    assert sorted(_raw(catalog_url, "SELECT id, state FROM assets")) == [
        (1, "archived"),
        (2, "archived"),
        (3, "rejected"),
    ]
    assert sorted(_raw(catalog_url, "SELECT DISTINCT kind FROM events")) == [("archived",), ("vaulted",)]
    assert _raw(catalog_url, "SELECT COUNT(*) FROM events WHERE detail IS NULL") == [(0,)]
    with connect(catalog_url) as conn:
        meta = MetaData()
        meta.reflect(conn)
        records = meta.tables["records"]
        metrics = {row[0]: row[1] for row in conn.execute(select(records.c.asset_id, records.c.metrics))}
    assert metrics[1] == [True, 0.0005934, 38.98, 1e9, 25.72]
    # records have ids again: their assets'
    assert sorted(_raw(catalog_url, "SELECT id, asset_id FROM records")) == [(1, 1), (2, 2), (3, 3)]


def test_0005_stops_on_an_event_kind_it_has_no_code_for(catalog_url: str) -> None:
    _write_0001_catalog(catalog_url)
    with connect(catalog_url) as conn:
        upgrade(conn, "0004")
    _add_event(catalog_url, "teleported")
    with connect(catalog_url) as conn:
        try:
            upgrade(conn)
        except RuntimeError as stopped:
            assert "events.kind holds teleported" in str(stopped)
        else:
            raise AssertionError("the upgrade went on past an unknown event kind")
    with connect(catalog_url) as conn:
        assert schema_status(conn).current == "0004"
    assert _raw(catalog_url, "SELECT kind FROM events WHERE kind = 'teleported'") == [("teleported",)]


# --- 0006: what a restore put hot, apart from the original's identity ---


def test_0006_moves_a_restored_copy_off_the_original_identity(catalog_url: str) -> None:
    """Restored assets as the 0005 code left them: a rehydrated restore had overwritten the row's
    size and ETag with the render's. The upgrade moves those to hot_*, gives a single original its
    size back from its vault object, and leaves an asset never restored as it was."""
    import json

    from alembic import command

    from archiver.catalog.database import alembic_config, open_catalog
    from archiver.catalog.models import Asset

    _write_0001_catalog(catalog_url)
    with connect(catalog_url) as conn:
        upgrade(conn, "0005")
    detail = "CAST(:detail AS JSON)" if catalog_url.startswith("postgresql") else ":detail"
    with connect(catalog_url) as conn:
        conn.execute(
            text(
                "INSERT INTO vault_objects (id, uri, key, storage_class, sha256, size, is_pack, created_at) "
                "SELECT 2, 'file:///vault/originals/2', 'originals/2', 'GLACIER', :sha, 777, :no, created_at "
                "FROM vault_objects WHERE id = 1"
            ),
            {"sha": f"{2:064x}", "no": False},
        )
        conn.execute(text("UPDATE assets SET state = 7, size = 444, etag = '\"hot1\"' WHERE id = 1"))
        conn.execute(
            text(
                "UPDATE assets SET state = 7, size = 555, etag = '\"hot2\"', vault_object_id = 2, "
                "vault_offset = NULL, vault_length = NULL WHERE id = 2"
            )
        )
        for asset_id, size, sha in ((1, 444, "aa"), (2, 555, "bb")):
            doc = {
                "job": asset_id,
                "size": size,
                "sha256": sha * 32,
                "etag": f'"hot{asset_id}"',
                "verified": "exact",
            }
            conn.execute(
                text(
                    f"INSERT INTO events (at, asset_id, kind, detail) "
                    f"SELECT at, :asset, 11, {detail} FROM events WHERE asset_id = :asset ORDER BY id LIMIT 1"
                ),
                {"asset": asset_id, "detail": json.dumps(doc)},
            )
        conn.commit()
    with connect(catalog_url) as conn:
        upgrade(conn)
    assert schema_diff(catalog_url) == []
    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        rows = {
            a.id: (a.size, a.etag, a.sha256, a.hot_sha256, a.hot_size, a.hot_etag)
            for a in session.query(Asset)
        }
    catalog.close()
    assert rows[1] == (444, None, f"{1:064x}", "aa" * 32, 444, '"hot1"')  # a pack member: see the reader
    assert rows[2] == (777, None, f"{2:064x}", "bb" * 32, 555, '"hot2"')
    assert rows[3] == (1003, '"3"', f"{3:064x}", None, None, None)
    with connect(catalog_url) as conn:
        command.downgrade(alembic_config(conn), "0005")
        assert "hot_size" not in {c["name"] for c in inspect(conn).get_columns("assets")}
