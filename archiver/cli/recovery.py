"""Losing the catalog loses nothing: `db rebuild --from-vault`, `db backup`, `model fetch`, `fsck`.

Commands only: the rebuild is `archiver.rebuild`, the checks `archiver.fsck`, the journal and the
models in the vault `archiver.journal`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click

from archiver.catalog.database import describe, parse_url
from archiver.cli.app import App, cli, pass_app
from archiver.cli.db import db
from archiver.cli.model import model
from archiver.cli.progress import Bar
from archiver.errors import ConfigError, ExitCode


@db.command("rebuild")
@click.option(
    "--from-vault",
    "from_vault",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[VAULT]",
    help="Rebuild from this vault's journal (default: the configured vault).",
)
@click.option("--no-source-check", is_flag=True, help="Do not list the sources for hot copies still there.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def db_rebuild(app: App, from_vault: str | None, no_source_check: bool, as_json: bool) -> None:
    """Recreate the catalog (or catch it up) from the vault alone: sources, assets, states,
    records, vault locations, models. Into an existing catalog it merges: the newer wins."""
    from archiver.rebuild import rebuild

    if from_vault is None:
        raise click.UsageError("say where to rebuild from: --from-vault [VAULT]")
    from archiver.errors import NotFound
    from archiver.storage import parse_store_url

    url = from_vault or app.settings.vault_url
    kind, where, _ = parse_store_url(url)
    if kind != "s3" and not Path(where).expanduser().is_dir():
        # A mistyped path must not become a new, empty vault and an empty catalog.
        raise NotFound(
            f"no vault at {where}: check the path (a vault directory holds journal/ and originals/)"
        )
    vault = app.open_vault(url)
    report = rebuild(app.catalog, vault, None if no_source_check else app.open_source)
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True))
        return
    for warning in report.warnings:
        click.echo(f"archiver: warning: {warning}", err=True)
    states = ", ".join(f"{count} {state}" for state, count in sorted(report.states.items())) or "none"
    click.echo(
        f"rebuilt {describe(app.settings.catalog_url)} from {report.vault}: {report.segments} journal "
        f"segments, {report.entries} entries, {report.assets} assets ({report.created} created, "
        f"{report.updated} updated, {report.unchanged} unchanged; {states}) in {report.seconds:.2f} s"
    )
    for sha256 in report.models:
        click.echo(f"model {sha256}: if its files are gone, `archiver model fetch {sha256} DIR`")


@db.command("backup")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_app
def db_backup(app: App, file: Path) -> None:
    """Copy the SQLite catalog to FILE at one point in time, while it is in use (SQLite's online
    backup API). For PostgreSQL use pg_dump."""
    url = parse_url(app.settings.catalog_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ConfigError(
            f"the catalog at {describe(app.settings.catalog_url)} is not a SQLite file: "
            "back PostgreSQL up with pg_dump (e.g. pg_dump -Fc -f catalog.dump DBNAME)"
        )
    if file.exists():
        raise ConfigError(f"{file} exists: name a new file for the backup")
    app.catalog  # noqa: B018  (opens it: refuses a missing or foreign catalog first)
    with sqlite3.connect(f"file:{url.database}?mode=ro", uri=True) as source:
        target = sqlite3.connect(file)
        try:
            source.backup(target)
        finally:
            target.close()
    click.echo(f"catalog {url.database} backed up to {file} ({file.stat().st_size} bytes)")


@model.command("fetch")
@click.argument("sha256")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", help="Register it under this name (default: the name it had).")
@pass_app
def model_fetch(app: App, sha256: str, directory: Path, name: str | None) -> None:
    """Bring the model with registry hash SHA256 back from the vault into DIRECTORY and register it
    there (a model the catalog already knows by that hash now points at DIRECTORY)."""
    from archiver.catalog import queries
    from archiver.engine.registry import pipeline_class_of
    from archiver.journal import fetch_model

    metadata = fetch_model(app.vault, sha256.lower(), directory)
    path = str(directory.resolve())
    with app.catalog.begin() as session:
        row = queries.model_by_sha256(session, sha256.lower())
        if row is None:
            row = queries.add_model(
                session,
                name=name or metadata.get("archiver-model") or f"model-{sha256[:12]}",
                sha256=sha256.lower(),
                path=path,
                pipeline_class=pipeline_class_of(directory),
            )
        else:
            row.path = path
        click.echo(f"model {row.name!r}: {row.sha256} fetched into {path}")


class _Checked:
    """fsck's (done, total) callback on the shared progress bar, started at the first object."""

    def __init__(self) -> None:
        self._bar = Bar("checking vault objects", unit="obj")

    def __call__(self, done: int, total: int) -> None:
        if self._bar.total is None:
            self._bar.start(total)
        self._bar.update(done)
        if done == total:
            self._bar.stop()


@cli.command()
@click.argument("prefix", default="")
@click.option("--read-data", is_flag=True, help="Read and hash every object (thawing archived ones).")
@click.option(
    "--tier",
    type=click.Choice(["Expedited", "Standard", "Bulk"]),
    default="Bulk",
    show_default=True,
    help="Restore tier of the thaws --read-data asks for.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def fsck(app: App, prefix: str, read_data: bool, tier: str, as_json: bool) -> int:
    """Check that every archived asset under PREFIX has its vault copy with the right checksum,
    that the vault's journal and the catalog agree, and list orphans. Exit 0 when clean, 8 on any
    problem, 7 when only thaws are pending. Partial writes an interrupted command left (temporary
    files, incomplete uploads) are listed with how to remove them; they are not damage."""
    from archiver.fsck import KINDS
    from archiver.fsck import fsck as run_fsck

    report = run_fsck(
        app.catalog,
        app.vault,
        prefix=prefix,
        read_data=read_data,
        thaw_tier=tier,  # type: ignore[arg-type]
        progress=_Checked(),
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True))
    else:
        for finding in report.findings:
            click.echo(f"{finding.kind}\t{finding.where}\t{finding.detail}")
        checked = "read and hashed" if read_data else "checksums checked"
        click.echo(
            f"{report.objects} vault objects ({checked}), {report.assets} assets, "
            f"{report.journal_entries} journal entries: "
            + ("clean" if not report.findings else f"{len(report.findings)} problem(s)"),
            err=bool(report.findings),
        )
        for kind in sorted({f.kind for f in report.findings}):
            click.echo(f"  {kind}: {KINDS[kind]}", err=True)
        for left in report.leftovers:
            click.echo(f"leftover\t{left.where}\t{left.size} bytes, {left.last_modified:%Y-%m-%d %H:%M} UTC")
        if report.leftovers:
            click.echo(
                f"  leftover: {len(report.leftovers)} partial write(s) that an interrupted command left; "
                "nothing refers to them and nothing is damaged. Once no archiver command is writing "
                "to this vault, remove each: "
                + "; ".join(left.remove for left in report.leftovers[:3])
                + (" …" if len(report.leftovers) > 3 else ""),
                err=True,
            )
    if not report.findings:
        return ExitCode.OK
    return ExitCode.PENDING if report.pending_only else ExitCode.INTEGRITY
