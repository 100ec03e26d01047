"""`archiver example`: write the synthetic example catalogue."""

from __future__ import annotations

from pathlib import Path

import click

from archiver.cli.app import cli


@cli.group()
def example() -> None:
    """Example data to try archiver on."""


@example.command("rumba")
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--distractors/--no-distractors",
    "with_distractors",
    default=False,
    help="Also write images the shipped model was not trained on (the gate must reject them).",
)
@click.option(
    "--under-trained-keys",
    is_flag=True,
    help="Replace some catalogue images with distractors under their own (trained, captioned) keys: "
    "only the gate can refuse them. They are listed in DEST/distractors.csv.",
)
def example_rumba(dest: Path, with_distractors: bool, under_trained_keys: bool) -> None:
    """Write the rumba sneaker catalogue (48 images, JPEG and PNG, captions.csv) into DEST, with
    access.log: a month of requests to it (a few shoes every day, most never) for `--access-log`."""
    from archiver.example.rumba import (
        distractors,
        replace_with_distractors,
        write_access_log,
        write_catalogue,
    )

    entries = write_catalogue(dest)
    write_access_log(dest, entries)
    extra = distractors(dest) if with_distractors else []
    replaced = replace_with_distractors(dest) if under_trained_keys else []
    click.echo(
        f"wrote {len(entries)} images, captions.csv and access.log to {dest}"
        + (f", and {len(extra)} distractors under {dest / 'distractors'}" if extra else "")
        + (f"; {len(replaced)} of them replaced by distractors (distractors.csv)" if replaced else "")
    )
