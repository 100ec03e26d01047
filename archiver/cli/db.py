"""`archiver db`: catalog schema maintenance (Alembic migrations)."""

from __future__ import annotations

import click

from archiver.catalog.database import check_schema, connect, describe, schema_status, upgrade
from archiver.cli.app import App, cli, pass_app
from archiver.errors import SchemaMismatch


@cli.group()
def db() -> None:
    """Catalog schema: check it, migrate it."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Migrate the catalog to this version's schema (safe to run again)."""
    url = app.settings.catalog_url
    if app.settings.database_url is None:
        app.settings.ensure_home()  # the embedded catalog lives there
    with connect(url) as connection:
        before = schema_status(connection)
        if before.has_foreign_tables:
            check_schema(before, url)  # raises: not ours to migrate
        try:
            upgrade(connection)
        except Exception as exc:
            if "Can't locate revision" in str(exc):
                check_schema(before, url)  # a newer archiver wrote it: raises with what to do
            raise
    if before.current == before.head:
        click.echo(f"catalog {describe(url)} is already at schema {before.head}")
    else:
        click.echo(
            f"catalog {describe(url)} upgraded from schema {before.current or '(empty)'} to {before.head}"
        )


@db.command("check")
@pass_app
def db_check(app: App) -> None:
    """Say whether the catalog's schema is the one this version uses (exit 4 if not)."""
    url = app.settings.catalog_url
    with connect(url) as connection:
        status = schema_status(connection)
    if status.current is None and not status.has_foreign_tables:
        raise SchemaMismatch(f"the catalog at {describe(url)} is empty: run `archiver db upgrade`")
    check_schema(status, url)
    click.echo(f"catalog {describe(url)} is at schema {status.current} (current)")
