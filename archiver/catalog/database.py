"""Opening the catalog: the engine, the schema gate, and migrations.

`open_catalog(url)` connects, and refuses a catalog whose schema revision is not this code's head
(telling the user to run `archiver db upgrade`), so the code never works on a half-migrated or
foreign schema. An empty database is brought to head at once: there is nothing in it to migrate.
Sessions are opened by callers (`with catalog.begin() as session:`), never inside queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from archiver.errors import CatalogUnreachable, ConfigError, SchemaMismatch

if TYPE_CHECKING:  # alembic takes a third of a second to import: only upgrades and mismatches need it
    from alembic.config import Config

# The schema revision this code reads and writes: the newest file in migrations/versions/. Named
# here so that opening a catalog needs no Alembic import; a new migration bumps it, and
# tests/test_migrations.py fails until it does.
SCHEMA_HEAD = "0007"


def migrations_dir() -> Path:
    """migrations/ (at the repository's top level), which the install maps to `archiver._migrations`:
    found without importing it, and no top-level `migrations` package is installed."""
    spec = find_spec("archiver._migrations")
    assert spec is not None and spec.submodule_search_locations, "archiver is installed without migrations/"
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at migrations/, optionally bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return SCHEMA_HEAD


def known_revisions() -> set[str]:
    """Every revision in migrations/versions/, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ConfigError(
            f"malformed database URL {url!r}: use e.g. sqlite:////path/catalog.db or "
            "postgresql+psycopg://user@host/db"
        ) from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (a mount) run while a sweep writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def compact_json(value: Any) -> str:
    """JSON columns without the spaces json.dumps puts after separators: events and records stay small."""
    return json.dumps(value, separators=(",", ":"))


def create_catalog_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver this project ships; SQLAlchemy's bare default is psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 30}, json_serializer=compact_json)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                parsed,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10},
                json_serializer=compact_json,
            )
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"unsupported database URL {parsed!r} ({exc}): use sqlite:// or postgresql://"
        ) from None
    return engine


def describe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return parse_url(url).render_as_string(hide_password=True)


@dataclass
class SchemaStatus:
    current: str | None
    head: str
    has_foreign_tables: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(connection: Connection) -> SchemaStatus:
    tables = set(inspect(connection).get_table_names())
    current = None
    if "alembic_version" in tables:  # read as Alembic's MigrationContext does, without importing it
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    tables.discard("alembic_version")
    return SchemaStatus(
        current=current, head=head_revision(), has_foreign_tables=current is None and bool(tables)
    )


def upgrade(connection: Connection, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


class Catalog:
    """An open catalog: an engine whose schema is known to be this code's."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """One transaction on the catalog database; failing to connect is one clear error."""
    engine = create_catalog_engine(url)
    try:
        connection = engine.connect()
    except (OperationalError, InterfaceError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise CatalogUnreachable(
            f"cannot open the catalog at {describe(url)}: {reason}; "
            "check ARCHIVER_DATABASE_URL (or ARCHIVER_HOME) and that the database is up"
        ) from None
    try:
        with connection.begin():
            yield connection
    finally:
        connection.close()
        engine.dispose()


def check_schema(status: SchemaStatus, url: str) -> None:
    """Raise SchemaMismatch unless the schema is exactly this code's head revision."""
    if status.up_to_date:
        return
    where = describe(url)
    if status.has_foreign_tables:
        raise SchemaMismatch(
            f"the database at {where} holds tables that are not an archiver catalog: "
            "point ARCHIVER_DATABASE_URL at an empty database"
        )
    if status.current in known_revisions():
        raise SchemaMismatch(
            f"the catalog at {where} is at schema revision {status.current}, this archiver needs "
            f"{status.head}: run `archiver db upgrade` (back up the catalog first)"
        )
    raise SchemaMismatch(
        f"the catalog at {where} was written by a newer archiver (schema revision {status.current}): "
        "upgrade archiver"
    )


def open_catalog(url: str) -> Catalog:
    """Open the catalog at `url`, initialising an empty database, refusing any other mismatch."""
    with connect(url) as connection:
        status = schema_status(connection)
        if status.current is None and not status.has_foreign_tables:
            upgrade(connection)
        else:
            check_schema(status, url)
    return Catalog(create_catalog_engine(url))
