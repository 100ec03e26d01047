"""Benchmark: the mount. Prints a table, then a JSON line.

    .venv/bin/python bench/mount.py [--entries 100000] [--rounds 200] [--size 256] [--keep DIR]

1. Reads: a tiny model and four SIZExSIZE images it regenerates exactly (the tests' `memorized` recipe:
   each image is the untrained model's own render, so it is noise and compresses badly) are
   swept into a throwaway home and mounted (`archiver mount --foreground`, a real FUSE mount).
   Cold read = open + read of a file nobody has read (the first also loads the model); restart
   read = the same after remounting (served from the on-disk cache, re-hashed); warm throughput =
   reading every file `--rounds` times through the mount (the kernel keeps verified files in its
   page cache: keep_cache) against the same bytes read from a local directory, as a ratio.
2. Listing: `--entries` archived assets in one directory of a throwaway SQLite catalog (inserted
   with the catalog models in bulk; all share one model and one profile of each kind): the index
   load (one query), a listing from the tree model, and `os.listdir` / `ls -f` / `os.scandir`+stat
   through a mount.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPTS = {
    f"shoes/tiny-{colour}.{'png' if i % 2 == 0 else 'jpg'}": (
        f"a rumba sneaker with {colour} laces and a white sole, product photo"
    )
    for i, colour in enumerate(["red", "blue", "green", "pink"])
}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    return env | {
        "ARCHIVER_HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "no-config"),
        "ARCHIVER_SEED_SEARCH_MAX": "2",
        "ARCHIVER_SEED_SEARCH_BATCH": "1",
        **extra,
    }


def archiver(env: dict[str, str], *argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "archiver", *argv], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench/mount: archiver {' '.join(argv)} failed: {done.stderr.strip()[-500:]}")


def swept_home(work: Path, size: int) -> Path:
    """A home holding four archived SIZExSIZE images that the tiny model regenerates exactly."""
    from archiver.engine.encoding import capture_profile, encode
    from archiver.engine.pipeline import TinySpec, build_tiny_pipeline, load_pipeline
    from archiver.engine.rendering import enable_determinism, render_batch
    from archiver.example.rumba import write_catalogue

    enable_determinism()
    model = work / "model"
    build_tiny_pipeline(TinySpec(vocabulary=list(PROMPTS.values()), image_size=size), seed=0).save_pretrained(
        model, safe_serialization=True
    )
    example = write_catalogue(work / "rumba")
    profiles = {
        fmt: capture_profile(next(e for e in example if e.format == fmt).path.read_bytes())
        for fmt in ("PNG", "JPEG")
    }
    pipe = load_pipeline(model)
    hot = work / "hot"
    for key, prompt in PROMPTS.items():
        (image,) = render_batch(
            pipe,
            prompt=prompt,
            negative_prompt=None,
            seeds=[0],
            steps=2,
            guidance_scale=1.0,
            width=size,
            height=size,
            eta=0.0,
            device="cpu",
        )
        (hot / key).parent.mkdir(parents=True, exist_ok=True)
        (hot / key).write_bytes(encode(image, profiles["PNG" if key.endswith(".png") else "JPEG"]))
    (model / "captions.json").write_text(json.dumps(PROMPTS))
    (model / "training.json").write_text(
        json.dumps({"render": {"steps": 2, "guidance_scale": 1.0, "eta": 0.0}})
    )
    env = env_for(work / "home")
    archiver(env, "model", "add", str(model), "--name", "tiny")
    archiver(env, "sweep", str(hot), "--model", "tiny")
    return work / "home"


class Mounted:
    """`archiver mount POINT --foreground` in a child process, unmounted on exit whatever happens."""

    def __init__(self, env: dict[str, str], point: Path, log: Path) -> None:
        point.mkdir(exist_ok=True)
        self.point = point
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "archiver", "mount", str(point), "--foreground"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300
        while not os.path.ismount(point):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                sys.exit(f"bench/mount: the mount did not come up: {log.read_text()[-500:]}")
            time.sleep(0.02)

    def __enter__(self) -> Mounted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        subprocess.run(["fusermount", "-u", "-z", str(self.point)], capture_output=True)


def read_all(paths: list[Path], rounds: int) -> int:
    total = 0
    for _ in range(rounds):
        for path in paths:
            with open(path, "rb") as f:
                total += len(f.read())
    return total


def bench_reads(work: Path, rounds: int, size: int) -> list[dict[str, Any]]:
    home = swept_home(work, size)
    env = env_for(home, ARCHIVER_DEVICE="cpu")
    keys = sorted(PROMPTS)
    rows: list[dict[str, Any]] = []
    with Mounted(env, work / "mp", work / "mount.log") as mount:
        paths = [mount.point / k for k in keys]
        first, _ = timed(paths[0].read_bytes)
        cold = [timed(p.read_bytes)[0] for p in paths[1:]]
        rows.append({"case": "cold read: first file (model load + render)", "seconds": first})
        rows.append(
            {"case": f"cold read: render (median of {len(cold)})", "seconds": statistics.median(cold)}
        )
        local = work / "local"
        local.mkdir()
        for p in paths:
            (local / p.name).write_bytes(p.read_bytes())
        read_all(paths, 3)  # warm both sides up
        mount_s, nbytes = timed(lambda: read_all(paths, rounds))
        local_paths = [local / p.name for p in paths]
        read_all(local_paths, 3)
        local_s, _ = timed(lambda: read_all(local_paths, rounds))
        size = statistics.mean(len(p.read_bytes()) for p in paths)
        rows.append(
            {
                "case": f"warm read, mount ({rounds}x{len(paths)} files of {size / 1000:.1f} kB)",
                "seconds": mount_s,
                "mb_per_s": nbytes / mount_s / 1e6,
                "files_per_s": rounds * len(paths) / mount_s,
            }
        )
        rows.append(
            {
                "case": "warm read, local disk (same bytes)",
                "seconds": local_s,
                "mb_per_s": nbytes / local_s / 1e6,
                "files_per_s": rounds * len(paths) / local_s,
            }
        )
        rows.append({"case": "warm throughput ratio, mount / local", "ratio": local_s / mount_s})
    with Mounted(env, work / "mp", work / "mount2.log") as mount:  # a restart: the disk cache serves
        restart = [timed((mount.point / k).read_bytes)[0] for k in keys]
        rows.append(
            {"case": "read after remount (disk cache, re-hashed)", "seconds": statistics.median(restart)}
        )
    return rows


def big_catalog(work: Path, entries: int) -> str:
    """A throwaway catalog with `entries` archived assets in one directory, inserted in bulk."""
    from sqlalchemy import insert

    from archiver.catalog import queries
    from archiver.catalog.database import open_catalog
    from archiver.catalog.models import Asset, AssetState, Record

    url = f"sqlite:///{work / 'big.db'}"
    catalog = open_catalog(url)
    now = datetime(2020, 1, 1, tzinfo=UTC)
    with catalog.begin() as session:
        source = queries.get_or_add_source(session, "file:///bench/hot")
        model = queries.add_model(session, name="bench", sha256="ab" * 32, path="/m", pipeline_class="P")
        profile = queries.get_or_add_profile(session, "cd" * 32, "PNG", b"{}")
        spec = dict(pipeline_class="P", scheduler_class="S", scheduler_config={}, steps=2, guidance_scale=1.0)
        render = queries.get_or_add_render_profile(session, spec | dict(width=64, height=64), {})
        gate = queries.get_or_add_gate_profile(session, {})
        source_id, model_id, profile_id = source.id, model.id, profile.id
        render_id, gate_id = render.id, gate.id
    for start in range(0, entries, 20_000):
        ids = range(start + 1, min(start + 20_000, entries) + 1)
        with catalog.begin() as session:
            session.execute(
                insert(Asset),
                [
                    dict(
                        id=i,
                        source_id=source_id,
                        key=f"big/{i:07d}.png",
                        state=AssetState.ARCHIVED,
                        size=50_000,
                        last_modified=now,
                        sha256=f"{i:064x}",
                    )
                    for i in ids
                ],
            )
            session.execute(
                insert(Record),
                [
                    dict(
                        asset_id=i,
                        model_id=model_id,
                        encoding_profile_id=profile_id,
                        render_profile_id=render_id,
                        gate_profile_id=gate_id,
                        prompt="a product photo",
                        seed=i,
                        rendered_sha256=f"{i:064x}",
                        rendered_size=48_000,
                        metrics=[],
                    )
                    for i in ids
                ],
            )
    catalog.close()
    return url


def bench_listing(work: Path, entries: int) -> list[dict[str, Any]]:
    from archiver.catalog import queries
    from archiver.catalog.database import open_catalog
    from fusefs.tree import Tree

    insert_s, url = timed(lambda: big_catalog(work, entries))
    catalog = open_catalog(url)
    tree = Tree(catalog)
    load_s, index = timed(tree.index)
    list_s, names = timed(lambda: tree.readdir("/big"))
    assert len(names) == entries == len(index.files)
    with catalog.begin() as session:
        fingerprint_s, _ = timed(lambda: queries.mount_fingerprint(session))
    catalog.close()
    rows: list[dict[str, Any]] = [
        {"case": f"insert {entries} archived rows (bulk, setup)", "seconds": insert_s},
        {"case": f"tree: load the index ({entries} entries, one query)", "seconds": load_s},
        {"case": "tree: list the directory", "seconds": list_s},
        {"case": "tree: staleness check (fingerprint query)", "seconds": fingerprint_s},
    ]
    env = env_for(work / "home-big", ARCHIVER_DATABASE_URL=url, ARCHIVER_DEVICE="cpu")
    point = work / "mp-big"
    mount_s, mount = timed(lambda: Mounted(env, point, work / "mount-big.log"))
    with mount:
        first_s, listed = timed(lambda: os.listdir(point / "big"))
        again_s, _ = timed(lambda: os.listdir(point / "big"))
        ls_s, _ = timed(
            lambda: subprocess.run(["ls", "-f", str(point / "big")], stdout=subprocess.DEVNULL, check=True)
        )
        stat_s, _ = timed(lambda: sum(1 for e in os.scandir(point / "big") if e.stat().st_size))
        assert len(listed) == entries
    rows += [
        {"case": "mount: start until mounted (index loaded)", "seconds": mount_s},
        {"case": f"mount: os.listdir of {entries} entries, first", "seconds": first_s},
        {"case": f"mount: os.listdir of {entries} entries, again", "seconds": again_s},
        {"case": f"mount: ls -f of {entries} entries", "seconds": ls_s},
        {"case": f"mount: scandir + stat of {entries} entries", "seconds": stat_s},
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--size", type=int, default=256, help="image side: an untrained model's render (noise)"
    )
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    args = parser.parse_args()
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount") is None:
        sys.exit("bench/mount: needs /dev/fuse and fusermount (scripts/setup.sh installs them)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-mount-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = bench_reads(work, args.rounds, args.size) + bench_listing(work, args.entries)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    print(f"mount benchmark on {machine}")
    print(f"{'case':58} {'seconds':>9} {'MB/s':>9} {'files/s':>9} {'ratio':>7}")
    for r in rows:
        cells = [
            f"{r['seconds']:.4f}" if "seconds" in r else "-",
            f"{r['mb_per_s']:.1f}" if "mb_per_s" in r else "-",
            f"{r['files_per_s']:.0f}" if "files_per_s" in r else "-",
            f"{r['ratio']:.2f}" if "ratio" in r else "-",
        ]
        print(f"{r['case']:58} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {cells[3]:>7}")
    print(json.dumps({"bench": "mount", "device": machine, "rows": rows}))


if __name__ == "__main__":
    main()
