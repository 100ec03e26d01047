"""`archiver status`: assets and bytes by state, the records made with another software stack, and
the devices that have checked their renders of a model."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from archiver.catalog.database import describe
from archiver.catalog.models import AssetState
from archiver.catalog.queries import StateTotal, device_checks, record_stacks, state_totals
from archiver.cli.app import App, cli, pass_app
from archiver.modelcheck import describe_device, device_check_report
from archiver.stack import mismatches, running_stack_cached
from archiver.units import human_bytes


def _missing_sqlite_catalog(url: str) -> str | None:
    """The path of a SQLite catalog file that does not exist yet, else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None  # opening it says what is wrong with it, with its exit code
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if Path(parsed.database).exists() else parsed.database


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show how many assets (and bytes) the catalog holds in each state, and which records were
    made with software that differs from this machine's (their renders may not match)."""
    missing = _missing_sqlite_catalog(app.settings.catalog_url)
    if missing is not None:  # asking must not create it: nothing has been swept into this home yet
        app.settings.ensure_home()  # but an unusable home is said now, not at the first sweep
        totals = [StateTotal(state, 0, 0) for state in AssetState]
        stacks, devices = [], []
    else:
        with app.catalog.begin() as session:
            totals = state_totals(session)
            stacks = record_stacks(session)
            devices = [device_check_report(c) for c in device_checks(session)]
    # running_stack imports torch (seconds): only when there are records to compare it with, and
    # then remembered in the home's cache until the install changes
    cache = app.settings.cache_dir / "stack.json"
    differing = mismatches(stacks, running_stack_cached(cache)) if stacks else []
    catalog_url = describe(app.settings.catalog_url)
    if as_json:
        report = {
            "catalog": catalog_url,
            "catalog_exists": missing is None,
            "vault": app.settings.vault_url,
            "assets": sum(t.assets for t in totals),
            "bytes": sum(t.bytes for t in totals),
            "states": {t.state.value: {"assets": t.assets, "bytes": t.bytes} for t in totals},
            "stack_mismatches": [m.to_dict() for m in differing],
            "devices": devices,
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
    if missing is not None:
        console.print(
            f"no catalog at {missing} yet: nothing was swept into this home (`archiver sweep` makes it)"
        )
    for m in differing:
        console.print(m.message(), soft_wrap=True)
    if devices:
        checks = Table(title="devices that rendered records (`archiver model check`, first reads)")
        for column in ("model", "device", "checked", "exact", "within tolerance", "refused", "lowest PSNR"):
            checks.add_column(column)
        for d in devices:
            checks.add_row(
                d["model"],
                f"{describe_device(d['device'])} {d['fingerprint'][:12]}",
                d["checked_at"][:19],
                f"{d['exact']}/{d['sampled']}",
                str(d["within_tolerance"]),
                str(d["refused"]),
                "-" if d["lowest_psnr"] is None else f"{d['lowest_psnr']:.1f} dB",
            )
        console.print(checks)
