"""Benchmark: bytes per archived image, in the catalog and in an edge export. A table, then a JSON line.

    .venv/bin/python bench/records.py [--assets 10000,100000] [--example CATALOG] [--keep DIR]

1. Catalog: a throwaway SQLite catalog of N archived images, written through the catalog queries
   in the order a sweep writes them (discovered; record + verified; vault pack + vaulted; archived),
   in one transaction per 1,000 images. The images are the rumba catalogue at scale: a style number
   times 8 laces times 6 soles, keys like `catalogue/01234/rumba-red-white.png` (41-42 bytes),
   prompts like the example's with the style in them (75-80 bytes), S3 ETags, seeds 0-7, gate
   reports with this machine's software stack and the real DDIM scheduler config (one render and
   one gate profile, as one model's group has), and each record's render sketch (of a noise image:
   as random as a real render's). Bytes per image = the file (WAL checkpointed) over
   N; the record = the `records` table and its index over N (SQLite's dbstat).
2. Edge export of that catalog: bytes per record as raw JSON (the record with its profiles inlined,
   as `archiver show --json` prints record and gate report), canonical-compact (the edge value:
   profiles by id), zstd (level 19, each value alone) and zstd with the dictionary trained on the
   export (the dictionary itself counted apart); export and apply rates (a delta re-archiving 1% of
   the images and restoring 0.5%).
3. The example: the same export of the demo's catalog (`bash scripts/demo.sh`: the rumba example
   swept with the shipped model), upgraded on a copy if it is at an older schema; with no demo
   catalog, the example's 48 records written through the queries with made-up digests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LACES = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "black"]
SOLES = ["white", "black", "gum", "red", "blue", "green"]
BATCH = 1000
PACK = 1000  # originals per vault pack (pack_target 64 MiB of ~50 KB originals)


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def gate_report(rng: random.Random, software: dict[str, str]) -> dict[str, Any]:
    """A passing report shaped as `GateReport.to_dict()` writes it, with plausible measures."""
    psnr = rng.uniform(34.0, 39.5)
    nearest = rng.uniform(20.0, 30.0)
    return {
        "passed": True,
        "failures": [],
        "metrics": {
            "deterministic": True,
            "lpips": rng.uniform(0.0003, 0.0025),
            "worst_tile": rng.uniform(0.0006, 0.0045),
            "psnr": psnr,
            "colour_mean": rng.uniform(0.3, 0.9),
            "colour_worst": rng.uniform(1.2, 2.8),
            "sibling_margin_db": psnr - nearest,
            "nearest_sibling_psnr": nearest,
            "nearest_sibling_lpips": rng.uniform(0.05, 0.2),
            "nearest_sibling_colour": rng.uniform(10.0, 40.0),
        },
        "thresholds": {
            "lpips_max": 0.05,
            "worst_tile_max": 0.1,
            "psnr_min": 30.0,
            "colour_max": 3.0,
            "sibling_margin_db": 3.0,
            "tiles": 4.0,
        },
        "backbone": {"net": "alex", "backbone": "pretrained", "trunk_sha256": "44" * 32, "sha256": "cd" * 32},
        "software": software,
        "nearest_sibling": None,
    }


def write_catalog(path: Path, count: int, *, example: bool = False) -> str:
    """`count` archived images written through the catalog queries, as a sweep writes them."""
    from diffusers import DDIMScheduler

    from archiver.catalog import queries
    from archiver.catalog.database import open_catalog
    from archiver.catalog.models import AssetState, Source
    from archiver.engine.encoding import EncodingProfile
    from archiver.example.rumba import key_for, prompt_for
    from archiver.gate.sketch import sketch
    from archiver.gate.verdict import software_versions

    url = f"sqlite:///{path}"
    catalog = open_catalog(url)
    rng = random.Random(0)
    # Each record's sketch is of its own render (here noise: a real render's sketch is as random).
    nprng = np.random.default_rng(0)
    scheduler = dict(DDIMScheduler().config)
    software = software_versions()
    profiles = {
        "png": EncodingProfile(format="PNG", png_mode="RGB", png_bit_depth=8),
        "jpg": EncodingProfile(format="JPEG", jpeg_qtables=(tuple(range(1, 65)),), jpeg_subsampling=0),
    }
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with catalog.begin() as session:
        source_id = queries.get_or_add_source(session, "s3://shop-images/catalogue").id
        model_id = queries.add_model(
            session,
            name="rumba",
            sha256="5c" * 32,
            path="/models/rumba",
            pipeline_class="StableDiffusionPipeline",
        ).id
        encodings = {
            ext: queries.get_or_add_profile(session, p.profile_id, p.format, p.to_json()).id
            for ext, p in profiles.items()
        }
    for first in range(0, count, BATCH):
        with catalog.begin() as session:
            source = session.get(Source, source_id)
            assert source is not None
            pack = None
            for i in range(first, min(first + BATCH, count)):
                lace, sole = LACES[i % 8], SOLES[(i // 8) % 6]
                if example:
                    key, prompt = key_for(lace, sole), prompt_for(lace, sole)
                else:
                    style = i // 48
                    ext = "png" if (i % 8 + (i // 8) % 6) % 2 == 0 else "jpg"
                    key = f"catalogue/{style:05d}/rumba-{lace}-{sole}.{ext}"
                    prompt = f"a rumba sneaker, style {style:05d}, with {lace} laces and a {sole} sole"
                    prompt += ", product photo"
                size = rng.randint(2_000, 60_000)
                etag = '"' + hashlib.md5(key.encode()).hexdigest() + '"'
                asset = queries.add_asset(
                    session, source, key=key, size=size, etag=etag, last_modified=start + timedelta(minutes=i)
                )
                seed = rng.randrange(8)
                pixels = nprng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
                queries.save_record(
                    session,
                    asset,
                    model_id=model_id,
                    encoding_profile_id=encodings[key.rsplit(".", 1)[1]],
                    rendered_sha256=hashlib.sha256(f"render {key}".encode()).hexdigest(),
                    rendered_size=size - rng.randint(0, 300),
                    gate_report=gate_report(rng, software),
                    software=software,
                    pipeline_class="StableDiffusionPipeline",
                    scheduler_class="DDIMScheduler",
                    scheduler_config=scheduler,
                    prompt=prompt,
                    negative_prompt="",
                    seed=seed,
                    steps=20,
                    guidance_scale=1.0,
                    width=64,
                    height=64,
                    render_sketch=sketch(Image.fromarray(pixels)),
                )
                asset.sha256 = hashlib.sha256(key.encode()).hexdigest()
                queries.set_state(session, asset, AssetState.VERIFIED, seed=seed)
                if pack is None or i % PACK == 0:
                    digest = hashlib.sha256(f"pack {i // PACK}".encode()).hexdigest()
                    pack = queries.add_vault_object(
                        session,
                        uri=f"s3://shop-archive/packs/{digest}.tar",
                        key=f"packs/{digest}.tar",
                        storage_class="GLACIER",
                        version_id=None,
                        sha256=digest,
                        size=PACK * 30_000,
                        is_pack=True,
                        confirmed_at=start,
                    )
                asset.vault_object_id = pack.id
                asset.vault_offset, asset.vault_length = (i % PACK) * 30_000, size
                queries.set_state(session, asset, AssetState.VAULTED, vault_object=pack.id)
                queries.set_state(session, asset, AssetState.ARCHIVED)
                queries.release(session, asset)
    catalog.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url


def table_bytes(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())


def raw_json(catalog_url: str, limit: int) -> list[bytes]:
    """The first `limit` records as `archiver show --json` prints record and gate report: whole."""
    from archiver.catalog.database import open_catalog
    from archiver.catalog.models import Asset, AssetState
    from archiver.cli.inspect import describe_record

    catalog = open_catalog(catalog_url)
    with catalog.begin() as session:
        assets = (
            session.query(Asset).filter(Asset.state == AssetState.ARCHIVED).order_by(Asset.id).limit(limit)
        )
        found = [
            json.dumps({"record": describe_record(a.record), "gate_report": a.record.gate_report}).encode()
            for a in assets
            if a.record is not None
        ]
    catalog.close()
    return found


def edge_rows(catalog_url: str, work: Path, label: str, *, with_apply: bool) -> dict[str, Any]:
    """Bytes per record in the edge export of a catalog, and export (and apply) rates."""
    import zstandard

    from archiver.catalog import queries
    from archiver.catalog.database import open_catalog
    from archiver.catalog.models import Asset, AssetState
    from archiver.edge import keys
    from archiver.edge.bundle import apply_delta
    from archiver.edge.export import Scope, export, write
    from archiver.edge.records import LEVEL

    catalog = open_catalog(catalog_url)
    export_s, result = timed(lambda: export(catalog, Scope()))
    write_s, (bundle,) = timed(lambda: write(result, work / f"edge-{label}", "bundle"))
    n = result.records
    plain = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
    raw = raw_json(catalog_url, 2000)
    records = [v for k, v in result.entries.items() if k.startswith(keys.RECORD)]
    row: dict[str, Any] = {
        "catalog": label,
        "records": n,
        "raw_json": sum(map(len, raw)) / len(raw),
        "canonical": sum(map(len, result.values)) / n,
        "zstd": sum(len(plain.compress(v)) for v in result.values) / n,
        "zstd_dict": sum(map(len, records)) / n if result.dictionary else None,
        "dictionary_bytes": len(result.dictionary.data) if result.dictionary else 0,
        "note": result.note,
        "bundle_bytes": bundle.stat().st_size,
        "export_records_per_s": n / (export_s + write_s),
    }
    if with_apply:
        rng = random.Random(1)
        with catalog.begin() as session:
            ids = [asset_id for asset_id, *_ in queries.scoped_assets(session, "", None)]
            chosen = [session.get(Asset, i) for i in rng.sample(ids, max(2, n // 100))]
            for asset in chosen[: len(chosen) // 2]:
                queries.set_state(session, asset, AssetState.RESTORED)
            for asset in chosen[len(chosen) // 2 :]:
                assert asset is not None and asset.record is not None
                asset.record.seed += 1
                queries.set_state(session, asset, AssetState.ARCHIVED, seed=asset.record.seed)
        delta = export(catalog, Scope(), since=result.cursor)
        (delta_file,) = write(delta, work / f"edge-{label}-delta", "bundle")
        apply_s, applied = timed(lambda: apply_delta(delta_file, bundle))
        row |= {
            "delta_records": delta.records,
            "delta_tombstones": len(delta.tombstones),
            "apply_entries_per_s": (applied.put + len(delta.tombstones)) / apply_s,
            "apply_seconds": apply_s,
        }
    catalog.close()
    return row


def example_catalog(work: Path, given: Path | None) -> tuple[str, str]:
    """The demo's catalog (a copy, upgraded to this schema), else the example's 48 records written here."""
    from archiver.catalog.database import connect, schema_status, upgrade

    demo = given or REPO / "demo-home" / "archiver" / "catalog.db"
    if demo.is_file():
        copy = work / "example.db"
        shutil.copy(demo, copy)
        url = f"sqlite:///{copy}"
        with connect(url) as conn:
            was = schema_status(conn).current
        with connect(url) as conn:
            upgrade(conn)
        return url, f"the demo's catalog ({demo}, schema {was})"
    return write_catalog(work / "example.db", 48, example=True), "the example's 48 records, made-up digests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="10000,100000", help="catalog sizes, comma-separated")
    parser.add_argument("--example", type=Path, help="an example catalog.db (default: demo-home's)")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.assets.split(",") if n]
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-records-"))
    work.mkdir(parents=True, exist_ok=True)
    catalog_rows: list[dict[str, Any]] = []
    export_rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            path = work / f"catalog-{n}.db"
            for old in work.glob(f"catalog-{n}.db*"):
                old.unlink()
            write_s, url = timed(lambda: write_catalog(path, n))  # noqa: B023
            tables = table_bytes(path)
            record = tables.get("records", 0) + sum(
                v for k, v in tables.items() if "records" in k and k != "records"
            )
            catalog_rows.append(
                {
                    "assets": n,
                    "bytes_per_image": path.stat().st_size / n,
                    "record": record / n,
                    "asset": (
                        tables.get("assets", 0)
                        + tables.get("sqlite_autoindex_assets_1", 0)
                        + tables.get("ix_assets_state", 0)
                    )
                    / n,
                    "events": (tables.get("events", 0) + tables.get("ix_events_asset_id", 0)) / n,
                    "write_images_per_s": n / write_s,
                }
            )
            export_rows.append(edge_rows(url, work, f"{n} images", with_apply=True))
        url, described = example_catalog(work, args.example)
        export_rows.append(edge_rows(url, work, "example", with_apply=False) | {"source": described})
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    print(f"records benchmark on {machine}")
    columns = ("bytes/image", "record", "asset", "events", "written/s")
    print(f"\n{'catalog assets':>14} " + " ".join(f"{c:>11}" for c in columns))
    for r in catalog_rows:
        cells = (r["bytes_per_image"], r["record"], r["asset"], r["events"], r["write_images_per_s"])
        print(f"{r['assets']:>14} " + " ".join(f"{c:>11.0f}" for c in cells))
    columns = ("records", "raw JSON", "canonical", "zstd", "zstd+dict", "dict bytes", "export/s", "apply/s")
    print(f"\n{'edge export of':<16} " + " ".join(f"{c:>10}" for c in columns))
    for r in export_rows:
        cells = [
            f"{r['records']}",
            f"{r['raw_json']:.0f}",
            f"{r['canonical']:.1f}",
            f"{r['zstd']:.1f}",
            f"{r['zstd_dict']:.1f}" if r["zstd_dict"] is not None else "-",
            f"{r['dictionary_bytes']}",
            f"{r['export_records_per_s']:.0f}",
            f"{r['apply_entries_per_s']:.0f}" if "apply_entries_per_s" in r else "-",
        ]
        print(f"{r['catalog']:<16} " + " ".join(f"{c:>10}" for c in cells))
    for r in export_rows:
        print(f"  {r['catalog']}: {r['note']}" + (f"; {r['source']}" if "source" in r else ""))
    print(json.dumps({"bench": "records", "device": machine, "catalog": catalog_rows, "edge": export_rows}))


if __name__ == "__main__":
    main()
