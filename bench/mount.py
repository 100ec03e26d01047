"""Benchmark: the mount, before and after, and its peers. Prints a table, then a JSON line.

    .venv/bin/python bench/mount.py [--entries 100000] [--rounds 200] [--size 256] [--keep DIR]
                                    [--before REV] [--peer-entries 10000]

Each figure is measured for "after" (this tree) and "before" (the archiver of commit `--before`,
the fusepy/libfuse2 adapter, run from an export of that commit; skipped, saying so, when fusepy or
git is missing), in the same run, and for rclone mount and s3fs over moto's S3 on loopback where
they are installed (`apt-get install rclone s3fs`; skipped, saying so, otherwise).

1. Reads: a tiny model and four SIZExSIZE images it regenerates exactly (the tests' `memorized` recipe:
   each image is the untrained model's own render, so it is noise and compresses badly) are
   swept into a throwaway home and mounted (`archiver mount --foreground`, a real FUSE mount).
   Cold read = open + read of a file nobody has read: the first one right after mounting (the
   model may still be loading: the read waits for it), and once the mount logged "ready" (models
   loaded), against a render of an uncached file (median); restart read = the same after
   remounting (served from the on-disk cache, re-hashed); warm throughput = reading every file
   `--rounds` times through the mount (the kernel keeps verified files in its page cache) against
   the same bytes read from a local directory, as a ratio.
2. Listing: `--entries` archived assets in one directory of a throwaway SQLite catalog (inserted
   with the catalog models in bulk; all share one model and one profile of each kind): the index
   load (one query), a listing from the tree model, and `os.listdir` / `ls -f` / `os.scandir`+stat
   through a mount.
3. Peers: the same four files and `--peer-entries` empty objects in a bucket on moto (127.0.0.1),
   mounted with rclone (`--vfs-cache-mode full`) and s3fs; warm reads and scandir + stat.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
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

    def __init__(self, env: dict[str, str], point: Path, log: Path, tree: Path = REPO) -> None:
        point.mkdir(exist_ok=True)
        self.point, self.log = point, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "archiver", "mount", str(point), "--foreground"],
                env=env,
                cwd=tree,  # `-m archiver` takes the package from the working directory first
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300
        while not os.path.ismount(point):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                sys.exit(f"bench/mount: the mount did not come up: {log.read_text()[-500:]}")
            time.sleep(0.02)

    def wait_for(self, text: str, seconds: float = 300) -> bool:
        """Whether the mount's log says `text` within `seconds`."""
        deadline = time.monotonic() + seconds
        while text not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                return False
            time.sleep(0.02)
        return True

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


def bench_reads(work: Path, home: Path, rounds: int, tree: Path, variant: str) -> list[dict[str, Any]]:
    """Cold, warm and restart reads through a mount of a fresh copy of `home` (empty cache)."""
    home = shutil.copytree(home, work / f"home-{variant}", ignore=shutil.ignore_patterns("cache"))
    env = env_for(home, ARCHIVER_DEVICE="cpu")
    keys = sorted(PROMPTS)
    rows: list[dict[str, Any]] = []
    with Mounted(env, work / f"mp-{variant}", work / f"mount-{variant}.log", tree) as mount:
        paths = [mount.point / k for k in keys]
        first, _ = timed(paths[0].read_bytes)
        rows.append({"case": "first read right after mounting (waits for the model)", "seconds": first})
        if mount.wait_for("ready:", 5):  # the preload: only "after" has it
            ready, _ = timed(paths[1].read_bytes)
            rows.append({"case": "first read once the mount is ready", "seconds": ready})
        renders = [timed(p.read_bytes)[0] for p in paths[2:]]
        rows.append(
            {
                "case": f"render of an uncached file (median of {len(renders)})",
                "seconds": statistics.median(renders),
            }
        )
        local = work / f"local-{variant}"
        local.mkdir()
        for p in paths:
            (local / p.name).write_bytes(p.read_bytes())
        rows += warm_reads(paths, [local / p.name for p in paths], rounds)
    with Mounted(env, work / f"mp-{variant}", work / f"mount2-{variant}.log", tree) as mount:
        restart = [timed((mount.point / k).read_bytes)[0] for k in keys]  # the disk cache serves
        rows.append(
            {"case": "read after remount (disk cache, re-hashed)", "seconds": statistics.median(restart)}
        )
    return [{"variant": variant, **r} for r in rows]


