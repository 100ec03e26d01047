"""The `archiver` command line: argument parsing, and turning errors into one line and an exit code.

`main(argv)` is the only place that catches `ArchiverError`; it prints the message (which says
what to do next) and returns the error's exit code; tracebacks only with `--debug`. Each
subcommand lives in its own module and gets the catalog and storage from `App`, which opens them
on first use and closes them when the command ends.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click

from archiver.cli import (  # noqa: F401  (registers commands)
    config,
    db,
    edge,
    example,
    gate,
    inspect,
    model,
    mount,
    recovery,
    release,
    restore,
    review,
    serve,
    sources,
    status,
    survey,
    sweep,
    train,
    verify,
)
from archiver.cli.app import cli
from archiver.errors import ArchiverError, ExitCode

__all__ = ["cli", "main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="archiver", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.ClickException as usage:
        usage.show()
        return usage.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("archiver: interrupted; nothing half-done was kept, run the command again", err=True)
        return ExitCode.INTERRUPTED
    except ArchiverError as error:
        if debug:
            traceback.print_exc()
        click.echo(f"archiver: error: {error}", err=True)
        return error.exit_code
    except Exception as error:
        if debug:
            traceback.print_exc()
        else:
            click.echo(f"archiver: unexpected error: {error!r}; rerun with --debug and report it", err=True)
        return ExitCode.FAILURE
    return result if isinstance(result, int) else ExitCode.OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
