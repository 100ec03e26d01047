"""`archiver edge`: export records for edge key-value stores, and merge deltas into a bundle."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from archiver.cli.app import App, canonical_source, cli, pass_app
from archiver.edge.bundle import apply_delta
from archiver.edge.export import FORMATS, Scope, export, write


@cli.group()
def edge() -> None:
    """Records for edge key-value stores: export them (whole, or the changes since a cursor), and
    keep a bundle in sync with deltas. See docs/architecture.md, "Edge export"."""


@edge.command("export")
@click.argument("prefix", default="")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Directory to write into."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="bundle", show_default=True)
@click.option(
    "--since", type=click.IntRange(min=0), help="Only what changed after this cursor (an event id)."
)
@click.option("--source", callback=canonical_source, help="Only assets of this source URL.")
@click.option(
    "--url-prefix",
    default="/",
    show_default=True,
    help="URL path the archive is served under: an asset KEY is requested at URL-PREFIX + KEY.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def export_command(
    app: App,
    prefix: str,
    out: Path,
    fmt: str,
    since: int | None,
    source: str | None,
    url_prefix: str,
    as_json: bool,
) -> None:
    """Export the archived assets whose key starts with PREFIX: a compact record per asset under the
    hash of its request path, the profiles and models they name, the zstd dictionary (never a model)."""
    scope = Scope(url_prefix=url_prefix, key_prefix=prefix, source=source)
    result = export(app.catalog, scope, since, approved_only=app.settings.review_required)
    files = write(result, out, fmt)
    summary = {
        "format": fmt,
        "files": [str(f) for f in files],
        "bytes": sum(f.stat().st_size for f in files),
        "records": result.records,
        "tombstones": len(result.tombstones),
        "since": since,
        "cursor": result.cursor,
        "dictionary": result.dictionary.dict_id if result.dictionary else None,
        "note": result.note,
    }
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    what = "changes" if since is not None else "archive"
    click.echo(
        f"exported the {what}: {result.records} records, {len(result.tombstones)} tombstones, "
        f"events up to {result.cursor}; {summary['bytes']} bytes in {len(files)} file(s)"
    )
    for path in files:
        click.echo(f"  {path}")
    click.echo(result.note)
    again = [
        "archiver",
        "edge",
        "export",
        prefix,
        "--out",
        str(out),
        "--format",
        fmt,
        "--since",
        str(result.cursor),
    ]
    again += ["--source", source] if source else []
    again += ["--url-prefix", url_prefix] if url_prefix != "/" else []
    click.echo("next delta: " + shlex.join(part for part in again if part))


@edge.command("apply")
@click.argument("delta", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--bundle", "bundle", required=True, type=click.Path(path_type=Path, dir_okay=False))
@pass_app
def apply_command(app: App, delta: Path, bundle: Path) -> None:
    """Merge the delta bundle DELTA (`archiver edge export --since`) into the full bundle --bundle.
    Applying a delta twice changes nothing."""
    applied = apply_delta(delta, bundle)
    if not applied.changed:
        click.echo(f"{bundle} already holds {delta} (it is at event {applied.cursor}): nothing changed")
        return
    click.echo(
        f"{bundle}: {applied.put} entries written, {applied.deleted} records forgotten, "
        f"{applied.collected} unused profiles or dictionaries removed; now at event {applied.cursor}"
    )