def warm_reads(paths: list[Path], local_paths: list[Path], rounds: int) -> list[dict[str, Any]]:
    """Every file read `rounds` times through `paths`, and the same bytes from a local directory."""
    read_all(paths, 3)  # warm both sides up
    mount_s, nbytes = timed(lambda: read_all(paths, rounds))
    read_all(local_paths, 3)
    local_s, _ = timed(lambda: read_all(local_paths, rounds))
    size = nbytes / rounds / len(paths)
    return [
        {
            "case": f"warm read, mount ({rounds}x{len(paths)} files of {size / 1000:.1f} kB)",
            "seconds": mount_s,
            "mb_per_s": nbytes / mount_s / 1e6,
            "files_per_s": rounds * len(paths) / mount_s,
        },
        {
            "case": "warm read, local disk (same bytes)",
            "seconds": local_s,
            "mb_per_s": nbytes / local_s / 1e6,
            "files_per_s": rounds * len(paths) / local_s,
        },
        {"case": "warm throughput ratio, mount / local", "ratio": local_s / mount_s},
    ]


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


def bench_tree(work: Path, entries: int) -> tuple[str, list[dict[str, Any]]]:
    """The big catalog's URL, and the tree model's own figures (no mount)."""
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
    return url, [{"variant": "tree", **r} for r in rows]


def bench_listing(work: Path, url: str, entries: int, tree: Path, variant: str) -> list[dict[str, Any]]:
    env = env_for(work / f"home-big-{variant}", ARCHIVER_DATABASE_URL=url, ARCHIVER_DEVICE="cpu")
    point = work / f"mp-big-{variant}"
    mount_s, mount = timed(lambda: Mounted(env, point, work / f"mount-big-{variant}.log", tree))
    with mount:
        first_s, listed = timed(lambda: os.listdir(point / "big"))
        again_s, _ = timed(lambda: os.listdir(point / "big"))
        ls_s, _ = timed(
            lambda: subprocess.run(["ls", "-f", str(point / "big")], stdout=subprocess.DEVNULL, check=True)
        )
        stat_s, _ = timed(lambda: sum(1 for e in os.scandir(point / "big") if e.stat().st_size))
        stat_again_s, _ = timed(lambda: sum(1 for e in os.scandir(point / "big") if e.stat().st_size))
        assert len(listed) == entries
    rows = [
        {"case": "mount: start until mounted (index loaded)", "seconds": mount_s},
        {"case": f"mount: os.listdir of {entries} entries, first", "seconds": first_s},
        {"case": f"mount: os.listdir of {entries} entries, again", "seconds": again_s},
        {"case": f"mount: ls -f of {entries} entries", "seconds": ls_s},
        {"case": f"mount: scandir + stat of {entries} entries", "seconds": stat_s},
        {"case": f"mount: scandir + stat of {entries} entries, again", "seconds": stat_again_s},
    ]
    return [{"variant": variant, **r} for r in rows]


def before_tree(work: Path, rev: str) -> tuple[Path | None, str]:
    """An export of commit `rev`'s archiver (its fusepy adapter), or None and why not."""
    if importlib.util.find_spec("fuse") is None:
        return None, "fusepy is not installed (pip install fusepy==3.0.1 to measure it)"
    tree = work / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "archiver", "fusefs", "migrations", "alembic.ini"],
        capture_output=True,
    )
    if archive.returncode != 0:
        return None, f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}"
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree, ""


