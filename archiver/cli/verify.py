"""`archiver verify`: prove, without archiving anything, which images a model can regenerate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from archiver.captionkeys import CaptionKeys, caption_hint
from archiver.cli.app import App, caption_options, cli, pass_app
from archiver.cli.progress import bar

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

    Prints, per image as it is decided, the seed, LPIPS, worst tile, PSNR, colour difference (ΔE00
    of the worst 1%) and sibling margin of the best seed, and the verdict (every check that refused
    it); progress goes to stderr. With --json, one object at the end. The siblings are
    the ones `sweep` judges with: the images of SOURCE the model has a caption for.
    """
    from archiver.imagetypes import is_image_key
    from archiver.prove import GroupProver

    store = app.open_source(source)  # cheap checks (URL, bucket, credentials) before loading a model
    keys = sorted(o.key for o in store.list() if is_image_key(o.key))
    prover = GroupProver.for_source(
        keys, store.get, app.load_model(model_name), app.gate, app.search_limits, caption_keys
    )
    width = max([len("key"), *map(len, keys)])
    if not as_json:  # each row is printed as it is decided: a long run shows its verdicts as it goes
        click.echo(
            _line(
                width, ("key", "seed", "LPIPS", "worst tile", "PSNR dB", "ΔE00 worst", "margin dB", "verdict")
            )
        )
    rows = []
    with bar("verifying", len(keys), unit="img") as progress:
        for key in keys:
            row = proof_row(prover.prove(key)[0])
            rows.append(row)
            progress.advance(key, row["passed"])
            if not as_json:
                click.echo(_line(width, _cells(row)))
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
    click.echo(f"{passed} of {len(rows)} images pass the gate with model {model_name!r}")


def _cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["key"],
        "-" if r["seed"] is None else str(r["seed"]),
        _fmt(r["lpips"], 4),
        _fmt(r["worst_tile"], 4),
        _fmt(r["psnr"], 2),
        _fmt(r["colour_worst"], 2),
        _fmt(r["sibling_margin_db"], 2),
        "pass" if r["passed"] else "reject: " + ", ".join(r["failures"]),
    )


def _line(width: int, cells: tuple[str, ...]) -> str:
    """One row: the key padded to `width`, the numbers right-aligned, the verdict last (its length varies)."""
    key, *numbers, verdict = cells
    return "  ".join(
        [key.ljust(width), *(n.rjust(w) for n, w in zip(numbers, NUMBER_WIDTHS, strict=True)), verdict]
    )


NUMBER_WIDTHS = (6, 7, 10, 7, 10, 9)  # seed, LPIPS, worst tile, PSNR dB, ΔE00 worst, margin dB
