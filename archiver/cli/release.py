"""`archiver release`: finish the swap for the approved assets a reviewed sweep kept hot."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from archiver.catalog import queries
from archiver.cli.app import App, cli, pass_app


@cli.command()
@click.argument("prefix", default="")
@click.option("--source", help="Only assets of this source URL.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per source.")
@pass_app
def release(app: App, prefix: str, source: str | None, as_json: bool) -> None:
    """Archive the approved assets whose key starts with PREFIX: their hot copies go.

    Only assets a person approved (`archiver review`) and a `sweep --require-review` vaulted, with
    every guard of a sweep: the vault copy's checksum asked again, the record journaled in the
    vault, and the hot object unchanged since it was verified (else it is rejected, and stays).
    """
    from archiver.sweep.run import release_approved

    with app.catalog.begin() as session:
        scope = queries.scoped_source(session, source)
        urls = sorted({a.source.url for a in queries.list_assets(session, prefix, scope)})
    settings = app.settings
    reports: list[dict[str, Any]] = []
    for url in urls:
        summary = release_approved(
            app.catalog,
            app.open_source(url),
            app.vault,
            prefix,
            lease=timedelta(minutes=settings.claim_lease_minutes),
            journal_storage_class=settings.vault_journal_storage_class,
        )
        reports.append(
            {
                "source": url,
                "released": summary.archived,
                "bytes_freed": summary.bytes_freed,
                "busy": summary.busy,
                "rejected": dict(summary.rejected),
                "not_deleted": dict(summary.not_deleted),
            }
        )
    for report in reports:
        if as_json:
            click.echo(json.dumps(report, sort_keys=True))
            continue
        kept = sum(report["not_deleted"].values()) + sum(report["rejected"].values())
        click.echo(
            f"{report['source']}: released {report['released']} approved assets "
            f"({report['bytes_freed']} bytes freed); kept hot: {kept}"
            + "".join(f", {n} {why}" for why, n in {**report["rejected"], **report["not_deleted"]}.items())
            + (f"; {report['busy']} held by a running sweep" if report["busy"] else "")
        )
    if not reports and not as_json:
        click.echo(f"nothing under {prefix!r} to release")
