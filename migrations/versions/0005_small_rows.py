"""Smaller rows (issue 11): names as codes, metrics as float32, no empty details, records by asset.

- `assets.state` and `events.kind` hold their name's code (`archiver.catalog.models.ASSET_STATES`,
  `EVENT_KINDS`, 1-based; the lists are copied below as this revision knows them): a small
  integer where the name took 7-19 bytes, in the row and again in its index.
- `records.metrics` holds the gate's metric values as little-endian float32 (`MetricValues`: None,
  True and False as NaNs with their own payloads) where it held a JSON list, 40 bytes for ten
  values instead of about 70.
- `events.detail` is NULL where it was `{}`.
- `records` are keyed by their asset's id (one record per asset already): the record's own id
  column and the unique index on `asset_id` go (about 12 bytes a record). On SQLite the key is the
  rowid.

Existing `discovered` events keep the size and ETag they were written with (events are never
rewritten); new ones leave them to the asset row, and an event that changes them says what they
replaced (`queries.observe`). An event kind or state this revision does not know stops the upgrade
with its name, before anything is written. The downgrade restores names, JSON lists, `{}` and record ids (each
record's old id is gone: it becomes its asset's id, and PostgreSQL's sequence continues after it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import math
import struct
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# As archiver.catalog.models had them at this revision (a migration never imports the models).
ASSET_STATES = ("discovered", "candidate", "verified", "vaulted", "archived", "rejected", "restored")
EVENT_KINDS = (
    *ASSET_STATES,
    "restore-requested",
    "restore-in_progress",
    "restore-available",
    "restore-copied",
    "restore-done",
    "restore-failed",
    "held-for-review",
    "reviewed",
    "rebuilt",
)
METRIC_DIGITS = 4
SPECIAL = {None: 0x7FC00000, True: 0x7FC00001, False: 0x7FC00002}
BATCH = 5000


def _foreign_keys_off(bind: Connection) -> None:
    """SQLite: batch mode rebuilds tables that others refer to; the pragma takes only here, before
    the migration's first statement (the upgrade's checks run them again at the end)."""
    bind.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]


def _check_known(bind: Connection, table: str, column: str, names: tuple[str, ...]) -> None:
    found = {row[0] for row in bind.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}"))}
    unknown = sorted(str(name) for name in found - set(names))
    if unknown:
        raise RuntimeError(
            f"{table}.{column} holds {', '.join(unknown)}, which this revision has no code for: "
            "upgrade with the archiver that wrote them"
        )


def _case(column: str, names: tuple[str, ...], *, to_code: bool) -> str:
    """A CASE expression mapping names to codes or back (the names are this file's constants)."""
    pairs = (
        (f"'{name}'", str(code)) if to_code else (str(code), f"'{name}'")
        for code, name in enumerate(names, start=1)
    )
    return "CASE " + column + " " + " ".join(f"WHEN {a} THEN {b}" for a, b in pairs) + " END"


def _recode(bind: Connection, table: str, column: str, names: tuple[str, ...], *, to_code: bool) -> None:
    text_length = 32 if column == "state" else 64  # as revisions 0001-0004 declared them
    new_type: sa.types.TypeEngine[Any] = sa.SmallInteger() if to_code else sa.String(length=text_length)
    mapping = _case(column, names, to_code=to_code)
    if bind.dialect.name == "postgresql":
        using = f"({mapping})::smallint" if to_code else f"({mapping})"
        op.alter_column(table, column, type_=new_type, postgresql_using=using)
        return
    # SQLite keeps what it is given (a code written into the old text column is text); the rebuild
    # with the new type converts it by the column's affinity.
    bind.execute(sa.text(f"UPDATE {table} SET {column} = {mapping}"))
    with op.batch_alter_table(table) as batch:
        batch.alter_column(column, type_=new_type, existing_nullable=False)


def _pack(values: list[Any]) -> bytes:
    words = []
    for value in values:
        if value is None or isinstance(value, bool):
            words.append(struct.pack("<I", SPECIAL[value]))
        else:
            number = float(value)
            if not math.isfinite(number):
                raise RuntimeError(f"a record's metric value is not finite: {value!r}")
            words.append(struct.pack("<f", number))
    return b"".join(words)


def _unpack(data: bytes) -> list[Any]:
    by_bits = {bits: value for value, bits in SPECIAL.items()}
    values: list[Any] = []
    for (bits,) in struct.iter_unpack("<I", bytes(data)):
        if bits in by_bits:
            values.append(by_bits[bits])
        else:
            (number,) = struct.unpack("<f", struct.pack("<I", bits))
            values.append(float(f"{number:.{METRIC_DIGITS}g}"))
    return values


def _convert_metrics(bind: Connection, *, to_binary: bool) -> None:
    """Fill `metric_values` from `metrics` (or back), a page of records at a time."""
    records = sa.table(
        "records",
        sa.column("asset_id", sa.Integer),
        sa.column("metrics", sa.LargeBinary if not to_binary else sa.JSON),
        sa.column("metric_values", sa.JSON if not to_binary else sa.LargeBinary),
    )
    after = 0
    while True:
        rows = bind.execute(
            sa.select(records.c.asset_id, records.c.metrics)
            .where(records.c.asset_id > after)
            .order_by(records.c.asset_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            records.update().where(records.c.asset_id == sa.bindparam("record_of")),
            [
                {"record_of": asset_id, "metric_values": _pack(metrics) if to_binary else _unpack(metrics)}
                for asset_id, metrics in rows
            ],
        )
        after = rows[-1][0]


def _swap_metrics(bind: Connection, *, to_binary: bool) -> None:
    new_type: sa.types.TypeEngine[Any] = sa.LargeBinary() if to_binary else sa.JSON()
    op.add_column("records", sa.Column("metric_values", new_type, nullable=True))
    _convert_metrics(bind, to_binary=to_binary)
    with op.batch_alter_table("records") as batch:
        batch.drop_column("metrics")
        batch.alter_column("metric_values", new_column_name="metrics", existing_type=new_type, nullable=False)


def _empty_details(bind: Connection, *, to_null: bool) -> None:
    text = "detail::text" if bind.dialect.name == "postgresql" else "detail"
    if to_null:
        with op.batch_alter_table("events") as batch:
            batch.alter_column("detail", existing_type=sa.JSON(), nullable=True)
        bind.execute(sa.text(f"UPDATE events SET detail = NULL WHERE {text} = '{{}}'"))
    else:
        bind.execute(sa.text("UPDATE events SET detail = '{}' WHERE detail IS NULL"))
        with op.batch_alter_table("events") as batch:
            batch.alter_column("detail", existing_type=sa.JSON(), nullable=False)


def _key_records_by_asset(bind: Connection) -> None:
    if bind.dialect.name == "postgresql":
        op.drop_constraint("pk_records", "records", type_="primary")
        op.drop_constraint("uq_records_asset_id", "records", type_="unique")
        op.drop_column("records", "id")  # and its sequence, which it owns
        op.create_primary_key("pk_records", "records", ["asset_id"])
        return
    with op.batch_alter_table("records", recreate="always") as batch:
        batch.drop_constraint("uq_records_asset_id", type_="unique")
        batch.drop_column("id")
        batch.create_primary_key("pk_records", ["asset_id"])


def _give_records_ids(bind: Connection) -> None:
    op.add_column("records", sa.Column("id", sa.Integer(), nullable=True))
    bind.execute(sa.text("UPDATE records SET id = asset_id"))
    if bind.dialect.name == "postgresql":
        op.drop_constraint("pk_records", "records", type_="primary")
        op.alter_column("records", "id", existing_type=sa.Integer(), nullable=False)
        op.create_primary_key("pk_records", "records", ["id"])
        op.create_unique_constraint("uq_records_asset_id", "records", ["asset_id"])
        op.execute("CREATE SEQUENCE records_id_seq OWNED BY records.id")
        op.execute("SELECT setval('records_id_seq', COALESCE((SELECT max(id) FROM records), 0) + 1, false)")
        op.execute("ALTER TABLE records ALTER COLUMN id SET DEFAULT nextval('records_id_seq')")
        return
    with op.batch_alter_table("records", recreate="always") as batch:
        batch.drop_constraint("pk_records", type_="primary")
        batch.alter_column("id", existing_type=sa.Integer(), nullable=False)
        batch.create_primary_key("pk_records", ["id"])
        batch.create_unique_constraint("uq_records_asset_id", ["asset_id"])


def _check_foreign_keys(bind: Connection) -> None:
    broken = bind.execute(sa.text("PRAGMA foreign_key_check")).all()
    if broken:
        raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys_off(bind)
    _check_known(bind, "assets", "state", ASSET_STATES)
    _check_known(bind, "events", "kind", EVENT_KINDS)
    _recode(bind, "assets", "state", ASSET_STATES, to_code=True)
    _recode(bind, "events", "kind", EVENT_KINDS, to_code=True)
    _empty_details(bind, to_null=True)
    _swap_metrics(bind, to_binary=True)
    _key_records_by_asset(bind)
    if sqlite:
        _check_foreign_keys(bind)


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys_off(bind)
    _give_records_ids(bind)
    _swap_metrics(bind, to_binary=False)
    _empty_details(bind, to_null=False)
    _recode(bind, "events", "kind", EVENT_KINDS, to_code=False)
    _recode(bind, "assets", "state", ASSET_STATES, to_code=False)
    if sqlite:
        _check_foreign_keys(bind)
