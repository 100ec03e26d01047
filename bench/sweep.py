"""Benchmark: `archiver sweep` over the example catalogue, alone, four at once, and on Ray, for this
checkout and (`--before REF`) an earlier commit, all in one run. Prints a table, then a JSON line.

    .venv/bin/python bench/sweep.py [--model-dir examples/rumba/model] [--images 48] [--before REF]
        [--concurrent 4 --concurrent-images 12] [--ray [--actors 1 2]]

`--before REF` sweeps with the code of REF (`git archive` into a temporary directory, run with the
same environment), so before and after share the machine and its load. `--concurrent N` starts N
sweeps at once, each of its own copy of the first --concurrent-images shoes into its own home, and
reports their aggregate images per second (all images over the wall time of the slowest) beside one
such sweep alone: several archiver processes on one machine must not slow each other below one.

Writes the rumba catalogue (the first --images of its 48 shoes) to a temporary directory and sweeps
it into a local vault with a fresh SQLite catalog, once in a single process and, with --ray, once
per --actors count on a local Ray (`archiver sweep --ray --ray-actors N`), each in a fresh home, all
in this run so the rows share one machine and one load. Reports images per second over the whole
command, proving alone (the verify step: every render and gate), the start-up (imports, Ray, the
model; the command's time outside its steps), seconds per image of each step (discover, claim,
verify = render + gate, vault, delete) and the load average, then the driver's serial share: what
every step but verify costs per image, which no number of actors shortens, and the ceiling in
images per second it sets. Device: CUDA when present, else CPU; the gate uses the pretrained LPIPS
trunk (`archiver gate install-weights`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from archiver.example.rumba import write_catalogue  # noqa: E402
from archiver.gate.trunk import DEFAULT_TRUNK_PATH  # noqa: E402

ARCHIVER = [sys.executable, "-m", "archiver"]


def code_env(code: Path | None) -> dict[str, str]:
    """The environment that runs `code` (a checkout's root; None: this one)."""
    env = {**os.environ}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return env


def archiver(home: Path, *argv: str, code: Path | None = None) -> str:
    """One `archiver` command in its own process (as a user runs it; Ray wants a fresh driver)."""
    done = subprocess.run(
        [*ARCHIVER, "--home", str(home), *argv], capture_output=True, text=True, env=code_env(code), cwd=code
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        sys.exit(f"bench/sweep: `archiver {' '.join(argv)}` exited {done.returncode}: {tail[0]}")
    return done.stdout


def prepare(tmp: Path, images: int, model_dir: Path, label: str, code: Path | None) -> tuple[Path, Path]:
    """A fresh copy of the catalogue (a sweep deletes what it archives) and a fresh home with the model."""
    source = tmp / f"rumba-{label}"
    for entry in write_catalogue(source)[images:]:
        entry.path.unlink()
    home = tmp / f"home-{label}"
    archiver(home, "model", "add", str(model_dir), "--name", "bench", code=code)
    return source, home


def sweep_once(
    tmp: Path, images: int, model_dir: Path, label: str, ray: list[str], code: Path | None = None
) -> dict:
    source, home = prepare(tmp, images, model_dir, label, code)
    started = time.perf_counter()
    summary = json.loads(archiver(home, "sweep", str(source), "--model", "bench", "--json", *ray, code=code))
    total = time.perf_counter() - started
    if summary["archived"] != images:
        sys.exit(f"bench/sweep: the {label} sweep archived {summary['archived']} of {images}: {summary}")
    return {"path": label, "total_s": total, "summary": summary, "load": os.getloadavg()[0], "images": images}


def sweep_concurrently(
    tmp: Path, count: int, images: int, model_dir: Path, label: str, code: Path | None
) -> dict:
    """`count` sweeps started at once, each on its own copy and home: aggregate images per second."""
    prepared = [prepare(tmp, images, model_dir, f"{label}-{i}", code) for i in range(count)]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*ARCHIVER, "--home", str(home), "sweep", str(source), "--model", "bench", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=code_env(code),
            cwd=code,
        )
        for source, home in prepared
    ]
    loads = []
    while any(p.poll() is None for p in processes):
        loads.append(os.getloadavg()[0])
        time.sleep(1.0)
    total = time.perf_counter() - started
    archived = 0
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            sys.exit(f"bench/sweep: a concurrent {label} sweep exited {process.returncode}: {err[-300:]}")
        archived += json.loads(out)["archived"]
    return {"path": label, "total_s": total, "archived": archived, "load": max(loads or [0.0])}


