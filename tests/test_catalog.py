"""The catalog on SQLite and PostgreSQL: the schema gate, typed rows, per-state totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from sqlalchemy import select, text

from archiver.catalog import database
from archiver.catalog.database import connect, open_catalog
from archiver.catalog.models import ASSET_STATES, Asset, AssetState, Event, MetricValues
from archiver.catalog.queries import (
    add_asset,
    events_for,
    get_or_add_source,
    observe,
    record_event,
    set_state,
    state_totals,
)
from archiver.errors import CatalogUnreachable, ConfigError, SchemaMismatch


def test_empty_database_is_initialised_and_empty(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        totals = state_totals(session)
    catalog.close()
    assert [t.state for t in totals] == list(AssetState)
    assert all(t.assets == 0 and t.bytes == 0 for t in totals)


def test_rows_round_trip_with_aware_times_and_totals(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    seen = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with catalog.begin() as session:
        source = get_or_add_source(session, "s3://bucket/shoes")
        assert get_or_add_source(session, "s3://bucket/shoes") is source
        for i, (state, size) in enumerate(
            [(AssetState.ARCHIVED, 100), (AssetState.ARCHIVED, 50), (AssetState.REJECTED, 7)]
        ):
            asset = Asset(
                source=source, key=f"a/{i}.jpg", state=state, size=size, last_modified=seen, etag=f'"{i}"'
            )
            session.add(asset)
            session.flush()
            record_event(session, "discovered", asset, size=size)
    with catalog.begin() as session:
        totals = {t.state: (t.assets, t.bytes) for t in state_totals(session)}
        first = session.scalars(select(Asset).where(Asset.key == "a/0.jpg")).one()
        assert first.last_modified == seen and first.last_modified.tzinfo is not None
        assert [e.detail for e in events_for(session, first)] == [{"size": 100}]
    catalog.close()
    assert totals[AssetState.ARCHIVED] == (2, 150)
    assert totals[AssetState.REJECTED] == (1, 7)
    assert totals[AssetState.VAULTED] == (0, 0)


def test_naive_datetimes_are_refused(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    with pytest.raises(Exception, match="naive datetime"), catalog.begin() as session:
        session.add(Event(kind="discovered", at=datetime(2026, 1, 1)))
        session.flush()
    catalog.close()


def test_a_failed_transaction_leaves_nothing(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    with pytest.raises(RuntimeError), catalog.begin() as session:
        get_or_add_source(session, "/data/shoes")
        raise RuntimeError("crash between steps")
    with catalog.begin() as session:
        assert session.execute(text("select count(*) from sources")).scalar_one() == 0
    catalog.close()


def test_catalog_written_by_newer_archiver_is_refused(catalog_url: str) -> None:
    open_catalog(catalog_url).close()
    with connect(catalog_url) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    with pytest.raises(SchemaMismatch, match="newer archiver"):
        open_catalog(catalog_url)


def test_catalog_behind_the_code_is_refused_with_upgrade_hint(catalog_url: str) -> None:
    open_catalog(catalog_url).close()
    # Pretend this code has a newer head than the catalog: the catalog is then one migration behind.
    with (
        mock.patch.object(database, "head_revision", return_value="0002_next"),
        pytest.raises(SchemaMismatch, match="run `archiver db upgrade`"),
    ):
        open_catalog(catalog_url)


def test_foreign_tables_are_refused(catalog_url: str) -> None:
    with connect(catalog_url) as conn:
        conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY)"))
    with pytest.raises(SchemaMismatch, match="not an archiver catalog"):
        open_catalog(catalog_url)


def test_unreachable_postgres_is_one_clear_error() -> None:
    with pytest.raises(CatalogUnreachable, match="cannot open the catalog at postgresql"):
        open_catalog("postgresql://nobody:secret@127.0.0.1:9/catalog")


def test_password_never_appears_in_messages() -> None:
    with pytest.raises(CatalogUnreachable) as caught:
        open_catalog("postgresql://nobody:hunter2@127.0.0.1:9/catalog")
    assert "hunter2" not in str(caught.value)


def test_sqlite_in_missing_directory_is_unreachable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogUnreachable, match="unable to open database file"):
        open_catalog(f"sqlite:///{tmp_path / 'missing' / 'catalog.db'}")


@pytest.mark.parametrize("url", ["not a url", "postgresql://host:notaport/db", "mysqlx://h/db"])
def test_malformed_or_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_catalog(url)


def test_claim_expiry_times_compare(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    now = datetime.now(UTC)
    with catalog.begin() as session:
        source = get_or_add_source(session, "/d")
        session.add(
            Asset(
                source=source,
                key="k",
                size=1,
                last_modified=now,
                claimed_by="w1",
                claimed_until=now + timedelta(minutes=5),
            )
        )
    with catalog.begin() as session:
        expired = session.scalars(select(Asset).where(Asset.claimed_until < now)).all()
        live = session.scalars(select(Asset).where(Asset.claimed_until > now)).all()
    catalog.close()
    assert (len(expired), len(live)) == (0, 1)


def test_a_changed_object_keeps_what_it_replaced_in_its_history(catalog_url: str) -> None:
    """The asset row holds the latest size and ETag; `discovered` does not repeat them, and the
    event that changes them keeps the ones it replaced, so no earlier version is forgotten."""
    catalog = open_catalog(catalog_url)
    seen = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with catalog.begin() as session:
        source = get_or_add_source(session, "s3://bucket")
        asset = add_asset(session, source, key="shoes/red.png", size=100, etag='"a"', last_modified=seen)
        assert observe(asset, size=100, etag='"a"', last_modified=seen) == {}
        was = observe(asset, size=120, etag='"b"', last_modified=seen + timedelta(days=1))
        assert was == {"was_size": 100, "was_etag": '"a"'}
        set_state(session, asset, AssetState.CANDIDATE, **was)
    with catalog.begin() as session:
        asset = session.scalars(select(Asset)).one()
        assert (asset.size, asset.etag, asset.last_modified) == (120, '"b"', seen + timedelta(days=1))
        assert [(e.kind, e.detail) for e in events_for(session, asset)] == [
            ("discovered", {}),
            ("candidate", {"was_size": 100, "was_etag": '"a"'}),
        ]
        # stored as codes, an empty detail as NULL
        rows = session.execute(text("SELECT kind, detail FROM events ORDER BY id")).all()
        assert [row[0] for row in rows] == [1, 2] and rows[0][1] is None
    catalog.close()


def test_an_event_kind_without_a_code_is_refused_with_what_to_do(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    refused = pytest.raises(Exception, match="'teleported' has no code in the catalog: add it at the end")
    with refused, catalog.begin() as session:
        session.add(Event(kind="teleported"))
        session.flush()
    catalog.close()


def test_every_asset_state_has_a_code() -> None:
    assert set(ASSET_STATES) == {state.value for state in AssetState}


def test_metric_values_are_float32_that_read_back_as_the_record_kept_them() -> None:
    values = [True, False, None, 0.0005934, 38.98, 1e9, -1e9, 25.72, 0.0]
    stored = MetricValues().process_bind_param(values, dialect=None)  # type: ignore[arg-type]
    assert stored is not None and len(stored) == 4 * len(values)
    assert MetricValues().process_result_value(stored, dialect=None) == values  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be finite"):
        MetricValues().process_bind_param([float("nan")], dialect=None)  # type: ignore[arg-type]