class PeerMount:
    """rclone mount or s3fs over a bucket on moto, in the foreground, unmounted on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], point: Path, log: Path) -> None:
        point.mkdir(exist_ok=True)
        self.point = point
        with open(log, "wb") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.ismount(point):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(log.read_text(errors="replace")[-300:])
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["fusermount", "-u", "-z", str(self.point)], capture_output=True)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def scandir_stat(directory: Path) -> int:
    """os.scandir + stat of every entry: what `ls -l`, `find -size` and rsync do."""
    return sum(1 for e in os.scandir(directory) if e.stat().st_size >= 0)


def bench_peers(work: Path, local: Path, rounds: int, entries: int) -> list[dict[str, Any]]:
    """Warm reads and scandir + stat through rclone mount and s3fs over moto's S3 on loopback."""
    peers = {"rclone": shutil.which("rclone"), "s3fs": shutil.which("s3fs")}
    rows: list[dict[str, Any]] = [
        {"variant": name, "case": "skipped: not installed (apt-get install rclone s3fs)"}
        for name, found in peers.items()
        if found is None
    ]
    if not any(peers.values()):
        return rows
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from moto.server import ThreadedMotoServer

    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    os.environ.update(credentials | {"AWS_DEFAULT_REGION": "us-east-1"})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        files = sorted(local.iterdir())
        for f in files:
            s3.put_object(Bucket="bench", Key=f"shoes/{f.name}", Body=f.read_bytes())
        setup_s, _ = timed(
            lambda: list(
                ThreadPoolExecutor(8).map(
                    lambda i: s3.put_object(Bucket="bench", Key=f"big/{i:07d}.png", Body=b""), range(entries)
                )
            )
        )
        rows.append(
            {"variant": "peers", "case": f"put {entries} empty objects into moto (setup)", "seconds": setup_s}
        )
        passwd = work / "s3fs-passwd"
        passwd.write_text("testing:testing\n")
        passwd.chmod(0o600)
        argvs = {
            "rclone": [
                "rclone", "mount", "moto:bench", "{point}", "--vfs-cache-mode", "full",
                "--cache-dir", str(work / "rclone-cache"), "--dir-cache-time", "1h",
            ],
            "s3fs": [
                "s3fs", "bench", "{point}", "-f", "-o", f"url={url}", "-o", "use_path_request_style",
                "-o", f"passwd_file={passwd}", "-o", "endpoint=us-east-1",
            ],
        }  # fmt: skip
        # rclone refuses a custom CA bundle on a plain-HTTP endpoint: keep the machine's out of it
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_CA_BUNDLE", "SSL_CERT_FILE")} | {
            "RCLONE_CONFIG_MOTO_TYPE": "s3",
            "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
            "RCLONE_CONFIG_MOTO_ENDPOINT": url,
            "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": "testing",
            "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": "testing",
        }
        for name, found in peers.items():
            if found is None:
                continue
            point = work / f"mp-{name}"
            argv = [a.replace("{point}", str(point)) for a in argvs[name]]
            try:
                mount = PeerMount(argv, env, point, work / f"{name}.log")
            except RuntimeError as exc:
                rows.append({"variant": name, "case": f"skipped: the mount did not come up: {exc}"})
                continue
            try:
                paths = [point / "shoes" / f.name for f in files]
                peer_rows = warm_reads(paths, files, rounds)
                stat_s, n = timed(functools.partial(scandir_stat, point / "big"))
                again_s, _ = timed(functools.partial(scandir_stat, point / "big"))
                assert n == entries, (name, n)
                peer_rows += [
                    {"case": f"mount: scandir + stat of {entries} entries", "seconds": stat_s},
                    {"case": f"mount: scandir + stat of {entries} entries, again", "seconds": again_s},
                ]
                rows += [{"variant": name, **r} for r in peer_rows]
            finally:
                mount.close()
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--size", type=int, default=256, help="image side: an untrained model's render (noise)"
    )
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    parser.add_argument(
        "--before", default="3cec4b7", help="the commit measured as 'before' (the last fusepy adapter)"
    )
    parser.add_argument("--peer-entries", type=int, default=10_000, help="objects listed through the peers")
    args = parser.parse_args()
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount") is None:
        sys.exit("bench/mount: needs /dev/fuse and fusermount (scripts/setup.sh installs them)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-mount-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        home = swept_home(work, args.size)
        url, rows = bench_tree(work, args.entries)
        before, why_not = before_tree(work, args.before)
        variants = [("after", REPO)] + ([("before", before)] if before is not None else [])
        if before is None:
            rows.append({"variant": "before", "case": f"skipped: {why_not}"})
        for variant, tree in variants:
            rows += bench_reads(work, home, args.rounds, tree, variant)
            rows += bench_listing(work, url, args.entries, tree, variant)
        rows += bench_peers(work, work / "local-after", args.rounds, args.peer_entries)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(f"mount benchmark on {machine}")
    print(f"{'variant':8} {'case':58} {'seconds':>9} {'MB/s':>9} {'files/s':>9} {'ratio':>7}")
    for r in rows:
        cells = [
            f"{r['seconds']:.4f}" if "seconds" in r else "-",
            f"{r['mb_per_s']:.1f}" if "mb_per_s" in r else "-",
            f"{r['files_per_s']:.0f}" if "files_per_s" in r else "-",
            f"{r['ratio']:.3f}" if "ratio" in r else "-",
        ]
        print(f"{r['variant']:8} {r['case']:58} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {cells[3]:>7}")
    print(json.dumps({"bench": "mount", "device": machine, "rows": rows}))


if __name__ == "__main__":
    main()
