"""Benchmark: the mount, before and after, and its peers. Prints a table, then a JSON line.

    .venv/bin/python bench/mount.py [--entries 100000] [--rounds 500] [--repeats 7] [--size 256]
                                    [--keep DIR] [--before REV] [--peer-entries 10000]

Each figure is measured for "after" (this tree) and "before" (the archiver of commit `--before`,
the fusepy/libfuse2 adapter, run from an export of that commit; skipped, saying so, when fusepy or
git is missing), in the same run, and for rclone mount and s3fs over moto's S3 on loopback where
they are installed (`apt-get install rclone s3fs`; skipped, saying so, otherwise). Every timed row
carries the 1-minute load average when it was taken: compare within one run.

1. Reads: a tiny model and four SIZExSIZE images it regenerates exactly (the tests' `memorized` recipe:
   each image is the untrained model's own render, so it is noise and compresses badly) are
   swept into a throwaway home and mounted (`archiver mount --foreground`, a real FUSE mount).
   `archiver model check --sample 1` runs first, so the mount's first-use device check (which
   renders three records in the background at the first model use) has nothing to do and does not
   compete with the reads measured. Cold read = open + read of a file nobody has read: the first
   one right after mounting (the model may still be loading: the read waits for it), and once the
   mount logged "ready" (models loaded), against a render of an uncached file (median); restart
   read = the same after remounting (served from the on-disk cache, re-hashed). Warm throughput =
   every file read `--rounds` times through the mount (the kernel keeps verified files in its page
   cache) and from a local directory holding the same bytes, alternately, `--repeats` times
   (median, min and max of the ratios), with three loops: Python's `open()` + read (buffered: each
   open asks isatty, an ioctl that FUSE forwards to the file system on every call), `open()` with an
   explicit `buffering=` (CPython then asks no isatty: no ioctl) and os.open +
   os.read (what cat, cp and tar do).
2. Listing: `--entries` archived assets in one directory of a throwaway SQLite catalog (inserted
   with the catalog models in bulk; all share one model and one profile of each kind): the index
   load (one query), a listing from the tree model, and `os.scandir` + stat (what ls -l, find -size
   and rsync do), `os.listdir` and `ls -f` through a mount: the first listing right after mounting
   (the models load meanwhile), then, on fresh mounts once "ready", the first listing (3 mounts)
   and a repeated one.
3. Peers: the same four files and `--peer-entries` empty objects in a bucket on moto (127.0.0.1),
   mounted with rclone (`--vfs-cache-mode full`) and s3fs; warm reads (fewer rounds: they are
   slow) and scandir + stat.
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


def load() -> float:
    """The 1-minute load average: other work on the machine, to read each figure against."""
    return round(os.getloadavg()[0], 1)


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
    # The device check on record: the mounts' first-use check then renders nothing alongside the reads
    archiver(env | {"ARCHIVER_DEVICE": "cpu"}, "model", "check", "tiny", "--sample", "1")
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


def read_open(paths: list[Path], rounds: int) -> int:
    """Python's open() + read: buffered, so each open asks isatty (an ioctl)."""
    total = 0
    for _ in range(rounds):
        for path in paths:
            with open(path, "rb") as f:
                total += len(f.read())
    return total


def read_open_buffered(paths: list[Path], rounds: int) -> int:
    """Python's open() with an explicit buffer size + read: CPython asks isatty only when buffering
    is left at its default (-1), so this open sends the file system no ioctl."""
    total = 0
    for _ in range(rounds):
        for path in paths:
            with open(path, "rb", buffering=1 << 17) as f:
                total += len(f.read())
    return total


def read_os(paths: list[Path], rounds: int) -> int:
    """os.open + os.read until the end, as cat, cp and tar read: no ioctl."""
    total = 0
    for _ in range(rounds):
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                while chunk := os.read(fd, 1 << 20):
                    total += len(chunk)
            finally:
                os.close(fd)
    return total


LOOPS = {
    "open() + read": read_open,
    "open(buffering=128 KiB) + read": read_open_buffered,
    "os.open + os.read": read_os,
}


