"""Benchmark: rebuilding the catalog from the vault alone, per 10,000 assets. A table, then a JSON line.

    .venv/bin/python bench/rebuild.py [--assets 10000,30000] [--database-url URL]

For each N: a throwaway local vault holding what a sweep of N archived images leaves there: the
journal (synthetic entries shaped as `archiver.journal.put_entry` writes them, in segments of
`SEGMENT_ENTRIES`; the rumba catalogue at scale: keys like `catalogue/01234/rumba-red-white.png`,
prompts of 75-80 bytes, S3 ETags, 10 gate metrics), one render and one gate profile and two
encoding profiles, and one small stand-in object per pack of 1,000 originals (so fsck's HEADs find
them). Then, timed: reading and decoding the journal; `archiver.rebuild` into an empty catalog
(SQLite by default; `--database-url` for PostgreSQL, which must be empty); the same rebuild again
(a merge that changes nothing); and `archiver.fsck` without --read-data (the local vault's HEAD is
a stat and a sidecar read; on S3 it is one request per vault object, not per asset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archiver.catalog import profiles  # noqa: E402
from archiver.catalog.database import open_catalog  # noqa: E402
from archiver.fsck import fsck  # noqa: E402
from archiver.journal import JournalWriter, micros, read_journal  # noqa: E402
from archiver.rebuild import rebuild  # noqa: E402
from archiver.storage import LocalVault  # noqa: E402
from archiver.storage.vault_format import pack_key, profile_key  # noqa: E402

LACES = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "black"]
SOLES = ["white", "black", "gum", "red", "blue", "green"]
PACK = 1000
METRICS = ["lpips", "worst_tile", "psnr", "colour", "sibling_margin", "nearest_sibling_lpips",
           "nearest_sibling_psnr", "determinism", "render_size", "seed_tries"]  # fmt: skip


def shared(vault: LocalVault) -> dict[str, str]:
    """The profiles the entries name, in the vault; their content ids."""
    spec = {
        "pipeline_class": "StableDiffusionPipeline",
        "scheduler_class": "DDIMScheduler",
        "scheduler_config": {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear"},
        "steps": 20,
        "guidance_scale": 1.0,
        "width": 64,
        "height": 64,
    }
    render = profiles.render_profile_doc(spec, {"torch": "2.5", "diffusers": "0.31", "python": "3.11"})
    gate = profiles.gate_profile_doc(
        {
            "thresholds": {"lpips_max": 0.05, "psnr_min": 30},
            "backbone": {"name": "alex"},
            "metrics": dict.fromkeys(METRICS),
        }
    )
    ids = {}
    for kind, body in (("render", profiles.canonical_json(render)), ("gate", profiles.canonical_json(gate))):
        ids[kind] = hashlib.sha256(body).hexdigest()
        vault.put(profile_key(kind, ids[kind]), body, storage_class="STANDARD")
    for fmt in ("PNG", "JPEG"):
        body = json.dumps({"format": fmt, "mode": "RGB"}).encode()
        ids[fmt] = hashlib.sha256(body).hexdigest()
        vault.put(profile_key("encoding", ids[fmt]), body, storage_class="STANDARD")
    return ids


def entries(n: int, ids: dict[str, str], vault: LocalVault, rng: random.Random) -> list[dict[str, Any]]:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    found = []
    packs: dict[int, tuple[str, str, int]] = {}
    for i in range(n):
        style, lace, sole = i // 48, LACES[i % 8], SOLES[(i // 8) % 6]
        if i // PACK not in packs:
            data = f"pack {i // PACK}".encode()
            sha = hashlib.sha256(data).hexdigest()
            vault.put(pack_key(sha), data)
            packs[i // PACK] = (pack_key(sha), sha, len(data))
        key, sha, size = packs[i // PACK]
        png = i % 2 == 0
        found.append(
            {
                "op": "put",
                "at": micros(at + timedelta(microseconds=i)),
                "w": "bench:1:0",
                "src": "s3://shop/catalogue",
                "k": f"catalogue/{style:05d}/rumba-{lace}-{sole}.{'png' if png else 'jpg'}",
                "o": {
                    "h": rng.randbytes(32).hex(),
                    "z": rng.randrange(30_000, 80_000),
                    "e": f'"{rng.randbytes(16).hex()}"',
                    "t": micros(at),
                },
                "v": {
                    "k": key,
                    "h": sha,
                    "z": size,
                    "c": "GLACIER",
                    "p": True,
                    "ca": micros(at),
                    "off": 512 + (i % PACK) * 50_000,
                    "len": 49_000,
                },
                "r": {
                    "p": f"a rumba sneaker, style {style}, {lace} laces, a {sole} sole, product photo",
                    "s": rng.randrange(8),
                    "r": ids["render"],
                    "g": ids["gate"],
                    "e": ids["PNG" if png else "JPEG"],
                    "h": rng.randbytes(32).hex(),
                    "z": rng.randrange(30_000, 80_000),
                    "x": [round(rng.random(), 4) for _ in METRICS],
                },
                "m": {"h": "ab" * 32, "n": "rumba", "c": "StableDiffusionPipeline", "path": "/models/rumba"},
            }
        )
    return found


def measure(n: int, database_url: str | None) -> dict[str, Any]:
    rng = random.Random(n)
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        vault = LocalVault(Path(tmp) / "vault", "GLACIER")
        ids = shared(vault)
        docs = entries(n, ids, vault, rng)
        JournalWriter(vault, "STANDARD", "bench:1:0").append(docs, datetime.now(UTC))
        journal_bytes = sum(p.stat().st_size for p in (Path(tmp) / "vault" / "journal").iterdir())
        started = time.perf_counter()
        read_journal(vault)
        read_s = time.perf_counter() - started
        catalog = open_catalog(database_url or f"sqlite:///{tmp}/catalog.db")
        first = rebuild(catalog, vault)
        again = rebuild(catalog, vault)
        started = time.perf_counter()
        checked = fsck(catalog, vault)
        fsck_s = time.perf_counter() - started
        catalog.close()
    assert first.created == n and again.unchanged == n and not checked.findings, checked.findings[:3]
    per = 10_000 / n
    return {
        "assets": n,
        "journal_bytes_per_asset": round(journal_bytes / n, 1),
        "read_journal_s_per_10k": round(read_s * per, 2),
        "rebuild_s_per_10k": round(first.seconds * per, 2),
        "rebuild_again_s_per_10k": round(again.seconds * per, 2),
        "fsck_s_per_10k": round(fsck_s * per, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="10000,30000")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a SQLite file)")
    args = parser.parse_args()
    rows = [measure(int(n), args.database_url) for n in args.assets.split(",")]
    backend = "postgresql" if args.database_url else "sqlite"
    print(f"rebuild from the vault ({backend}, local vault; {os.cpu_count()} cores, {platform.processor()})")
    print(
        "| assets | journal B/asset | read journal s/10k | rebuild s/10k | rebuild again s/10k | fsck s/10k |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['assets']:,} | {r['journal_bytes_per_asset']} | {r['read_journal_s_per_10k']} | "
            f"{r['rebuild_s_per_10k']} | {r['rebuild_again_s_per_10k']} | {r['fsck_s_per_10k']} |"
        )
    print(json.dumps({"bench": "rebuild", "backend": backend, "rows": rows}))


if __name__ == "__main__":
    main()
