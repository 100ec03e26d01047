"""`archiver review`: the review page (archiver/http/review/), its CSV batches and its static export.

Owns the command line: serve the page (loopback by default, the origin's helpers), or `--export`
the decisions as CSV, `--apply` a CSV, or write the page as files with `--html DIR`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archiver.cli.app import App, cli, pass_app
from archiver.http.review.items import REVIEW_STATES
from archiver.units import count

if TYPE_CHECKING:
    from archiver.http.review.service import ReviewService

log = logging.getLogger("archiver.review")


@cli.command()
@click.argument("prefix", default="")
@click.option("--source", help="Only assets of this source URL.")
@click.option(
    "--state",
    type=click.Choice(["all", *REVIEW_STATES]),
    default=None,
    help="Which assets: the page opens on these; --export and --html take only these [all].",
)
@click.option("--reviewer", help="Who decides (kept with each decision) [the OS user].")
@click.option("--host", help="Address to listen on [ARCHIVER_SERVE_HOST; 127.0.0.1].")
@click.option(
    "--port", type=int, default=8090, show_default=True, help="Port to listen on; 0 picks a free one."
)
@click.option(
    "--export",
    "export_to",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the decisions as CSV.",
)
@click.option(
    "--apply",
    "apply_from",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Apply a CSV's decisions (key,decision[,comment,source]): all of them, or none.",
)
@click.option(
    "--html",
    "html_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the page as static files.",
)
@pass_app
def review(
    app: App,
    prefix: str,
    source: str | None,
    state: str | None,
    reviewer: str | None,
    host: str | None,
    port: int,
    export_to: Path | None,
    apply_from: Path | None,
    html_dir: Path | None,
) -> None:
    """See, approve and reject what the gate accepted: original, render and their differences.

    Serves a keyboard-first page (j/k next/previous, a approve, r reject, f flip original and
    render) over the assets whose key starts with PREFIX. With --export, --apply or --html it
    writes or reads files instead. Decisions are kept in the catalog; `archiver release` then
    finishes the swap for the approved assets a `sweep --require-review` kept hot.
    """
    from archiver.http.review import batch, decisions, items
    from archiver.http.review.server import build

    if sum(x is not None for x in (export_to, apply_from, html_dir)) > 1:
        raise click.UsageError("choose one of --export, --apply and --html")
    who = reviewer or decisions.default_reviewer()
    states = () if state in (None, "all") else (str(state),)
    if apply_from is not None:
        wanted = batch.read_decisions(apply_from)
        if prefix or source:
            outside = [
                d
                for d in wanted
                if not d.key.startswith(prefix) or (source and d.source not in (None, source))
            ]
            if outside:
                raise click.UsageError(f"{outside[0].where}{outside[0].key} is outside PREFIX/--source")
            wanted = [d if d.source else replace(d, source=source) for d in wanted]
        service = build(app.settings, app.catalog, app.vault, app.open_source, reviewer=who)
        try:
            outcomes = decisions.apply(app.catalog, service.journal, wanted, who)
        finally:
            service.close()
        changed = [o for o in outcomes if o.changed]
        counts = {d: sum(o.decision == d for o in changed) for d in (decisions.APPROVED, decisions.REJECTED)}
        click.echo(
            f"applied {len(outcomes)} decisions from {apply_from} as {who}: {counts['approved']} approved, "
            f"{counts['rejected']} rejected, {len(outcomes) - len(changed)} already so"
        )
        return
    service = build(
        app.settings, app.catalog, app.vault, app.open_source, reviewer=who, prefix=prefix, source=source
    )
    try:
        if export_to is not None:
            chosen = items.select(service.items(), states, sort="key")
            export_to.write_text(batch.export_rows(chosen), encoding="utf-8")
            click.echo(
                f"wrote {count(len(chosen), 'asset')} to {export_to}: "
                "fill `decision` (approve/reject), then --apply"
            )
            return
        if html_dir is not None:
            from archiver.http.review.static import write_site

            index, written = write_site(service, html_dir, states)
            click.echo(f"wrote the review of {count(written, 'asset')} to {index}")
            return
        _serve(app, service, host, port, state)
    finally:
        service.close()


def _serve(app: App, service: ReviewService, host: str | None, port: int, state: str | None) -> None:
    from archiver.http.review.app import create_app
    from archiver.http.server import bind, serve_app, url_of

    app.log_to_stderr("archiver review", {"archiver": logging.INFO})
    web = create_app(service, state=state)
    sock = bind(host or app.settings.serve_host, port)
    log.info("review page on %s/ as %s (%d assets)", url_of(sock), service.reviewer, len(service.items()))
    with sock:
        serve_app(web, sock)
    log.info("stopped")
