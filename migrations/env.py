"""Alembic environment: runs migrations on the connection archiver hands in, or on a URL.

`archiver db upgrade` passes an open connection (config.attributes["connection"]). The plain
`alembic upgrade head` command (alembic.ini at the repository root) takes the URL from
`-x url=...`, else from archiver's settings (ARCHIVER_DATABASE_URL, else the embedded catalog).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from archiver.catalog.models import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    from archiver.catalog.database import connect
    from archiver.settings import load_settings

    url = context.get_x_argument(as_dictionary=True).get("url") or load_settings().catalog_url
    with connect(url) as opened:
        run_on(opened)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_online()
