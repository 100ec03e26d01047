"""`archiver survey`: the hitlist of image groups worth rehydrating."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from archiver.cli.app import App, cli, pass_app, ray_options
from archiver.cli.progress import Bar, bar
from archiver.units import human_bytes


@cli.command()
@click.argument("source")
@click.option(
    "--access-log",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Common/combined log format, or CSV key,requests,bytes per month: prices traffic savings.",
)
@click.option(
    "--url-prefix", default="/", show_default=True, help="URL path the log's keys are served under."
)
@click.option("--top", type=click.IntRange(1), default=20, show_default=True, help="Groups to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--csv", "csv_file", type=click.Path(path_type=Path, dir_okay=False), help="Write the hitlist as CSV."
)
@click.option(
    "--html",
    "html_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write DIR/index.html: the hitlist and each group's contact sheet.",
)
@click.option(
    "--write-group",
    nargs=2,
    metavar="ID FILE",
    help="Write group ID's (or rank's) core keys and a caption template for `archiver train --keys FILE`.",
)
@click.option(
    "--min-images", type=click.IntRange(2), default=4, show_default=True, help="Smallest group listed."
)
@click.option(
    "--egress-price",
    type=click.FloatRange(0),
    default=None,
    help="USD per GB the origin sends (middle mile / egress) [price_egress: 0.09].",
)
@click.option(
    "--model",
    "model_name",
    help="Price each group as if rehydrated by a model like this registered one: its size, and its "
    "render time measured on this device by `archiver model check` [default: the example model's].",
)
@click.option(
    "--cdn-offload",
    type=click.FloatRange(0, 1),
    default=0.9,
    show_default=True,
    help="Share of requests the CDN answers from its cache.",
)
@click.option(
    "--no-dense",
    is_flag=True,
    help="Perceptual hash only: skip the LPIPS-trunk descriptor (faster; noise-like images may group).",
)
@ray_options("Hash and describe", "Actors describing with --ray [one per CPU but one].")
@pass_app
def survey(
    app: App,
    source: str,
    access_log: Path | None,
    url_prefix: str,
    top: int,
    as_json: bool,
    csv_file: Path | None,
    html_dir: Path | None,
    write_group: tuple[str, str] | None,
    min_images: int,
    egress_price: float | None,
    model_name: str | None,
    cdn_offload: float,
    no_dense: bool,
    ray_address: str | None,
    ray_actors: int | None,
) -> None:
    """Rank the image groups in SOURCE (a directory or s3://bucket/prefix) by what rehydrating them saves.

    Groups come from the key structure (e.g. shoes/rumba-{v1}-{v2}.{ext}), dimensions and mode;
    inside each, a perceptual hash and the LPIPS trunk's features find the near-identical core and
    name the outliers. Undecodable images and unsafe keys are counted, not fatal.
    """
    from archiver.survey.report import dumps, summary, write_csv, write_html
    from archiver.survey.report import write_group as write_group_file
    from archiver.survey.run import SurveyConfig, run_survey
    from archiver.survey.savings import PriceTerms
    from archiver.survey.traffic import load_traffic

    if ray_address is not None:
        from archiver.fleet.cluster import require_ray

        require_ray()  # one line naming the extra, before the source is opened

    s = app.settings
    terms = PriceTerms(
        prices=app.pricing.prices(),
        vault_class=s.vault_storage_class,
        pack_threshold=s.pack_threshold,
        pack_target=s.pack_target,
        egress_price=s.price_egress if egress_price is None else egress_price,
        cdn_offload=cdn_offload,
        compute=app.pricing.compute(model_name),  # the catalog is opened only for --model
        model_bytes=s.cost_model_bytes if model_name is None else app.pricing.model_bytes(model_name),
        journal_class=s.vault_journal_storage_class,
        vault_read_share=s.cost_vault_read_share,
    )
    traffic = load_traffic(access_log, url_prefix) if access_log else None
    store = app.open_source(source)
    config = SurveyConfig(
        terms=terms,
        dense=not no_dense,
        min_images=min_images,
        trunk_path=s.lpips_weights,
        allowed_trunks=[sha for sha in s.lpips_allow_trunk.split(",") if sha],
    )
    progress = bar("surveying", unit="img")  # the listing streams: no total is known
    try:
        if ray_address is None:
            result = run_survey(store, config, traffic=traffic, progress=progress)
        else:
            result = _fleet_survey(app, store, config, traffic, progress, ray_address, ray_actors)
    finally:
        progress.stop()
    with result:
        if csv_file is not None:
            write_csv(result, top, csv_file)
        if html_dir is not None:
            index = write_html(result, top, html_dir, store.get)
            if not as_json:
                click.echo(f"report: {index}", err=True)
        if write_group is not None:
            ref, path = write_group
            group, count = write_group_file(result, ref, Path(path))
            if not as_json:
                click.echo(f"wrote {count} keys of group {group.id} ({group.template}) to {path}", err=True)
        if as_json:
            click.echo(dumps(summary(result, top)))
        else:
            _table(result, top)


def _fleet_survey(
    app: App,
    store: Any,
    config: Any,
    traffic: Any,
    progress: Bar,
    address: str,
    actors: int | None,
) -> Any:
    """The same survey with its images described on Ray actors (`archiver.fleet.survey`)."""
    from archiver.fleet.cluster import connected, size_pool
    from archiver.fleet.survey import ray_batches
    from archiver.fleet.sweep import SourceReader
    from archiver.survey.run import run_survey

    s = app.settings
    with connected(address, None) as cluster:  # a survey has no catalog
        pool = size_pool({"CPU": cluster.resources.get("CPU", 1.0)}, actors)
        reader = SourceReader(store.url, s.s3_endpoint_url, s.s3_max_attempts)
        describe = ray_batches(cluster, pool, reader, config)
        return run_survey(store, config, traffic=traffic, progress=progress, describe=describe)


def _table(result: Any, top: int) -> None:
    from archiver.sweep.cost import break_even, usd, verdict_line

    console = Console()
    if not console.is_terminal:  # piped: wide enough that templates and amounts stay on one line
        console = Console(width=max(console.width, 200))
    table = Table(title=f"survey of {result.source}: groups worth rehydrating, by net saving a month (USD)")
    table.add_column("#", justify="right")
    table.add_column("id", no_wrap=True)
    table.add_column("group template", overflow="fold", min_width=24)
    columns = ("images", "similar", "recall", "storage", "egress", "model", "renders", "requests", "net")
    for column in (*columns, "per 1M images", "break-even"):
        table.add_column(column, justify="right", no_wrap=True)
    for rank, g in enumerate(result.groups[:top], start=1):
        net = g.saving.net
        verdict = "[bold red]loses money[/]" if net.loses_money else "saves"
        table.add_row(
            str(rank),
            g.id,
            g.template,
            f"{g.core}/{g.images}",
            f"{g.similarity:.2f}",
            f"{g.recall.score:.2f}",
            *(usd(amount) for amount in net.terms().values()),
            f"{usd(net.net)} {verdict}",
            usd(net.per_million_images),
            break_even(net.break_even_seconds, short=True),
        )
    console.print(table)
    for rank, g in enumerate(result.groups[:top], start=1):
        net = g.saving.net
        if net.loses_money or net.break_even_seconds:
            console.print(f"#{rank} {g.id}: {verdict_line(net)}", highlight=False)
        if g.named_outliers:
            names = ", ".join(o["key"] for o in g.named_outliers[:5])
            more = f" and {g.outliers - 5} more" if g.outliers > 5 else ""
            console.print(f"#{rank} {g.id} outliers: {names}{more}", highlight=False)
    terms = result.terms
    if terms is not None:
        c = terms.compute
        cores = f" x {c.cores} CPU cores" if c.cores else " (GPU)"
        console.print(
            f"costs: a render per CDN miss ({1 - terms.cdn_offload:.0%} of requests), "
            f"{c.seconds * 1000:.1f} ms{cores} at {usd(c.price_per_hour)}/hour ({c.source}); each group's "
            f"own model of {human_bytes(terms.model_bytes)} in the vault's {terms.journal_class}; egress "
            f"{usd(terms.egress_price)}/GB; {terms.vault_read_share:.0%} of misses read the original from "
            f"the vault. 'per 1M images': 1,000,000 images in groups like each.",
            highlight=False,
        )
    rate = f", {result.images / result.seconds:.0f} images/s" if result.seconds else ""
    bad = ", ".join(f"{k} {v}" for k, v in sorted(result.bad.items())) or "none"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(result.skipped.items())) or "none"
    console.print(
        f"{result.listed} listed, {result.images} images described{rate}; not images {result.not_images}; "
        f"ungrouped {result.ungrouped}; bad: {bad}; skipped keys: {skipped}",
        highlight=False,
    )
