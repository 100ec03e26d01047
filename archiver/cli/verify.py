"""`archiver verify`: prove, without archiving anything, which images a model can regenerate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from archiver.captionkeys import CaptionKeys, caption_hint
from archiver.cli.app import App, caption_options, cli, pass_app

if TYPE_CHECKING:
    from archiver.prove import Proof


def proof_row(proof: Proof) -> dict[str, Any]:
    metrics = proof.report.metrics if proof.report else {}
    return {
        "key": proof.key,
        "passed": proof.passed,
        "reason": proof.reason,
        "seed": proof.spec.seed if proof.spec else None,
        "steps": proof.spec.steps if proof.spec else None,
        "seeds_tried": proof.seeds_tried,
        "steps_rendered": proof.steps_rendered,
        "failures": proof.report.failures if proof.report else [proof.reason],
        "nearest_sibling": proof.report.nearest_sibling if proof.report else None,
        **{name: metrics.get(name) for name in METRICS},
    }


METRICS = ("lpips", "worst_tile", "psnr", "colour_mean", "colour_worst", "sibling_margin_db")


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@cli.command()
@click.argument("source")
@click.option("--model", "model_name", required=True, help="Registered model name (`archiver model list`).")
@caption_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@pass_app
def verify(app: App, source: str, model_name: str, caption_keys: CaptionKeys, as_json: bool) -> None:
    """Run the gate on every image in SOURCE (a directory or s3://bucket/prefix); change nothing.

    Prints, per image, the verdict (every check that refused it) and LPIPS, worst tile, PSNR,
    colour difference (ΔE00 of the worst 1%) and sibling margin of the best seed. The siblings are
    the ones `sweep` judges with: the images of SOURCE the model has a caption for.
    """
    from archiver.imagetypes import is_image_key
    from archiver.prove import GroupProver

    store = app.open_source(source)  # cheap checks (URL, bucket, credentials) before loading a model
    keys = sorted(o.key for o in store.list() if is_image_key(o.key))
    prover = GroupProver.for_source(
        keys, store.get, app.load_model(model_name), app.gate, app.search_limits, caption_keys
    )
    rows = [proof_row(prover.prove(key)[0]) for key in keys]
    passed = sum(r["passed"] for r in rows)
    uncaptioned = [r["key"] for r in rows if r["failures"] == ["no-caption"]]
    hint = caption_hint(uncaptioned, prover.captions, caption_keys, model_name) if uncaptioned else None
    if hint:
        click.echo(f"archiver: hint: {hint}", err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": model_name,
                    "images": rows,
                    "passed": passed,
                    "rejected": len(rows) - passed,
                    "hint": hint,
                },
                sort_keys=True,
            )
        )
        return
    table = Table(caption=f"{passed} of {len(rows)} images pass the gate with model {model_name!r}")
    for column in ("key", "verdict", "seed", "LPIPS", "worst tile", "PSNR dB", "ΔE00 worst", "margin dB"):
        table.add_column(column, justify="left" if column in ("key", "verdict") else "right")
    for r in rows:
        table.add_row(
            r["key"],
            "pass" if r["passed"] else "reject: " + ", ".join(r["failures"]),
            "-" if r["seed"] is None else str(r["seed"]),
            _fmt(r["lpips"], 4),
            _fmt(r["worst_tile"], 4),
            _fmt(r["psnr"], 2),
            _fmt(r["colour_worst"], 2),
            _fmt(r["sibling_margin_db"], 2),
        )
    Console(width=140).print(table)
