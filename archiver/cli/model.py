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
