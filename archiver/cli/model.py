"""`archiver model`: register diffusers pipelines and list them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from archiver.catalog.queries import list_models
from archiver.cli.app import App, cli, pass_app


@cli.group()
def model() -> None:
    """Models that regenerate images: register and list them."""


@model.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name to refer to the model by (e.g. in `sweep --model`).")
@pass_app
def model_add(app: App, path: Path, name: str) -> None:
    """Register the diffusers pipeline directory PATH (save_pretrained layout, safetensors only)."""
    from archiver.engine.registry import register_model

    with app.catalog.begin() as session:
        row = register_model(session, path, name)
        click.echo(f"model {row.name!r}: {row.pipeline_class} at {row.path}, sha256 {row.sha256}")


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@pass_app
def model_list(app: App, as_json: bool) -> None:
    """List registered models with their hashes."""
    with app.catalog.begin() as session:
        rows = [(m.name, m.pipeline_class, m.sha256, m.path) for m in list_models(session)]
    for name, pipeline_class, sha256, path in rows:
        if as_json:
            click.echo(
                json.dumps({"name": name, "pipeline_class": pipeline_class, "sha256": sha256, "path": path})
            )
        else:
            click.echo(f"{name}\t{pipeline_class}\t{sha256[:16]}…\t{path}")
    if not rows and not as_json:
        click.echo("no models registered: `archiver model add PATH --name NAME`", err=True)


DEFAULT_SAMPLE = 8  # records `archiver model check` renders unless told otherwise


@model.command("check")
@click.argument("name")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Records to render (default 8; with --backfill, all).",
)
@click.option("--all", "every", is_flag=True, help="Render every archived record of the model.")
@click.option(
    "--backfill",
    is_flag=True,
    help="Render every record that has no sketch yet and store one from each exact render "
    "(records made before sketches; run it where the records still render exactly).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@pass_app
def model_check(app: App, name: str, sample: int | None, every: bool, backfill: bool, as_json: bool) -> int:
    """Render a sample of model NAME's records on this machine and say, per record, whether the
    render is the record's exact bytes, the same image within the sketch's tolerance (with the
    estimated PSNR), or refused. Run it before moving a mount or an origin to new hardware.
    Records the result for this device (`archiver status` lists them). Exits 8 if any is refused."""
    from rich.console import Console
    from rich.table import Table

    from archiver.errors import ExitCode
    from archiver.modelcheck import CheckedRecord, check_model
    from archiver.read.reader import AssetReader

    reader = AssetReader(app.catalog, app.vault, device=app.settings.resolved_device())
    console = Console(stderr=True)

    def progress(checked: CheckedRecord) -> None:
        if not as_json:
            psnr = f" {checked.psnr:.1f} dB" if checked.psnr is not None else ""
            console.print(f"{checked.key}: {checked.outcome}{psnr}", highlight=False, soft_wrap=True)

    if sample is None and not (every or backfill):
        sample = DEFAULT_SAMPLE
    result = check_model(
        app.catalog, reader, name, sample=None if every else sample, backfill=backfill, progress=progress
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
    else:
        table = Table(title=f"model {name} on this device ({result.fingerprint[:12]}…)")
        columns = (
            "sampled",
            "exact",
            "within tolerance",
            "refused",
            "backfilled",
            "lowest PSNR",
            "render (median)",
        )
        for column in columns:
            table.add_column(column, justify="right")
        lowest, seconds = result.lowest_psnr, result.median_seconds
        table.add_row(
            str(len(result.records)),
            str(result.count("exact")),
            str(result.count("within-tolerance")),
            str(result.count("refused")),
            str(sum(r.backfilled for r in result.records)),
            "-" if lowest is None else f"{lowest:.1f} dB",
            "-" if seconds is None else f"{seconds * 1000:.1f} ms at {result.median_steps} steps",
        )
        Console().print(table)
        for refused in (r for r in result.records if r.outcome == "refused"):
            click.echo(f"refused: {refused.key}: {refused.detail}", err=True)
        if not result.records:
            click.echo(f"model {name} has no archived records to check", err=True)
    return ExitCode.INTEGRITY if result.count("refused") else ExitCode.OK
