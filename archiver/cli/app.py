"""The root command group and `App`, which hands commands their settings, catalog and storage.

Commands never open or close the catalog themselves: `App` opens it on first use and the click
context closes it when the command ends.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from archiver import __version__
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.queries import get_model
from archiver.errors import ConfigError
from archiver.settings import CommandLineError, Settings, load_settings, unknown_environment
from archiver.storage import HotStore, S3Client, Vault, open_hot_store, open_vault, source_url

if TYPE_CHECKING:  # torch and diffusers take seconds to import: only commands that render pay for it
    from archiver.engine.registry import LoadedModel
    from archiver.gate import Gate
    from archiver.pricing import Pricing
    from archiver.prove import SearchLimits

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """What a command needs, opened lazily from the settings."""

    def __init__(
        self,
        ctx: click.Context,
        cli_settings: dict[str, Any],
        *,
        quiet: bool = False,
        log_level: int | None = None,
    ) -> None:
        self._ctx = ctx
        self.cli_settings = cli_settings
        self.quiet = quiet  # no progress (archiver.cli.progress) and only errors logged
        self.log_level = log_level  # given by --log-level, -v or -q; None: the command's default

    @cached_property
    def settings(self) -> Settings:
        try:
            settings = load_settings(**self.cli_settings)
        except CommandLineError as bad:  # a usage error: shown as click shows a bad option value
            option = next(p for p in self._ctx.find_root().command.params if p.name == bad.field)
            raise click.BadParameter(str(bad), ctx=self._ctx.find_root(), param=option) from None
        if not self.quiet:
            for warning in unknown_environment():
                click.echo(f"archiver: warning: {warning}", err=True)
        return settings

    def log_to_stderr(self, label: str = "archiver", levels: dict[str, int] | None = None) -> None:
        """Send archiver's log records to stderr as `TIME LABEL: message`, the loggers in `levels`
        at those levels (the servers log renders and requests at INFO), any other at WARNING;
        --log-level, -v or -q set every one instead. Undone when the command ends."""
        configure_logging(self._ctx, label, self.log_level, levels or {})

    def _s3_client(self) -> S3Client:
        from archiver.storage.s3 import make_s3_client  # boto3: only when an S3 URL is opened

        return make_s3_client(
            endpoint_url=self.settings.s3_endpoint_url, max_attempts=self.settings.s3_max_attempts
        )

    def open_source(self, url: str) -> HotStore:
        """A hot source (a directory or s3://bucket/prefix), S3 configured from the settings."""
        return open_hot_store(url, client_factory=self._s3_client)

    @cached_property
    def vault(self) -> Vault:
        """The archive tier from the settings (default: HOME/vault)."""
        if self.settings.vault is None:
            self.settings.ensure_home()
        return self.open_vault(self.settings.vault_url)

    def open_vault(self, url: str) -> Vault:
        """A vault at `url` (a path or s3://bucket/prefix), S3 configured from the settings."""
        return open_vault(url, self.settings.vault_storage_class, client_factory=self._s3_client)

    @cached_property
    def pricing(self) -> Pricing:
        """The cost model from the settings (and the catalog, opened only for a named model's figures)."""
        from archiver.pricing import Pricing

        return Pricing(self.settings, lambda: self.catalog)

    @cached_property
    def gate(self) -> Gate:
        from archiver.gate import Gate

        return Gate.from_settings(self.settings)

    @property
    def search_limits(self) -> SearchLimits:
        from archiver.prove import SearchLimits

        s = self.settings
        return SearchLimits(
            s.seed_search_max,
            s.seed_search_batch,
            siblings=s.gate_siblings_k,
            determinism_every=s.determinism_sample_every,
        )

    def load_model(self, name: str) -> LoadedModel:
        """The named model, verified against its registered hash, loaded on the configured device."""
        from archiver.engine.registry import load_to_render

        with self.catalog.begin() as session:
            row = get_model(session, name)
        return load_to_render(row, self.settings.resolved_device())

    @cached_property
    def catalog(self) -> Catalog:
        self.settings.ensure_home()
        catalog = open_catalog(self.settings.catalog_url)
        self._ctx.call_on_close(catalog.close)
        return catalog


pass_app = click.make_pass_decorator(App)

LOGGERS = ("archiver", "fusefs")  # the package's loggers; third parties keep their own settings
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a record comes (tests swap it)."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(f"%(asctime)s {label}: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(ctx: click.Context, label: str, level: int | None, levels: dict[str, int]) -> None:
    """One stderr handler on archiver's loggers (replacing the one an earlier call set), their
    levels from `level` (explicit) or `levels` (the command's defaults, else WARNING); the handler
    and the old levels are put back when the root context closes (tests run many commands in one
    process, and pytest's own handlers stay untouched)."""
    root = ctx.find_root()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(old)
        logger.addHandler(_StderrHandler(label))
    names = set(LOGGERS) | set(levels)
    previous = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(level if level is not None else levels.get(name, logging.WARNING))

    def undo() -> None:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
                logger.removeHandler(old)
        for name, old_level in previous.items():
            logging.getLogger(name).setLevel(old_level)

    if not root.meta.get("archiver.logging"):
        root.meta["archiver.logging"] = True
        root.call_on_close(undo)


def canonical_source(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A `--source URL` as the catalog names sources: `s3://bucket/shoes` is the bucket's source."""
    return None if value is None else source_url(value)


Callback = Callable[[click.Context, click.Parameter, str | None], str | None]


def checked(parse: Callable[[str], Any]) -> Callback:
    """An option callback that checks a value with `parse` (e.g. `units.parse_size`) while the
    command line is parsed, so a bad one is a usage error (exit 2), and hands the text on."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None:
            try:
                parse(value)
            except ConfigError as bad:
                raise click.BadParameter(str(bad), ctx=ctx, param=param) from None
        return value

    return callback


def _prefix(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """A caption key prefix: a folder, so it ends with '/' (added when left out)."""
    value = (value or "").strip("/")
    return value + "/" if value else ""


def caption_options(command: F) -> F:
    """`--caption-strip-prefix` / `--caption-add-prefix`, handed to the command as `caption_keys`."""
    from archiver.captionkeys import CaptionKeys

    @functools.wraps(command)
    def wrapper(*args: Any, caption_strip_prefix: str, caption_add_prefix: str, **kwargs: Any) -> Any:
        return command(*args, caption_keys=CaptionKeys(caption_strip_prefix, caption_add_prefix), **kwargs)

    wrapper = click.option(
        "--caption-add-prefix",
        callback=_prefix,
        metavar="PREFIX",
        help="The model was trained one root up: its caption for key K is PREFIX/K.",
    )(wrapper)
    wrapper = click.option(
        "--caption-strip-prefix",
        callback=_prefix,
        metavar="PREFIX",
        help="The model was trained at PREFIX: key PREFIX/K takes its caption for K.",
    )(wrapper)
    return wrapper  # type: ignore[return-value]


def ray_options(what: str, actors_help: str) -> Callable[[F], F]:
    """`--ray [ADDRESS]` (handed in as `ray_address`: None without it, "" for RAY_ADDRESS or a local
    Ray) and `--ray-actors`, for the commands that run part of their work on Ray actors."""

    def decorate(command: F) -> F:
        command = click.option("--ray-actors", type=click.IntRange(1), help=actors_help)(command)
        return click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[ADDRESS]",
            help=f"{what} on a Ray cluster (the `ray` extra): ADDRESS (host:6379, ray://host:10001, "
            "auto), else RAY_ADDRESS, else a local Ray. Put it last, or write --ray=ADDRESS.",
        )(command)

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="archiver")
@click.option(
    "--home", type=click.Path(path_type=Path), help="Home for catalog.db, vault/, cache/ [ARCHIVER_HOME]."
)
@click.option(
    "--config-file", type=click.Path(path_type=Path), help="TOML config file [ARCHIVER_CONFIG_FILE]."
)
@click.option("--database-url", help="SQLAlchemy URL of the catalog [ARCHIVER_DATABASE_URL].")
@click.option("--vault", help="Archive tier: a path or s3://bucket/prefix [ARCHIVER_VAULT].")
@click.option(
    "--vault-storage-class",
    type=click.Choice(["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"]),
    help="Storage class of vault uploads [ARCHIVER_VAULT_STORAGE_CLASS].",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress, and only errors logged.")
@click.option("-v", "--verbose", count=True, help="Log more: -v info, -vv debug.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Level of archiver's log lines on stderr (overrides -v and -q) [default: warning; "
    "info for serve, mount and review].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(
    ctx: click.Context, debug: bool, quiet: bool, verbose: int, log_level: str | None, **cli_settings: Any
) -> None:
    """Cold storage for image inventories by media rehydration.

    Swaps verified long-tail images for prompt+seed records, keeps the originals in an archive
    vault, and regenerates images on read. Exit codes: 0 ok, 1 unexpected error, 2 usage,
    3 config, 4 catalog, 5 storage, 6 not found, 7 restore pending, 8 checksum mismatch,
    9 model, 130 interrupted.
    """
    level = None
    if log_level is not None:
        level = logging.getLevelName(log_level.upper())
    elif verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    elif quiet:
        level = logging.ERROR
    ctx.obj = App(ctx, cli_settings, quiet=quiet, log_level=level)
    ctx.obj.log_to_stderr()
