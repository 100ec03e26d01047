"""`archiver config show`: every setting's effective value and where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from archiver.cli.app import App, cli, pass_app


@cli.group()
def config() -> None:
    """The effective settings (command line > ARCHIVER_* environment > config file > defaults)."""


def _shown(name: str, value: Any, app: App) -> Any:
    """A setting's value as shown: paths as text, where a default hangs off the home the path it
    resolves to, and a database URL's password hidden."""
    from archiver.catalog.database import describe

    settings = app.settings
    if name == "database_url":
        return describe(settings.catalog_url)
    if name == "vault":
        return settings.vault_url
    if name == "config_file" and value is None:
        from archiver.settings import config_file_path

        return str(config_file_path(None)[0])
    return str(value) if isinstance(value, Path) else value


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def config_show(app: App, as_json: bool) -> None:
    """Print each setting, its effective value and its source: default, config file PATH,
    environment (ARCHIVER_X) or command line (--x). A database URL's password is hidden."""
    from archiver.settings import config_file_path, setting_sources

    settings = app.settings
    sources = setting_sources(app.cli_settings)
    rows = {
        name: {"value": _shown(name, getattr(settings, name), app), "source": sources[name]}
        for name in type(settings).model_fields
    }
    path, _ = config_file_path(app.cli_settings.get("config_file"))
    if as_json:
        doc = {"settings": rows, "config_file": str(path), "config_file_exists": path.is_file()}
        click.echo(json.dumps(doc, sort_keys=True))
        return
    width = max(map(len, rows))
    for name, row in rows.items():
        value = "-" if row["value"] is None else row["value"] if row["value"] != "" else "''"
        click.echo(f"{name:<{width}}  {value}  [{row['source']}]")
    click.echo(f"config file: {path}" + ("" if path.is_file() else " (absent)"), err=True)