def bench_reads(
    work: Path, home: Path, rounds: int, repeats: int, tree: Path, variant: str
) -> list[dict[str, Any]]:
    """Cold, warm and restart reads through a mount of a fresh copy of `home` (empty cache)."""
    home = shutil.copytree(home, work / f"home-{variant}", ignore=shutil.ignore_patterns("cache"))
    schema_for(f"sqlite:///{home / 'catalog.db'}", tree)
    env = env_for(home, ARCHIVER_DEVICE="cpu")
    keys = sorted(PROMPTS)
    rows: list[dict[str, Any]] = []
    with Mounted(env, work / f"mp-{variant}", work / f"mount-{variant}.log", tree) as mount:
        paths = [mount.point / k for k in keys]
        first, _ = timed(paths[0].read_bytes)
        rows.append(
            {
                "case": "first read right after mounting (waits for the model)",
                "seconds": first,
                "load": load(),
            }
        )
        if mount.wait_for("ready:", 5):  # the preload: only "after" has it
            ready, _ = timed(paths[1].read_bytes)
            rows.append({"case": "first read once the mount is ready", "seconds": ready, "load": load()})
        renders = [timed(p.read_bytes)[0] for p in paths[2:]]
        rows.append(
            {
                "case": f"render of an uncached file (median of {len(renders)})",
                "seconds": statistics.median(renders),
                "load": load(),
            }
        )
        if len(rows) == 3:
            rows.append(
                {"case": "first read once ready / render", "ratio": rows[1]["seconds"] / rows[2]["seconds"]}
            )
        local = work / f"local-{variant}"
        local.mkdir()
        for p in paths:
            (local / p.name).write_bytes(p.read_bytes())
        rows += warm_reads(paths, [local / p.name for p in paths], rounds, repeats)
    with Mounted(env, work / f"mp-{variant}", work / f"mount2-{variant}.log", tree) as mount:
        restart = [timed((mount.point / k).read_bytes)[0] for k in keys]  # the disk cache serves
        rows.append(
            {
                "case": "read after remount (disk cache, re-hashed)",
                "seconds": statistics.median(restart),
                "load": load(),
            }
        )
    return [{"variant": variant, **r} for r in rows]


