"""`archiver sources` and `archiver sources forget URL`: the hot locations the catalog knows.

A source is an S3 bucket or a directory (an S3 prefix only selects keys: `s3://bucket/shoes` is the
bucket's source). Forgetting one drops the rows of images that were never archived (discovered,
candidates, rejected: they are still hot, and a later sweep finds them again); a source with any
asset that has a record or a vault copy is refused, whatever its state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from archiver.catalog import queries
from archiver.catalog.models import AssetState
from archiver.cli.app import App, canonical_source, cli, pass_app
from archiver.errors import SourceInUse
from archiver.units import count, human_bytes


@cli.group("sources", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per source.")
@click.pass_context
def sources(ctx: click.Context, as_json: bool) -> None:
    """List the sources swept, with their assets by state (`sources forget URL` drops one)."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    with app.catalog.begin() as session:
        found = queries.source_summaries(session, datetime.now(UTC))
    if as_json:
        for s in found:
            states = {state.value: s.states.get(state, 0) for state in AssetState}
            line = {"url": s.url, "assets": sum(s.states.values()), "bytes": s.bytes, "states": states}
            click.echo(json.dumps(line | {"kept": s.kept, "claimed": s.claimed}))
        return
    table = Table(caption=count(len(found), "source"))
    for column in ("source", "assets", "archived", "rejected", "other", "bytes"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for s in found:
        archived, rejected = s.states.get(AssetState.ARCHIVED, 0), s.states.get(AssetState.REJECTED, 0)
        total = sum(s.states.values())
        table.add_row(
            s.url,
            str(total),
            str(archived),
            str(rejected),
            str(total - archived - rejected),
            human_bytes(s.bytes),
        )
    Console().print(table)


@sources.command("forget")
@click.argument("url", callback=canonical_source)
@pass_app
def forget(app: App, url: str) -> None:
    """Drop source URL and its never-archived assets (discovered, candidate, rejected) from the catalog.

    Refused when any of its assets has a record or a vault copy, or a sweep is working on it."""
    with app.catalog.begin() as session:
        source = queries.scoped_source(session, url)
        assert source is not None
        (summary,) = [s for s in queries.source_summaries(session, datetime.now(UTC)) if s.id == source.id]
        if summary.kept:
            raise SourceInUse(
                f"{url} has {count(summary.kept, 'asset')} with a record or a vault copy "
                "(archived, restored or on their way): it cannot be forgotten; "
                "`archiver ls --source URL` lists them"
            )
        if summary.claimed:
            raise SourceInUse(
                f"a sweep is working on {url} ({count(summary.claimed, 'asset')} claimed): try again after it"
            )
        gone = queries.forget_source(session, source)
    click.echo(f"forgot {url} and its {count(gone, 'asset')} (none was archived; their images are still hot)")
