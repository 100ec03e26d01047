"""`archiver sweep`: archive the long-tail images of a source that pass the gate."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from archiver.captionkeys import CaptionKeys
from archiver.cli.app import App, caption_options, checked, cli, pass_app, ray_options
from archiver.cli.progress import Bar
from archiver.units import human_bytes, parse_age, parse_size


@cli.command()
@click.argument("source")
@click.option("--model", "model_name", required=True, help="Registered model that regenerates the images.")
@click.option(
    "--older-than",
    callback=checked(parse_age),
    help="Only objects not modified (or accessed) for this long: 90d, 12h, 2w.",
)
@click.option("--min-size", callback=checked(parse_size), help="Only objects at least this big: 10KB, 5MiB.")
@click.option("--max-size", callback=checked(parse_size), help="Only objects at most this big.")
@click.option("--include", multiple=True, help="Only keys matching this glob (repeatable); * crosses /.")
@click.option("--exclude", multiple=True, help="Skip keys matching this glob (repeatable).")
@click.option(
    "--access-log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV with key,last_access: an object read recently is not cold.",
)
@caption_options
@click.option("--dry-run", is_flag=True, help="List what would be archived and the saving; change nothing.")
@click.option(
    "--require-review/--no-require-review",
    default=None,
    help="Verify and vault, but keep each hot copy until a person approves it (`archiver review`, "
    "then `archiver release`) [ARCHIVER_REVIEW_REQUIRED].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@ray_options(
    "Render and gate",
    "Actors rendering and gating with --ray [one per GPU; on CPUs, one per CPU but one].",
)
@click.option(
    "--ray-batch",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Keys per actor call with --ray (a killed actor proves at most this many again).",
)
@pass_app
def sweep(
    app: App,
    source: str,
    model_name: str,
    older_than: str | None,
    min_size: str | None,
    max_size: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    access_log: Path | None,
    caption_keys: CaptionKeys,
    dry_run: bool,
    require_review: bool | None,
    as_json: bool,
    ray_address: str | None,
    ray_actors: int | None,
    ray_batch: int,
) -> None:
    """Archive the images in SOURCE (a directory or s3://bucket/prefix) that MODEL regenerates.

    Keys are the objects' own names: an S3 prefix selects objects, it does not re-root them
    (s3://bucket/shoes holds shoes/red.png). Each image that passes the gate is copied to the
    vault (checksum read back), its record is committed, and only then is the hot copy deleted,
    if it is unchanged. Safe to interrupt and re-run: it resumes where it stopped.
    """
    from archiver.sweep.filters import Filters, load_access_log

    if ray_address is not None and not dry_run:
        from archiver.fleet.cluster import require_ray

        require_ray()  # one line naming the extra, before the catalog or the source is opened

    filters = Filters(
        older_than=parse_age(older_than) if older_than else None,
        min_size=parse_size(min_size) if min_size else None,
        max_size=parse_size(max_size) if max_size else None,
        include=include,
        exclude=exclude,
        access_log=load_access_log(access_log) if access_log else None,
    )
    catalog = app.catalog  # an unreachable catalog stops the sweep before it touches anything
    from archiver.catalog.queries import get_model

    with catalog.begin() as session:  # an unknown model too, before a source or candidate is written
        get_model(session, model_name)
    store = app.open_source(source)
    if dry_run:
        _dry_run(app, store, filters, model_name, as_json)
        return
    from archiver.sweep.run import Sweep, SweepConfig

    progress = Bar("verifying", unit="img")  # the gate is where a sweep spends its time
    settings = app.settings
    config = SweepConfig(
        model=model_name,
        filters=filters,
        pack_threshold=settings.pack_threshold,
        pack_target=settings.pack_target,
        lease=timedelta(minutes=settings.claim_lease_minutes),
        journal_storage_class=settings.vault_journal_storage_class,
        caption_keys=caption_keys,
        require_review=settings.review_required if require_review is None else require_review,
        bank_every=settings.sweep_bank_every,
        bank_seconds=settings.sweep_bank_seconds,
    )
    try:
        if ray_address is None:
            summary = Sweep(
                catalog,
                store,
                app.vault,
                config,
                load_model=lambda: app.load_model(model_name),
                gate=lambda: app.gate,
                limits=app.search_limits,
                progress=progress,
            ).run()
        else:
            summary = _fleet_sweep(app, store, config, ray_address, ray_actors, ray_batch, progress)
    finally:
        progress.stop()
    report = summary.to_dict()
    pricing = app.pricing
    report["estimate"] = pricing.storage_row(summary.archived_sizes).to_dict()
    net = pricing.net(
        pricing.storage_row(summary.archived_sizes),
        model_name,
        images_of_model=pricing.records_of(model_name),
    )
    report["net"] = net.to_dict()
    if summary.hint:
        click.echo(f"archiver: hint: {summary.hint}", err=True)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    table = Table(title=f"sweep of {summary.source}", show_header=False)
    rows = [
        ("scanned", summary.scanned),
        ("candidates", summary.candidates),
        *((f"skipped: {k}", v) for k, v in report["skipped"].items()),
        ("busy (another sweep)", summary.busy),
        ("verified", summary.verified),
        ("archived", summary.archived),
        *((f"rejected: {k}", v) for k, v in report["rejected"].items()),
        *((f"vaulted, hot copy kept: {k}", v) for k, v in report["not_deleted"].items()),
        *([("held for review (hot copy kept)", summary.held)] if summary.held else []),
        *((f"records at {n} steps", v) for n, v in sorted(summary.steps.items())),
        ("denoising steps rendered", summary.steps_rendered),
        ("vault objects written", summary.vault_objects),
        ("bytes freed", human_bytes(summary.bytes_freed)),
        *net_rows(net, settings),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)
    from archiver.sweep.cost import verdict_line

    click.echo(f"archived by {model_name}: {verdict_line(net)}")
    for key, reason in summary.unlisted:  # a key with a newline would break the table: repr it
        click.echo(f"not an object ({reason}): {key!r}", err=True)


def _fleet_sweep(
    app: App,
    store: Any,
    config: Any,
    address: str,
    actors: int | None,
    batch: int,
    progress: Bar,
) -> Any:
    """The same sweep with its prove step on a Ray actor pool (`archiver.fleet.sweep`)."""
    import functools

    from archiver.fleet.cluster import connected
    from archiver.fleet.sweep import FleetSweep, SourceReader
    from archiver.gate import Gate

    settings = app.settings
    with connected(address, settings.catalog_url) as cluster:
        pool = cluster.pool(actors)
        progress.describe(f"verifying on Ray ({pool.actors} actors)")
        return FleetSweep(
            app.catalog,
            store,
            app.vault,
            config,
            cluster=cluster,
            pool=pool,
            # The store's own URL: a directory as an absolute file:// URL, an S3 source as its bucket.
            reader=SourceReader(store.url, settings.s3_endpoint_url, settings.s3_max_attempts),
            device=settings.resolved_device,  # resolved on each actor: CUDA where Ray gave it a GPU
            gate=functools.partial(Gate.from_settings, settings),
            limits=app.search_limits,
            batch_size=batch,
            progress=progress,
        ).run()


def net_rows(net: Any, settings: Any) -> list[tuple[str, str]]:
    """The net saving's terms as (name, value) rows, for the sweep's summary and its dry run."""
    from archiver.sweep.cost import break_even, usd

    compute = net.compute
    per_render = f"{compute.seconds * 1000:.1f} ms" + (f" at {compute.steps} steps" if compute.steps else "")
    cores = f" x {compute.cores} CPU cores" if compute.cores else " (GPU)"
    verdict = "LOSES MONEY" if net.loses_money else "saves"
    return [
        ("storage saved / month", f"{usd(net.storage_saved)} ({settings.vault_storage_class})"),
        ("egress avoided / month", f"{usd(net.egress_avoided)} ({net.renders_monthly:g} CDN misses)"),
        (
            "model storage / month",
            f"{usd(-net.model_storage)} ({human_bytes(net.model_bytes)} in "
            f"{settings.vault_journal_storage_class}, {net.model_share:.0%} of its records)",
        ),
        ("render compute / month", f"{usd(-net.render_compute)} ({per_render}{cores}; {compute.source})"),
        ("requests / month", usd(-net.requests)),
        ("net saving / month", f"{usd(net.net)}: {verdict}"),
        ("net per 1M images / month", f"{usd(net.per_million_images)} (1,000,000 images like these)"),
        ("break-even render time", break_even(net.break_even_seconds)),
    ]


SKIP_HINTS = {
    "too-recent": "modified or read more recently than --older-than; a shorter age (e.g. --older-than 0d) "
    "takes them",
    "not-an-image": "a sweep takes only PNG, JPEG and WebP keys",
    "excluded": "matched --exclude",
    "not-included": "matched no --include",
    "too-small": "under --min-size",
    "too-large": "over --max-size",
}


def _skipped_summary(skipped: list[tuple[str, str]], filters: Any) -> str:
    """One line: how many keys each reason left out, and what would take them."""
    counts = Counter(reason for _, reason in skipped)
    parts = []
    for reason, count in counts.most_common():
        hint = SKIP_HINTS.get(reason)
        if reason == "too-recent" and filters.older_than is not None:
            hint = (
                f"modified or read within the last {filters.older_than.days} days (--older-than); a "
                "shorter age (e.g. --older-than 0d) takes them"
            )
        parts.append(f"{count} {reason}" + (f" ({hint})" if hint else ""))
    return f"left out: {'; '.join(parts)}"


def _dry_run(app: App, store: Any, filters: Any, model_name: str, as_json: bool) -> None:
    """What a sweep would take, what it would leave and why (every key), the saving per vault class,
    and the net saving in the configured one: every cost, as if the gate passed every candidate."""
    from archiver.sweep.cost import verdict_line

    now = datetime.now(UTC)
    candidates = []
    skipped: list[tuple[str, str]] = []
    for obj in store.list(on_skip=lambda key, reason: skipped.append((key, reason))):
        reason = filters.reason_to_skip(obj, now)
        if reason is None:
            candidates.append(obj)
        else:
            skipped.append((obj.key, reason))
    sizes = [obj.size for obj in candidates]
    pricing = app.pricing
    rows = pricing.estimate(sizes)
    net = pricing.net(
        pricing.storage_row(sizes), model_name, images_of_model=pricing.records_of(model_name) + len(sizes)
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "candidates": [{"key": o.key, "size": o.size} for o in candidates],
                    "skipped": [{"key": key, "reason": reason} for key, reason in skipped],
                    "estimate": [row.to_dict() for row in rows],
                    "net": net.to_dict(),
                },
                sort_keys=True,
            )
        )
        return
    console = Console()
    listing = Table(title=f"{len(candidates)} candidates (the gate decides which are archived)")
    listing.add_column("key")
    listing.add_column("size", justify="right")
    listing.add_column("last modified")
    for obj in candidates:
        listing.add_row(obj.key, human_bytes(obj.size), obj.last_modified.strftime("%Y-%m-%d %H:%M"))
    console.print(listing)
    if skipped:
        left = Table(title=f"{len(skipped)} keys a sweep would not take, and why")
        left.add_column("key")
        left.add_column("reason")
        for key, reason in skipped:
            left.add_row(repr(key) if not key.isprintable() else key, reason)
        console.print(left)
        click.echo(_skipped_summary(skipped, filters))
    costs = Table(title="estimated monthly cost if all are archived (USD)")
    for column in ("class", "objects", "hot now", "archive", "saving", "min. commitment"):
        costs.add_column(column, justify="left" if column == "class" else "right")
    for row in rows:
        d = row.to_dict()
        costs.add_row(
            d["vault_class"],
            str(d["objects"]),
            f"{d['hot_monthly']:.6f}",
            f"{d['archive_monthly']:.6f}",
            f"{d['saving_monthly']:.6f}",
            f"{d['minimum_commitment']:.6f}",
        )
    console.print(costs)
    terms = Table(title=f"net saving if all are archived by {model_name} (USD)", show_header=False)
    for name, value in net_rows(net, app.settings):
        terms.add_row(name, value)
    console.print(terms)
    click.echo(verdict_line(net))