def warm_reads(paths: list[Path], local_paths: list[Path], rounds: int, repeats: int) -> list[dict[str, Any]]:
    """Every file read `rounds` times through `paths` and from `local_paths` (the same bytes),
    alternately, `repeats` times, with each loop: files/s and MB/s (medians) and the ratio."""
    rows: list[dict[str, Any]] = []
    files = rounds * len(paths)
    for name, loop in LOOPS.items():
        loop(paths, 3)  # warm both sides up
        loop(local_paths, 3)
        mount_s, local_s, ratios = [], [], []
        for _ in range(repeats):
            seconds, nbytes = timed(functools.partial(loop, paths, rounds))
            mount_s.append(seconds)
            local_s.append(timed(functools.partial(loop, local_paths, rounds))[0])
            ratios.append(local_s[-1] / mount_s[-1])
        size = nbytes / files
        for where, times in (("mount", mount_s), ("local disk", local_s)):
            seconds = statistics.median(times)
            rows.append(
                {
                    "case": f"warm {name}, {where} ({rounds}x{len(paths)} files of {size / 1000:.1f} kB)",
                    "seconds": seconds,
                    "mb_per_s": nbytes / seconds / 1e6,
                    "files_per_s": files / seconds,
                    "load": load(),
                }
            )
        rows.append(
            {
                "case": f"warm {name}: mount / local (median; min-max of {repeats})",
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
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
        fingerprint_s, _ = timed(lambda: queries.archived_fingerprint(session))
    catalog.close()
    rows: list[dict[str, Any]] = [
        {"case": f"insert {entries} archived rows (bulk, setup)", "seconds": insert_s},
        {"case": f"tree: load the index ({entries} entries, one query)", "seconds": load_s},
        {"case": "tree: list the directory", "seconds": list_s},
        {"case": "tree: staleness check (fingerprint query)", "seconds": fingerprint_s},
    ]
    return url, [{"variant": "tree", **r} for r in rows]


def scandir_stat(directory: Path) -> int:
    """os.scandir + stat of every entry: what `ls -l`, `find -size` and rsync do."""
    return sum(1 for e in os.scandir(directory) if e.stat().st_size >= 0)


def bench_listing(
    work: Path, url: str, entries: int, tree: Path, variant: str, mounts: int = 3
) -> list[dict[str, Any]]:
    """Listings of `entries` files through fresh mounts: right after mounting, and once ready."""
    if tree != REPO:  # a copy of the big catalog at that tree's schema
        url = f"sqlite:///{shutil.copy(url.removeprefix('sqlite:///'), work / f'big-{variant}.db')}"
        schema_for(url, tree)
    env = env_for(work / f"home-big-{variant}", ARCHIVER_DATABASE_URL=url, ARCHIVER_DEVICE="cpu")
    point, log = work / f"mp-big-{variant}", work / f"mount-big-{variant}.log"
    big = point / "big"
    rows: list[dict[str, Any]] = []
    mount_s, mount = timed(lambda: Mounted(env, point, log, tree))
    with mount:
        early_s, listed = timed(functools.partial(scandir_stat, big))
        assert listed == entries, listed
        rows += [
            {"case": "mount: start until mounted (index loaded)", "seconds": mount_s, "load": load()},
            {
                "case": f"mount: scandir + stat of {entries}, right after mounting (models loading)",
                "seconds": early_s,
                "load": load(),
            },
        ]
    first, again, loads = [], [], []
    for _ in range(mounts):
        with Mounted(env, point, log, tree) as mount:
            mount.wait_for("ready:", 120 if variant == "after" else 0)  # only "after" preloads
            first.append(timed(functools.partial(scandir_stat, big))[0])
            again.append(timed(functools.partial(scandir_stat, big))[0])
            loads.append(load())
            if len(first) == mounts:
                listdir_s, _ = timed(lambda: os.listdir(big))
                ls_s, _ = timed(
                    lambda: subprocess.run(["ls", "-f", str(big)], stdout=subprocess.DEVNULL, check=True)
                )
    rows += [
        {
            "case": f"mount: scandir + stat of {entries}, first once ready (median of {mounts} mounts)",
            "seconds": statistics.median(first),
            "seconds_min": min(first),
            "seconds_max": max(first),
            "load": statistics.median(loads),
        },
        {
            "case": f"mount: scandir + stat of {entries}, again (median of {mounts})",
            "seconds": statistics.median(again),
            "seconds_min": min(again),
            "seconds_max": max(again),
            "load": statistics.median(loads),
        },
        {
            "case": f"mount: os.listdir of {entries} (after the listings)",
            "seconds": listdir_s,
            "load": load(),
        },
        {"case": f"mount: ls -f of {entries} (after the listings)", "seconds": ls_s, "load": load()},
    ]
    return [{"variant": variant, **r} for r in rows]


def local_listing(work: Path, entries: int) -> list[dict[str, Any]]:
    """The same scandir + stat over `entries` empty files on the local disk: the floor."""
    local = work / "local-big"
    local.mkdir()
    for i in range(entries):
        (local / f"{i:07d}.png").touch()
    times = [timed(functools.partial(scandir_stat, local))[0] for _ in range(3)]
    return [
        {
            "variant": "local",
            "case": f"local disk: scandir + stat of {entries} (median of 3, dentries cached)",
            "seconds": statistics.median(times),
            "seconds_min": min(times),
            "seconds_max": max(times),
            "load": load(),
        }
    ]


def schema_for(url: str, tree: Path) -> None:
    """Migrate the catalog at `url` down to the newest schema `tree`'s archiver knows (an older
    commit's refuses a newer catalog)."""
    if tree == REPO:
        return
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from archiver.catalog.database import alembic_config

    head = ScriptDirectory(str(tree / "migrations")).get_current_head()
    assert head is not None
    engine = create_engine(url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), head)
    engine.dispose()


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


def bench_peers(work: Path, local: Path, rounds: int, repeats: int, entries: int) -> list[dict[str, Any]]:
    """Warm reads and scandir + stat through rclone mount and s3fs over moto's S3 on loopback."""
    peers = {"rclone": shutil.which("rclone"), "s3fs": shutil.which("s3fs")}
    rows: list[dict[str, Any]] = [
        {"variant": name, "case": "skipped: not installed (apt-get install rclone s3fs)"}
        for name, found in peers.items()
        if found is None
    ]
    if not any(peers.values()):
        return rows
    import logging
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

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
                peer_rows = warm_reads(paths, files, rounds, repeats)
                stat_s, n = timed(functools.partial(scandir_stat, point / "big"))
                again_s, _ = timed(functools.partial(scandir_stat, point / "big"))
                assert n == entries, (name, n)
                peer_rows += [
                    {"case": f"mount: scandir + stat of {entries}, first", "seconds": stat_s, "load": load()},
                    {
                        "case": f"mount: scandir + stat of {entries}, again",
                        "seconds": again_s,
                        "load": load(),
                    },
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
    parser.add_argument("--rounds", type=int, default=500, help="warm reads: times each file is read")
    parser.add_argument("--repeats", type=int, default=7, help="warm reads: mount/local pairs timed")
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
        rows += local_listing(work, args.entries)
        before, why_not = before_tree(work, args.before)
        variants = [("after", REPO)] + ([("before", before)] if before is not None else [])
        if before is None:
            rows.append({"variant": "before", "case": f"skipped: {why_not}"})
        for variant, tree in variants:
            rows += bench_reads(work, home, args.rounds, args.repeats, tree, variant)
            rows += bench_listing(work, url, args.entries, tree, variant)
        peer_rounds = max(1, args.rounds // 20)  # the peers serve tens to hundreds of files a second
        rows += bench_peers(work, work / "local-after", peer_rounds, 3, args.peer_entries)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    machine = (
        f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end"
    )
    print(f"mount benchmark on {machine}")
    widths = (8, 8, 8, 6, 11, 5)
    header = ("seconds", "MB/s", "files/s", "ratio", "min-max", "load")
    print(f"{'variant':8} {'case':84} " + " ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in rows:
        spread = ""
        if "ratio_min" in r:
            spread = f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        elif "seconds_min" in r:
            spread = f"{r['seconds_min']:.2f}-{r['seconds_max']:.2f}"
        cells = [
            f"{r['seconds']:.4f}" if "seconds" in r else "-",
            f"{r['mb_per_s']:.0f}" if "mb_per_s" in r else "-",
            f"{r['files_per_s']:.0f}" if "files_per_s" in r else "-",
            f"{r['ratio']:.3f}" if "ratio" in r else "-",
            spread or "-",
            f"{r['load']:.1f}" if "load" in r else "-",
        ]
        print(
            f"{r['variant']:8} {r['case']:84} "
            + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    print(json.dumps({"bench": "mount", "device": machine, "rows": rows}))


if __name__ == "__main__":
    main()
