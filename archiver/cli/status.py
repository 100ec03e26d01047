"""`archiver status`: assets and bytes by state."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from archiver.catalog.database import describe
from archiver.catalog.queries import state_totals
from archiver.cli.app import App, cli, pass_app


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show how many assets (and bytes) the catalog holds in each state."""
    with app.catalog.begin() as session:
        totals = state_totals(session)
    catalog_url = describe(app.settings.catalog_url)
    if as_json:
        report = {
            "catalog": catalog_url,
            "vault": app.settings.vault_url,
            "assets": sum(t.assets for t in totals),
            "bytes": sum(t.bytes for t in totals),
            "states": {t.state.value: {"assets": t.assets, "bytes": t.bytes} for t in totals},
        }
        click.echo(json.dumps(report, sort_keys=True))
        return
    table = Table()
    table.add_column("state")
    table.add_column("assets", justify="right")
    table.add_column("bytes", justify="right")
    for t in totals:
        table.add_row(t.state.value, str(t.assets), human_bytes(t.bytes))
    table.add_section()
    table.add_row("total", str(sum(t.assets for t in totals)), human_bytes(sum(t.bytes for t in totals)))
    console = Console()
    console.print(table)
    console.print(f"catalog: {catalog_url}", soft_wrap=True)
