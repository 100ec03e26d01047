"""`archiver verify`: prove, without archiving anything, which images a model can regenerate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from archiver.cli.app import App, cli, pass_app

if TYPE_CHECKING:
    from archiver.prove import Proof


def proof_row(proof: Proof) -> dict[str, Any]:
    metrics = proof.report.metrics if proof.report else {}
    return {
        "key": proof.key,
        "passed": proof.passed,
        "reason": proof.reason,
        "seed": proof.spec.seed if proof.spec else None,
        "seeds_tried": proof.seeds_tried,
        **{name: metrics.get(name) for name in ("lpips", "worst_tile", "psnr", "sibling_margin_db")},
    }


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@cli.command()
@click.argument("source")
@click.option("--model", "model_name", required=True, help="Registered model name (`archiver model list`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@pass_app
def verify(app: App, source: str, model_name: str, as_json: bool) -> None:
    """Run the gate on every image in SOURCE (a directory or s3://bucket/prefix); change nothing.

    Prints, per image, the verdict and LPIPS, worst tile, PSNR and sibling margin of the best seed.
    """
    from archiver.engine.registry import captions_of
    from archiver.prove import SearchLimits, prove_group
    from archiver.sweep.filters import is_image_key

    store = app.open_source(source)  # cheap checks (URL, bucket, credentials) before loading a model
    originals = {o.key: store.get(o.key) for o in store.list() if is_image_key(o.key)}
    loaded = app.load_model(model_name)
    limits = SearchLimits(app.settings.seed_search_max, app.settings.seed_search_batch)
    prompts = captions_of(Path(loaded.row.path))
    rows = [proof_row(p) for p in prove_group(originals, prompts, loaded, app.gate, limits)]
    passed = sum(r["passed"] for r in rows)
    if as_json:
        click.echo(
            json.dumps(
                {"model": model_name, "images": rows, "passed": passed, "rejected": len(rows) - passed},
                sort_keys=True,
            )
        )
        return
    table = Table(caption=f"{passed} of {len(rows)} images pass the gate with model {model_name!r}")
    for column in ("key", "verdict", "seed", "LPIPS", "worst tile", "PSNR dB", "margin dB"):
        table.add_column(column, justify="left" if column in ("key", "verdict") else "right")
    for r in rows:
        table.add_row(
            r["key"],
            "pass" if r["passed"] else f"reject: {r['reason']}",
            "-" if r["seed"] is None else str(r["seed"]),
            _fmt(r["lpips"], 4),
            _fmt(r["worst_tile"], 4),
            _fmt(r["psnr"], 2),
            _fmt(r["sibling_margin_db"], 2),
        )
    Console(width=140).print(table)