def checkout(ref: str, into: Path) -> Path:
    """The tree of commit `ref`, written out with git archive (no worktree left behind)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument("--images", type=int, default=48, help="sweep the first N of the 48 shoes")
    parser.add_argument("--ray", action="store_true", help="also sweep on a local Ray, per --actors")
    parser.add_argument(
        "--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts (default 1 2)"
    )
    parser.add_argument(
        "--before", help="also sweep with the code of this commit (e.g. main before a change)"
    )
    parser.add_argument("--after", help="sweep with the code of this commit, not the working tree")
    parser.add_argument("--concurrent", type=int, default=4, help="sweeps at once (0: none)")
    parser.add_argument("--concurrent-images", type=int, default=12, help="shoes in each concurrent sweep")
    args = parser.parse_args()
    if not (args.model_dir / "model_index.json").is_file():
        sys.exit(f"bench/sweep: no model at {args.model_dir}: pass --model-dir")
    if not DEFAULT_TRUNK_PATH.is_file():
        sys.exit(f"bench/sweep: no LPIPS trunk at {DEFAULT_TRUNK_PATH}: run `archiver gate install-weights`")
    rows = []
    concurrent = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = min(args.images, 48)
        few = min(args.concurrent_images, 48)
        after = checkout(args.after, tmp / "after-code") if args.after else None
        codes: list[tuple[str, Path | None]] = [("after", after)]
        if args.before:
            codes.insert(0, ("before", checkout(args.before, tmp / "before-code")))
        for name, code in codes:
            rows.append(sweep_once(tmp, images, args.model_dir, name, [], code))
            if args.concurrent:
                alone = sweep_once(tmp, few, args.model_dir, f"{name}-alone", [], code)
                together = sweep_concurrently(tmp, args.concurrent, few, args.model_dir, f"{name}-x", code)
                concurrent.append((name, alone, together))
        for actors in args.actors if args.ray else []:
            ray = ["--ray-actors", str(actors), "--ray"]
            rows.append(sweep_once(tmp, images, args.model_dir, f"ray-{actors}", ray))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {os.cpu_count()} cores"
    steps = ["discover", "claim", "verify", "vault", "delete"]
    print(f"sweep benchmark: {images} example images on {device}, pretrained LPIPS trunk")
    print(
        f"{'path':8} {'archived':>8} {'images/s':>9} {'prove img/s':>11} {'start s':>8} "
        + " ".join(f"{s + ' s/img':>14}" for s in steps)
        + f" {'serial ms/img':>14} {'cap img/s':>10} {'load':>5}"
    )
    results = []
    for row in rows:
        seconds = row["summary"]["seconds"]
        images = row["images"]
        per_image = {s: seconds.get(s, 0.0) / images for s in steps}
        serial = sum(v for s, v in per_image.items() if s != "verify")
        result = {
            "path": row["path"],
            "archived": row["summary"]["archived"],
            "images_per_s": images / row["total_s"],
            "prove_images_per_s": images / seconds["verify"],
            "start_s": row["total_s"] - sum(seconds.values()),
            "seconds_per_image": per_image,
            "driver_serial_ms_per_image": serial * 1000,
            "driver_cap_images_per_s": 1 / serial if serial else None,
            "load_1m": row["load"],
            "records_by_steps": row["summary"].get("records_by_steps"),
            "steps_rendered": row["summary"].get("steps_rendered"),
        }
        results.append(result)
        cap = f"{result['driver_cap_images_per_s']:.0f}" if serial else "-"
        print(
            f"{row['path']:8} {result['archived']:>8} {result['images_per_s']:>9.2f} "
            f"{result['prove_images_per_s']:>11.2f} {result['start_s']:>8.1f} "
            + " ".join(f"{per_image[s]:>14.3f}" for s in steps)
            + f" {serial * 1000:>14.1f} {cap:>10} {row['load']:>5.1f}"
        )
    together_rows = []
    if concurrent:
        print(f"\n{args.concurrent} sweeps at once, {few} images each, against one alone (whole commands):")
        print(f"{'code':8} {'alone img/s':>12} {'together img/s':>15} {'ratio':>6} {'peak load':>10}")
        for name, alone, together in concurrent:
            alone_rate = alone["images"] / alone["total_s"]
            together_rate = together["archived"] / together["total_s"]
            together_rows.append(
                {
                    "code": name,
                    "processes": args.concurrent,
                    "images_each": few,
                    "alone_images_per_s": alone_rate,
                    "together_images_per_s": together_rate,
                    "ratio": together_rate / alone_rate,
                    "peak_load_1m": together["load"],
                }
            )
            print(
                f"{name:8} {alone_rate:>12.2f} {together_rate:>15.2f} "
                f"{together_rate / alone_rate:>6.2f} {together['load']:>10.1f}"
            )
    print(
        json.dumps(
            {
                "bench": "sweep",
                "device": device,
                "images": images,
                "before": args.before,
                "runs": results,
                "concurrent": together_rows,
            }
        )
    )


if __name__ == "__main__":
    main()
