"""Compact records: what records share moves to content-addressed render and gate profiles.

A record keeps its own prompt, negative prompt, seed, rendered SHA-256 (32 bytes) and size, and its
gate metric values (a list, in the order its gate profile names them, 4 significant digits); the
pipeline, scheduler and its config, steps, guidance, eta, size, dtype, rng and software stack go to
`render_profiles`, the thresholds, LPIPS trunk and metric names to `gate_profiles`. Encoding
profiles get an integer id (their content address moves to `sha256`), so a record names its three
profiles and its model by small integers. Also: an asset's SHA-256 is 32 bytes; `assets.created_at`
and `records.created_at` go (the `discovered` and `verified` events hold those times); the unused
index on `events.at` goes; on SQLite, times become integer microseconds since the epoch.
Existing events are left as they are (the history is append-only); the gate report's
`nearest_sibling` name is not kept.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen here as of this revision (a migration must not change meaning when the code moves on);
# archiver.catalog.profiles computes the same content ids for the same settings.
PROFILE_VERSION = 1
RENDER_FIELDS = (
    "pipeline_class",
    "scheduler_class",
    "scheduler_config",
    "steps",
    "guidance_scale",
    "eta",
    "width",
    "height",
    "dtype",
    "rng",
)
OLD_RECORD_ONLY = (*RENDER_FIELDS, "gate_report", "software", "created_at")
# Every time column of 0001 that stays, by table (SQLite stores them as integers from here on).
TIMES = {
    "sources": ("created_at",),
    "models": ("created_at",),
    "encoding_profiles": ("created_at",),
    "vault_objects": ("confirmed_at", "created_at"),
    "assets": ("last_modified", "claimed_until", "updated_at"),
    "restore_jobs": ("requested_at", "updated_at"),
    "events": ("at",),
}
CHUNK = 2000


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _content_id(doc: Any) -> str:
    return hashlib.sha256(_canonical(doc)).hexdigest()


def _render_doc(row: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": PROFILE_VERSION, "software": dict(row.software or {})}
    for name in RENDER_FIELDS:
        doc[name] = getattr(row, name)
    doc["guidance_scale"], doc["eta"] = float(doc["guidance_scale"]), float(doc["eta"])
    doc["steps"], doc["width"], doc["height"] = int(doc["steps"]), int(doc["width"]), int(doc["height"])
    doc["scheduler_config"] = json.loads(_canonical(doc["scheduler_config"]))
    return doc


def _gate_doc(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": PROFILE_VERSION,
        "thresholds": {k: float(v) for k, v in (report.get("thresholds") or {}).items()},
        "backbone": dict(report.get("backbone") or {}),
        "metrics": list(report.get("metrics") or {}),
    }


def _metric(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    number = float(value)
    if not math.isfinite(number):
        return math.copysign(1e9, number) if math.isinf(number) else None
    return float(f"{number:.4g}")


def _timestamp(sqlite: bool) -> sa.types.TypeEngine[Any]:
    return sa.BigInteger() if sqlite else sa.DateTime(timezone=True)


def _foreign_keys_off(bind: Connection) -> None:
    """SQLite rebuilds a table to change it; with foreign keys enforced, dropping the old copy of a
    table others refer to fails. The pragma only takes outside a transaction, which is where a
    migration of an existing catalog starts (nothing was written yet); a fresh catalog reaches this
    inside one, but its tables are empty. The connection is closed after migrating."""
    bind.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]


def _check_foreign_keys(bind: Connection) -> None:
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"migration would leave rows referring to missing ones: {broken[:5]}")


def _sqlite_times_to_integers(bind: Connection, table: str) -> None:
    for column in TIMES.get(table, ()):
        bind.exec_driver_sql(
            f"UPDATE {table} SET {column} = CAST(strftime('%s', {column}) AS INTEGER) * 1000000 "
            f"+ CAST(substr({column}, 21, 6) AS INTEGER) WHERE typeof({column}) = 'text'"
        )


def _sqlite_times_to_text(bind: Connection, table: str) -> None:
    for column in TIMES.get(table, ()):
        bind.exec_driver_sql(
            f"UPDATE {table} SET {column} = strftime('%Y-%m-%d %H:%M:%S', {column} / 1000000, 'unixepoch') "
            f"|| printf('.%06d', {column} % 1000000) WHERE typeof({column}) = 'integer'"
        )


def _alter_times(batch: Any, table: str, sqlite: bool, *, to_integer: bool) -> None:
    if not sqlite:
        return
    for column in TIMES.get(table, ()):
        text, integer = sa.DateTime(timezone=True), sa.BigInteger()
        old, new = (text, integer) if to_integer else (integer, text)
        batch.alter_column(column, type_=new, existing_type=old)


def _sqlite_recode(bind: Connection, table: str, column: str, *, to_bytes: bool) -> None:
    """A SHA-256 column between hex text and 32 bytes, row by row (SQLite 3.40 has no unhex())."""
    rows = bind.exec_driver_sql(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL").all()
    values = [(bytes.fromhex(v) if to_bytes else bytes(v).hex(), i) for i, v in rows]
    for start in range(0, len(values), CHUNK):
        bind.exec_driver_sql(f"UPDATE {table} SET {column} = ? WHERE id = ?", values[start : start + CHUNK])


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys_off(bind)
    op.create_table(
        "render_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("pipeline_class", sa.String(length=200), nullable=False),
        sa.Column("scheduler_class", sa.String(length=200), nullable=False),
        sa.Column("scheduler_config", sa.JSON(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("guidance_scale", sa.Double(), nullable=False),
        sa.Column("eta", sa.Double(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("rng", sa.String(length=16), nullable=False),
        sa.Column("software", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(sqlite), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_render_profiles")),
        sa.UniqueConstraint("sha256", name=op.f("uq_render_profiles_sha256")),
    )
    op.create_table(
        "gate_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("backbone", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(sqlite), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_profiles")),
        sa.UniqueConstraint("sha256", name=op.f("uq_gate_profiles_sha256")),
    )
    with op.batch_alter_table("encoding_profiles") as batch:
        batch.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("number", sa.Integer(), nullable=True))
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("render_profile_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("gate_profile_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("encoding_number", sa.Integer(), nullable=True))
    _split_records(bind)
    if sqlite:
        _sqlite_recode(bind, "records", "rendered_sha256", to_bytes=True)
        _sqlite_recode(bind, "assets", "sha256", to_bytes=True)
        for table in TIMES:
            _sqlite_times_to_integers(bind, table)

    with op.batch_alter_table("records") as batch:
        batch.drop_constraint("fk_records_encoding_profile_id_encoding_profiles", type_="foreignkey")
        for column in (*OLD_RECORD_ONLY, "encoding_profile_id"):
            batch.drop_column(column)
        batch.alter_column(
            "encoding_number",
            new_column_name="encoding_profile_id",
            existing_type=sa.Integer(),
            nullable=False,
        )
        for column in ("render_profile_id", "gate_profile_id"):
            batch.alter_column(column, existing_type=sa.Integer(), nullable=False)
        batch.alter_column("metrics", existing_type=sa.JSON(), nullable=False)
        batch.alter_column(
            "rendered_sha256",
            type_=sa.LargeBinary(length=32),
            existing_type=sa.String(length=64),
            existing_nullable=False,
            postgresql_using="decode(rendered_sha256, 'hex')",
        )
        batch.create_foreign_key(
            op.f("fk_records_render_profile_id_render_profiles"),
            "render_profiles",
            ["render_profile_id"],
            ["id"],
        )
        batch.create_foreign_key(
            op.f("fk_records_gate_profile_id_gate_profiles"), "gate_profiles", ["gate_profile_id"], ["id"]
        )
    with op.batch_alter_table("encoding_profiles") as batch:
        batch.drop_constraint("pk_encoding_profiles", type_="primary")
        batch.drop_column("id")
        batch.alter_column("number", new_column_name="id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("sha256", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint(op.f("uq_encoding_profiles_sha256"), ["sha256"])
        _alter_times(batch, "encoding_profiles", sqlite, to_integer=True)
    with op.batch_alter_table("encoding_profiles") as batch:  # a batch sees a renamed column after it ends
        batch.create_primary_key("pk_encoding_profiles", ["id"])
    if not sqlite:  # what SERIAL would have made: new profiles number themselves
        op.execute("CREATE SEQUENCE encoding_profiles_id_seq OWNED BY encoding_profiles.id")
        op.execute(
            "SELECT setval('encoding_profiles_id_seq', "
            "COALESCE((SELECT max(id) FROM encoding_profiles), 0) + 1, false)"
        )
        op.execute(
            "ALTER TABLE encoding_profiles ALTER COLUMN id SET DEFAULT nextval('encoding_profiles_id_seq')"
        )
    with op.batch_alter_table("records") as batch:
        batch.create_foreign_key(
            op.f("fk_records_encoding_profile_id_encoding_profiles"),
            "encoding_profiles",
            ["encoding_profile_id"],
            ["id"],
        )
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("created_at")
        batch.alter_column(
            "sha256",
            type_=sa.LargeBinary(length=32),
            existing_type=sa.String(length=64),
            existing_nullable=True,
            postgresql_using="decode(sha256, 'hex')",
        )
        _alter_times(batch, "assets", sqlite, to_integer=True)
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_at")
        _alter_times(batch, "events", sqlite, to_integer=True)
    for table in ("sources", "models", "vault_objects", "restore_jobs"):
        if sqlite:
            with op.batch_alter_table(table) as batch:
                _alter_times(batch, table, sqlite, to_integer=True)
    if sqlite:
        _check_foreign_keys(bind)


def _split_records(bind: Connection) -> None:
    """Each record's shared settings into (deduplicated) profiles, its metrics into a list."""
    now = datetime.now(UTC)
    encoding = sa.table(
        "encoding_profiles",
        sa.column("id", sa.String()),
        sa.column("sha256", sa.String()),
        sa.column("number", sa.Integer()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    in_order = sa.select(encoding.c.id).order_by(encoding.c.created_at, encoding.c.id)
    old_ids = bind.execute(in_order).scalars().all()
    numbers = {old: number for number, old in enumerate(old_ids, 1)}
    if numbers:
        bind.execute(
            encoding.update()
            .where(encoding.c.id == sa.bindparam("b_old"))
            .values(sha256=sa.bindparam("b_sha256"), number=sa.bindparam("b_number")),
            [{"b_old": old, "b_sha256": old, "b_number": number} for old, number in numbers.items()],
        )
    created: Any = now
    if bind.dialect.name == "sqlite":
        created = (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    render = sa.table(
        "render_profiles",
        *(sa.column(name) for name in ("id", "sha256", *RENDER_FIELDS, "created_at")),
        sa.column("scheduler_config", sa.JSON()),
        sa.column("software", sa.JSON()),
    )
    gate = sa.table(
        "gate_profiles",
        sa.column("id"),
        sa.column("sha256"),
        sa.column("thresholds", sa.JSON()),
        sa.column("backbone", sa.JSON()),
        sa.column("metrics", sa.JSON()),
        sa.column("created_at"),
    )
    records = sa.table(
        "records",
        sa.column("id", sa.Integer()),
        sa.column("encoding_profile_id", sa.String()),
        *(sa.column(name) for name in RENDER_FIELDS if name != "scheduler_config"),
        sa.column("scheduler_config", sa.JSON()),
        sa.column("gate_report", sa.JSON()),
        sa.column("software", sa.JSON()),
        sa.column("render_profile_id", sa.Integer()),
        sa.column("gate_profile_id", sa.Integer()),
        sa.column("metrics", sa.JSON()),
        sa.column("encoding_number", sa.Integer()),
    )
    render_ids: dict[str, int] = {}
    gate_ids: dict[str, int] = {}
    last = 0
    while True:
        rows = bind.execute(
            sa.select(records).where(records.c.id > last).order_by(records.c.id).limit(CHUNK)
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            render_doc = _render_doc(row)
            render_sha = _content_id(render_doc)
            if render_sha not in render_ids:
                fields = {name: render_doc[name] for name in RENDER_FIELDS}
                render_ids[render_sha] = bind.execute(
                    render.insert()
                    .values(sha256=render_sha, software=render_doc["software"], created_at=created, **fields)
                    .returning(render.c.id)
                ).scalar_one()
            report = dict(row.gate_report or {})
            gate_doc = _gate_doc(report)
            gate_sha = _content_id(gate_doc)
            if gate_sha not in gate_ids:
                gate_ids[gate_sha] = bind.execute(
                    gate.insert()
                    .values(
                        sha256=gate_sha,
                        thresholds=gate_doc["thresholds"],
                        backbone=gate_doc["backbone"],
                        metrics=gate_doc["metrics"],
                        created_at=created,
                    )
                    .returning(gate.c.id)
                ).scalar_one()
            updates.append(
                {
                    "b_id": row.id,
                    "b_render": render_ids[render_sha],
                    "b_gate": gate_ids[gate_sha],
                    "b_metrics": [_metric(v) for v in (report.get("metrics") or {}).values()],
                    "b_encoding": numbers[row.encoding_profile_id],
                }
            )
        bind.execute(
            records.update()
            .where(records.c.id == sa.bindparam("b_id"))
            .values(
                render_profile_id=sa.bindparam("b_render"),
                gate_profile_id=sa.bindparam("b_gate"),
                metrics=sa.bindparam("b_metrics", type_=sa.JSON()),
                encoding_number=sa.bindparam("b_encoding"),
            ),
            updates,
        )
        last = rows[-1].id


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys_off(bind)
    with op.batch_alter_table("records") as batch:
        for name, kind in (
            ("pipeline_class", sa.String(length=200)),
            ("scheduler_class", sa.String(length=200)),
            ("scheduler_config", sa.JSON()),
            ("steps", sa.Integer()),
            ("guidance_scale", sa.Double()),
            ("width", sa.Integer()),
            ("height", sa.Integer()),
            ("eta", sa.Double()),
            ("rng", sa.String(length=16)),
            ("dtype", sa.String(length=16)),
            ("gate_report", sa.JSON()),
            ("software", sa.JSON()),
            ("created_at", sa.DateTime(timezone=True)),
            ("encoding_hex", sa.String(length=64)),
        ):
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("encoding_profiles") as batch:
        batch.add_column(sa.Column("hex_id", sa.String(length=64), nullable=True))
    _join_records(bind)
    if sqlite:
        _sqlite_recode(bind, "records", "rendered_sha256", to_bytes=False)
        _sqlite_recode(bind, "assets", "sha256", to_bytes=False)

    with op.batch_alter_table("records") as batch:
        for name in ("encoding_profile_id", "render_profile_id", "gate_profile_id"):
            batch.drop_constraint(f"fk_records_{name}_{name.removesuffix('_id')}s", type_="foreignkey")
        for name in ("encoding_profile_id", "render_profile_id", "gate_profile_id", "metrics"):
            batch.drop_column(name)
        batch.alter_column(
            "encoding_hex",
            new_column_name="encoding_profile_id",
            existing_type=sa.String(length=64),
            nullable=False,
        )
        for name in ("pipeline_class", "scheduler_class", "dtype", "rng"):
            batch.alter_column(name, existing_type=sa.String(length=200), nullable=False)
        for name in ("scheduler_config", "gate_report", "software"):
            batch.alter_column(name, existing_type=sa.JSON(), nullable=False)
        for name in ("steps", "width", "height"):
            batch.alter_column(name, existing_type=sa.Integer(), nullable=False)
        for name in ("guidance_scale", "eta"):
            batch.alter_column(name, existing_type=sa.Double(), nullable=False)
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column(
            "rendered_sha256",
            type_=sa.String(length=64),
            existing_type=sa.LargeBinary(length=32),
            existing_nullable=False,
            postgresql_using="encode(rendered_sha256, 'hex')",
        )
    with op.batch_alter_table("encoding_profiles") as batch:
        batch.drop_constraint("pk_encoding_profiles", type_="primary")
        batch.drop_constraint("uq_encoding_profiles_sha256", type_="unique")
        batch.drop_column("id")
        batch.drop_column("sha256")
        batch.alter_column("hex_id", new_column_name="id", existing_type=sa.String(length=64), nullable=False)
        _alter_times(batch, "encoding_profiles", sqlite, to_integer=False)
    with op.batch_alter_table("encoding_profiles") as batch:
        batch.create_primary_key("pk_encoding_profiles", ["id"])
    with op.batch_alter_table("records") as batch:
        batch.create_foreign_key(
            op.f("fk_records_encoding_profile_id_encoding_profiles"),
            "encoding_profiles",
            ["encoding_profile_id"],
            ["id"],
        )
    op.drop_table("gate_profiles")
    op.drop_table("render_profiles")
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column(
            "sha256",
            type_=sa.String(length=64),
            existing_type=sa.LargeBinary(length=32),
            existing_nullable=True,
            postgresql_using="encode(sha256, 'hex')",
        )
        _alter_times(batch, "assets", sqlite, to_integer=False)
    with op.batch_alter_table("events") as batch:
        batch.create_index(batch.f("ix_events_at"), ["at"], unique=False)
        _alter_times(batch, "events", sqlite, to_integer=False)
    for table in ("sources", "models", "vault_objects", "restore_jobs"):
        if sqlite:
            with op.batch_alter_table(table) as batch:
                _alter_times(batch, table, sqlite, to_integer=False)
    if sqlite:  # after the rebuilds: they CAST to the column's type, which would read text times as years
        for table in TIMES:
            _sqlite_times_to_text(bind, table)
    op.execute("UPDATE assets SET created_at = updated_at")
    with op.batch_alter_table("assets") as batch:
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    if sqlite:
        _check_foreign_keys(bind)


def _join_records(bind: Connection) -> None:
    """Each record's profiles back into its own columns, its report reassembled (0001's shape)."""
    sqlite = bind.dialect.name == "sqlite"
    now = datetime.now(UTC)
    created: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now
    encoding = sa.table("encoding_profiles", sa.column("id"), sa.column("sha256"), sa.column("hex_id"))
    bind.execute(encoding.update().values(hex_id=encoding.c.sha256))
    hex_ids = dict(bind.execute(sa.select(encoding.c.id, encoding.c.sha256)).all())
    render = sa.table(
        "render_profiles",
        sa.column("id"),
        *(sa.column(name) for name in RENDER_FIELDS if name != "scheduler_config"),
        sa.column("scheduler_config", sa.JSON()),
        sa.column("software", sa.JSON()),
    )
    gate = sa.table(
        "gate_profiles",
        sa.column("id"),
        sa.column("thresholds", sa.JSON()),
        sa.column("backbone", sa.JSON()),
        sa.column("metrics", sa.JSON()),
    )
    renders = {row.id: row for row in bind.execute(sa.select(render)).all()}
    gates = {row.id: row for row in bind.execute(sa.select(gate)).all()}
    records = sa.table(
        "records",
        sa.column("id", sa.Integer()),
        sa.column("encoding_profile_id", sa.Integer()),
        sa.column("render_profile_id", sa.Integer()),
        sa.column("gate_profile_id", sa.Integer()),
        sa.column("metrics", sa.JSON()),
    )
    columns = [*RENDER_FIELDS, "gate_report", "software", "created_at", "encoding_hex"]
    target = sa.table("records", sa.column("id"), *(sa.column(f"{name}") for name in columns))
    json_columns = {"scheduler_config", "gate_report", "software"}
    last = 0
    while True:
        rows = bind.execute(
            sa.select(records).where(records.c.id > last).order_by(records.c.id).limit(CHUNK)
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            profile, judged = renders[row.render_profile_id], gates[row.gate_profile_id]
            software = dict(profile.software or {})
            values: dict[str, Any] = {f"b_{name}": getattr(profile, name) for name in RENDER_FIELDS}
            values |= {
                "b_id": row.id,
                "b_gate_report": {
                    "passed": True,
                    "failures": [],
                    "metrics": dict(zip(judged.metrics, row.metrics, strict=True)),
                    "thresholds": judged.thresholds,
                    "backbone": judged.backbone,
                    "software": software,
                    "nearest_sibling": None,
                },
                "b_software": software,
                "b_created_at": created,
                "b_encoding_hex": hex_ids[row.encoding_profile_id],
            }
            updates.append(values)
        bind.execute(
            target.update()
            .where(target.c.id == sa.bindparam("b_id"))
            .values(
                {
                    name: sa.bindparam(f"b_{name}", type_=sa.JSON() if name in json_columns else None)
                    for name in columns
                }
            ),
            updates,
        )
        last = rows[-1].id
