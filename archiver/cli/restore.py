"""`archiver restore`: bring archived assets back hot, rehydrated or as the vault original."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from archiver.catalog import queries
from archiver.catalog.models import RestoreMode
from archiver.cli.app import App, canonical_source, cli, pass_app
from archiver.cli.progress import Bar
from archiver.errors import ExitCode, NotFound


class DefaultGroup(click.Group):
    """A group whose unknown first word is an argument of its default command: `restore KEY`
    requests, `restore status [KEY]` reports."""

    default_command = "request"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """`restore --help` shows the default command's options too: they are what `restore KEY`
        takes (--prefix, --original, --tier, --wait), and the command itself is not listed."""
        command = self.commands[self.default_command]
        sub = click.Context(command, info_name=self.default_command, parent=ctx)
        records = [
            record
            for param in command.get_params(sub)
            if isinstance(param, click.Option)
            and "--help" not in param.opts
            and (record := param.get_help_record(sub)) is not None
        ]
        with formatter.section("Options of `restore KEY`"):
            formatter.write_dl(records)
        super().format_options(ctx, formatter)


@cli.group(cls=DefaultGroup)
def restore() -> None:
    """Bring archived assets back to their hot location.

    \b
    archiver restore KEY [--prefix P] [--original --tier T --days N] [--wait]
    archiver restore status [KEY]
    """


def _job_rows(jobs: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "job": j.id,
            "key": j.key,
            "source": j.source,
            "mode": j.mode,
            "tier": j.tier,
            "state": j.state,
            "reason": j.reason,
        }
        for j in jobs
    ]


def _print(jobs: list[Any], as_json: bool, already: list[dict[str, str]] | None = None) -> None:
    """The jobs as a table (or JSON); `already`: the assets that were back hot as asked, each with
    how ("rehydrated" or "original"), for which no job ran."""
    if as_json:
        doc: dict[str, Any] = {"jobs": _job_rows(jobs)}
        if already is not None:
            doc["already_restored"] = already
        click.echo(json.dumps(doc, sort_keys=True))
        return
    for item in already or []:
        click.echo(
            f"{item['key']} is already restored ({item['restored']}) at its hot location in "
            f"{item['source']}: nothing to do"
        )
    if not jobs and already:
        return
    table = Table()
    for column in ("job", "key", "mode", "tier", "state", "reason"):
        table.add_column(column)
    for row in _job_rows(jobs):
        table.add_row(
            str(row["job"]), row["key"], row["mode"], row["tier"] or "", row["state"], row["reason"] or ""
        )
    Console().print(table)


@restore.command("request", hidden=True)
@click.argument("key", required=False)
@click.option("--prefix", help="Restore every archived asset whose key starts with this.")
@click.option(
    "--source",
    callback=canonical_source,
    help="Only assets of this source URL (when a key exists in several, the oldest source's otherwise).",
)
@click.option("--original", is_flag=True, help="The byte-exact original from the vault (else: rehydrate).")
@click.option(
    "--tier",
    type=click.Choice(["Expedited", "Standard", "Bulk"]),
    default="Standard",
    show_default=True,
    help="Archive retrieval tier, with --original.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=7,
    show_default=True,
    help="How long the vault keeps its restored copy, with --original.",
)
@click.option("--wait", is_flag=True, help="Poll until every job is done (bounded backoff).")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds (exit 7).")
@click.option("--poll", type=float, default=2.0, show_default=True, help="First polling interval, seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def restore_request(
    app: App,
    key: str | None,
    prefix: str | None,
    source: str | None,
    original: bool,
    tier: str,
    days: int,
    wait: bool,
    timeout: float | None,
    poll: float,
    as_json: bool,
) -> int:
    """Restore KEY (or every asset under --prefix); exit 7 while a job is still pending.

    An asset already back at its key as asked (its restored copy unchanged there) is reported as
    already restored, with exit 0, and is not rendered or thawed again; an original asked for
    where a rehydrated copy is hot replaces that copy with the original."""
    from archiver.restore.jobs import already_restored, choose_restorable

    if (key is None) == (prefix is None):
        raise click.UsageError("give exactly one of KEY or --prefix")
    mode = RestoreMode.ORIGINAL if original else RestoreMode.REHYDRATE
    with app.catalog.begin() as session:
        chosen = choose_restorable(
            session, key=key, prefix=prefix, scope=queries.scoped_source(session, source)
        )
        already: list[dict[str, str]] = []
        job_ids = []
        for a in chosen.assets:
            how = already_restored(a, app.open_source(a.source.url), mode)
            if how is not None:  # asking again renders or thaws nothing
                already.append({"key": a.key, "source": a.source.url, "restored": how})
                continue
            job_ids.append(
                queries.request_restore(
                    session, a, mode, tier=tier if original else None, days=days if original else None
                ).id
            )
    also = chosen.note
    if also and not as_json:
        Console(stderr=True).print(also, highlight=False, soft_wrap=True)
    quiet = as_json or app.quiet
    jobs = _run(app, job_ids, wait=wait, timeout=timeout, poll=poll, quiet=quiet) if job_ids else []
    _print(jobs, as_json, already)
    failed = [j for j in jobs if j.state == "failed"]
    if failed:
        return max(j.exit_code or ExitCode.FAILURE for j in failed)
    return ExitCode.OK if all(j.finished for j in jobs) else ExitCode.PENDING


def _run(
    app: App, job_ids: list[int], *, wait: bool, timeout: float | None, poll: float, quiet: bool
) -> list[Any]:
    from archiver.read.reader import AssetReader
    from archiver.restore.run import RestoreRunner, poll_until_done

    runner = RestoreRunner(
        app.catalog,
        AssetReader(app.catalog, app.vault, app.settings.resolved_device()),
        app.open_source,
        journal_storage_class=app.settings.vault_journal_storage_class,
    )
    console = Console(stderr=True)

    def advance(passes: int) -> list[Any]:
        # A prefix restores one asset after another: progress per job (stderr; none for one key).
        with Bar("restoring" if passes == 1 else "checking restores", unit="jobs") as bar:
            if len(job_ids) > 1:
                bar.start(len(job_ids))
            jobs = []
            for job_id in job_ids:
                (job,) = runner.advance([job_id])
                jobs.append(job)
                bar.advance(job.key, job.state != "failed")
        return jobs

    def waiting(jobs: list[Any], interval: float) -> None:
        if not quiet:
            pending = sum(1 for j in jobs if not j.finished)
            console.print(
                f"{len(jobs) - pending}/{len(jobs)} done, {pending} waiting on the vault; "
                f"next check in {interval:.0f} s"
            )

    return poll_until_done(advance, wait=wait, timeout=timeout, poll=poll, on_wait=waiting)


@restore.command("status")
@click.argument("key", required=False)
@click.option("--open", "open_only", is_flag=True, help="Only jobs not yet done or failed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def restore_status(app: App, key: str | None, open_only: bool, as_json: bool) -> None:
    """List restore jobs (of KEY, or all)."""
    from archiver.restore.run import view

    with app.catalog.begin() as session:
        ids = None if key is None else [a.id for a in queries.assets_with_key(session, key)]
        if ids == []:
            raise NotFound(f"no asset {key!r} in the catalog")
        jobs = [view(j) for j in queries.restore_jobs(session, ids, open_only=open_only)]
    _print(jobs, as_json)
