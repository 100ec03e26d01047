"""`archiver ls` and `archiver show`: what the catalog knows about assets."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from archiver.catalog import queries
from archiver.catalog.models import Asset, Record
from archiver.cli.app import App, canonical_source, cli, pass_app
from archiver.errors import NotFound
from archiver.modelcheck import describe_device, device_check_report
from archiver.units import count, human_bytes


@cli.command("ls")
@click.argument("prefix", default="")
@click.option("--source", callback=canonical_source, help="Only assets of this source URL.")
@click.option(
    "--review",
    type=click.Choice(["pending", "approved", "rejected"]),
    help="Only assets held for review (pending) or decided so by a person (`archiver review`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@pass_app
def ls(app: App, prefix: str, source: str | None, review: str | None, as_json: bool) -> None:
    """List assets whose key starts with PREFIX: state, size, reason."""
    with app.catalog.begin() as session:
        scope = queries.scoped_source(session, source)
        assets = queries.list_assets(session, prefix, scope)
        if review is not None:
            decided = queries.reviews(session, [a.id for a in assets])
            assets = [a for a in assets if a.id in decided and decided[a.id].status == review]
        rows = [(a.key, a.state.value, a.size, a.reason, a.source.url) for a in assets]
    if as_json:
        for key, state, size, reason, url in rows:
            click.echo(
                json.dumps({"key": key, "state": state, "size": size, "reason": reason, "source": url})
            )
        return
    # One key may be in several sources: a listing that spans them names each row's source.
    several = len({url for *_, url in rows}) > 1
    table = Table(caption=count(len(rows), "asset"))
    for column in ("key", "state", "size", "reason") + (("source",) if several else ()):
        table.add_column(column, justify="right" if column == "size" else "left")
    for key, state, size, reason, url in rows:
        table.add_row(key, state, human_bytes(size), reason or "", *((url,) if several else ()))
    Console().print(table)


def describe_record(record: Record) -> dict[str, Any]:
    """A record joined with what it shares (model, render, encoding and gate profiles): all it promises."""
    render = record.render_profile
    return {
        "model": record.model.name,
        "model_sha256": record.model.sha256,
        "pipeline_class": render.pipeline_class,
        "scheduler_class": render.scheduler_class,
        "scheduler_config": render.scheduler_config,
        "prompt": record.prompt,
        "negative_prompt": record.negative_prompt,
        "seed": record.seed,
        "steps": render.steps,
        "guidance_scale": render.guidance_scale,
        "width": render.width,
        "height": render.height,
        "eta": render.eta,
        "rng": render.rng,
        "dtype": render.dtype,
        "software": render.software,
        "encoding_profile": record.encoding_profile.sha256,
        "render_profile": render.sha256,
        "gate_profile": record.gate_profile.sha256,
        "rendered_sha256": record.rendered_sha256,
        "rendered_size": record.rendered_size,
        # How renders with other bytes are verified: the accepted render's sketch (gate/sketch.py).
        "render_sketch": None if record.render_sketch is None else record.render_sketch.hex(),
    }


def describe_served(asset: Asset, record: Record) -> dict[str, Any]:
    """The bytes a read of the asset gives (the mount, `serve`, a rehydrate restore): the record's
    exact render, named apart from the original's. `sha256sum` of a read file agrees with `sha256`
    here (or, on other hardware, the origin's ETag and the mount's served_sha256 xattr say which
    render within tolerance it was). `size_notes`: why they may be larger than the original (the
    encoding profile's codes, each explained)."""
    from archiver.engine.encoding import SIZE_NOTES  # numpy: only when a record is shown

    try:
        notes = json.loads(record.encoding_profile.body).get("size_notes") or []
    except (ValueError, AttributeError):
        notes = []
    return {
        "sha256": record.rendered_sha256,
        "size": record.rendered_size,
        "size_over_original": round(record.rendered_size / asset.size, 3) if asset.size else None,
        "size_notes": {code: SIZE_NOTES.get(code, "") for code in notes},
    }


def describe_devices(session: Any, model_id: int) -> list[dict[str, Any]]:
    """What each device that checked the model found (`archiver model check`, first reads)."""
    return [device_check_report(c) for c in queries.device_checks(session, model_id)]


def describe_asset(session: Any, asset: Asset) -> dict[str, Any]:
    record = asset.record
    vault = asset.vault_object
    return {
        "key": asset.key,
        "source": asset.source.url,
        "state": asset.state.value,
        "reason": asset.reason,
        "reason_detail": asset.reason_detail,
        "original": {
            "size": asset.size,
            "etag": asset.etag,
            "sha256": asset.sha256,
            "last_modified": asset.last_modified.isoformat(),
        },
        "served": None if record is None else describe_served(asset, record),
        "record": None if record is None else describe_record(record),
        "gate_report": None if record is None else record.gate_report,
        "devices": [] if record is None else describe_devices(session, record.model_id),
        "vault": None
        if vault is None
        else {
            "uri": vault.uri,
            "storage_class": vault.storage_class,
            "version_id": vault.version_id,
            "sha256": vault.sha256,
            "pack": vault.is_pack,
            "offset": asset.vault_offset,
            "length": asset.vault_length,
            "confirmed_at": vault.confirmed_at.isoformat() if vault.confirmed_at else None,
        },
        "history": [
            {"at": e.at.isoformat(), "event": e.kind, **e.detail} for e in queries.events_for(session, asset)
        ],
    }


@cli.command()
@click.argument("key")
@click.option(
    "--source",
    callback=canonical_source,
    help="The source URL, when the key exists in several (the oldest source's is shown otherwise).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--a1111", is_flag=True, help="Print the record as AUTOMATIC1111 infotext (its 'parameters' text)."
)
@pass_app
def show(app: App, key: str, source: str | None, as_json: bool, a1111: bool) -> None:
    """Show one asset: state, record, gate report, vault location and history.

    A key held by several sources names the oldest source's asset; the others are named, and
    --source shows one of them."""
    with app.catalog.begin() as session:
        scope = queries.scoped_source(session, source)
        resolved = queries.resolve_key(session, key, scope)
        info = describe_asset(session, resolved.asset) | {"other_sources": list(resolved.others)}
    if a1111:
        from archiver.engine.a1111 import format_parameters, from_record

        if info["record"] is None:
            raise NotFound(f"{key} has no record ({info['state']}): only archived assets have infotext")
        click.echo(format_parameters(from_record(info["record"])))
        return
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    console = Console()
    console.print(
        f"[bold]{info['key']}[/bold] in {info['source']}: {info['state']}"
        + (f" ({info['reason']}: {info['reason_detail']})" if info["reason"] else "")
    )
    if resolved.others:
        console.print(resolved.also_in(), highlight=False, soft_wrap=True)
    original = info["original"]
    console.print(
        f"original: {original['size']} bytes, sha256 {original['sha256']}, etag {original['etag']}"
        " (the bytes the vault keeps)",
        soft_wrap=True,
    )
    served = info["served"]
    if served:
        ratio = served["size_over_original"]
        console.print(
            f"served: {served['size']} bytes"
            + (f" ({ratio:.2f}x the original)" if ratio is not None else "")
            + f", sha256 {served['sha256']} (what reading it gives: the mount, serve, a rehydrate)",
            soft_wrap=True,
        )
        for code, why in served["size_notes"].items():
            console.print(f"  larger than the original? {code}: {why}", highlight=False, soft_wrap=True)
    if info["record"]:
        r = info["record"]
        console.print(
            f"record: model {r['model']}, seed {r['seed']}, {r['steps']} steps, {r['width']}x{r['height']}, "
            f"prompt {r['prompt']!r}"
        )
        metrics = info["gate_report"]["metrics"]
        console.print(
            "gate: "
            + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        )
        sketch = r["render_sketch"]
        console.print(
            f"verified on read: exact bytes, or the same image by its {len(sketch) // 2}-byte sketch"
            if sketch
            else "verified on read: exact bytes only (no sketch yet: its first exact render makes one)"
        )
        for d in info["devices"]:
            lowest = f", lowest {d['lowest_psnr']:.1f} dB" if d["lowest_psnr"] is not None else ""
            console.print(
                f"  on {describe_device(d['device'])}: {d['exact']} exact, {d['within_tolerance']} within "
                f"tolerance, {d['refused']} refused of {d['sampled']}{lowest}",
                highlight=False,
            )
    if info["vault"]:
        v = info["vault"]
        where = f" bytes {v['offset']}+{v['length']} of pack" if v["pack"] else ""
        console.print(f"vault:{where} {v['uri']} ({v['storage_class']}), sha256 {v['sha256']}")
    for event in info["history"]:
        console.print(f"  {event['at']}  {event['event']}")
