"""`archiver train`: make a model memorize a group of images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archiver.cli.app import App, cli, pass_app
from archiver.cli.progress import Bar

if TYPE_CHECKING:  # torch: only when training runs
    from archiver.training import Example, Progress, TrainResult


@cli.command()
@click.argument("source")
@click.option("--captions", "captions_file", help="CSV (key,prompt) or JSONL ({key, prompt}) file.")
@click.option("--caption-template", help="Prompt from the key, e.g. 'a product photo of {words}'.")
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Train only on these keys: one per line after '#' header lines, as `archiver survey "
    "--write-group` writes (its caption template applies unless --captions or --caption-template).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the model (save_pretrained layout) and its manifests go.",
)
@click.option(
    "--base",
    "base_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Fit LoRA adapters to this Stable Diffusion pipeline instead of training a tiny one.",
)
@click.option("--steps", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="Torch threads per training step [ARCHIVER_TRAIN_THREADS, default 2]; each step holds that many "
    "of the machine's CPU slots, so training beside a sweep or a mount takes turns with their renders.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=500,
    show_default=True,
    help="Save a checkpoint (what --resume continues from) every this many steps.",
)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUT/checkpoints.")
@click.option("--register", "register_as", help="Register the trained model under this name.")
@pass_app
def train(
    app: App,
    source: str,
    captions_file: str | None,
    caption_template: str | None,
    keys_file: Path | None,
    out_dir: Path,
    base_dir: Path | None,
    steps: int,
    batch_size: int,
    lr: float,
    threads: int | None,
    seed: int,
    checkpoint_every: int,
    resume: bool,
    register_as: str | None,
) -> None:
    """Train a model on the captioned images in SOURCE (a directory or s3://bucket/prefix).

    The output directory carries captions.json (key -> prompt), so a sweep knows each key's prompt.
    Progress (step and loss) goes to stderr: a bar on a terminal, else a line at each tenth of the
    steps or every 30 s.
    """
    from archiver.training.captions import load_key_list
    from archiver.training.inputs import gather_examples

    wanted = load_key_list(keys_file) if keys_file is not None else None
    if captions_file is None and caption_template is None and wanted is not None:
        caption_template = wanted.caption_template
    if (captions_file is None) == (caption_template is None):
        raise click.UsageError("give exactly one of --captions FILE or --caption-template TEMPLATE")
    gathered = gather_examples(
        app.open_source(source),
        source,
        captions_file=captions_file,
        caption_template=caption_template,
        wanted=wanted,
        keys_file=keys_file,
    )
    for warning in gathered.warnings:
        click.echo(f"archiver: {warning}", err=True)
    examples = gathered.require_examples()
    import torch

    torch.set_num_threads(threads or app.settings.train_threads)
    progress = Bar("training", unit="steps")

    def report(step: int, total: int, loss: float) -> None:
        if progress.total is None:
            progress.start(total)
        progress.update(step, f"loss {loss:.5f}")

    with progress:
        result = _train(
            app, examples, out_dir, base_dir, steps, batch_size, lr, seed, resume, checkpoint_every, report
        )
    click.echo(
        json.dumps(
            {
                "out": str(out_dir),
                "images": len(examples),
                "steps": result.steps,
                "final_loss": result.final_loss,
                "seconds": round(result.seconds, 1),
            }
        )
    )
    if register_as:
        from archiver.engine.registry import register_model

        with app.catalog.begin() as session:
            row = register_model(session, out_dir, register_as)
            click.echo(f"registered as {row.name!r}, sha256 {row.sha256}")


def _train(
    app: App,
    examples: list[Example],
    out_dir: Path,
    base_dir: Path | None,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    resume: bool,
    checkpoint_every: int,
    report: Progress,
) -> TrainResult:
    """A tiny model trained from scratch, or LoRA fitted to `base_dir` and merged into its pipeline."""
    if base_dir is None:
        from archiver.training.tiny import train_tiny

        return train_tiny(
            examples,
            out_dir,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            resume=resume,
            checkpoint_every=checkpoint_every,
            progress=report,
            keep_checkpoints=False,
        )
    else:
        from archiver.training.lora import train_lora
        from archiver.training.merge_lora import merge_into_pipeline

        result: TrainResult = train_lora(
            base_dir,
            examples,
            out_dir,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            resume=resume,
            checkpoint_every=checkpoint_every,
            progress=report,
            device=app.settings.resolved_device(),
        )
        merge_into_pipeline(base_dir, out_dir)
    return result
