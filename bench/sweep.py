"""Benchmark: `archiver sweep` over the example catalogue, alone and on Ray. Prints a table, then a
JSON line.

    .venv/bin/python bench/sweep.py [--model-dir examples/rumba/model] [--images 48] [--ray [--actors 1 2]]

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


def archiver(home: Path, *argv: str) -> str:
    """One `archiver` command in its own process (as a user runs it; Ray wants a fresh driver)."""
    done = subprocess.run([*ARCHIVER, "--home", str(home), *argv], capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        sys.exit(f"bench/sweep: `archiver {' '.join(argv)}` exited {done.returncode}: {tail[0]}")
    return done.stdout


def sweep_once(tmp: Path, images: int, model_dir: Path, label: str, ray: list[str]) -> dict:
    """One sweep of a fresh copy of the catalogue (a sweep deletes what it archives) in a fresh home."""
    source = tmp / f"rumba-{label}"
    for entry in write_catalogue(source)[images:]:
        entry.path.unlink()
    home = tmp / f"home-{label}"
    archiver(home, "model", "add", str(model_dir), "--name", "bench")
    started = time.perf_counter()
    summary = json.loads(archiver(home, "sweep", str(source), "--model", "bench", "--json", *ray))
    total = time.perf_counter() - started
    if summary["archived"] != images:
        sys.exit(f"bench/sweep: the {label} sweep archived {summary['archived']} of {images}: {summary}")
    return {"path": label, "total_s": total, "summary": summary, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument("--images", type=int, default=48, help="sweep the first N of the 48 shoes")
    parser.add_argument("--ray", action="store_true", help="also sweep on a local Ray, per --actors")
    parser.add_argument(
        "--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts (default 1 2)"
    )
    args = parser.parse_args()
    if not (args.model_dir / "model_index.json").is_file():
        sys.exit(f"bench/sweep: no model at {args.model_dir}: pass --model-dir")
    if not DEFAULT_TRUNK_PATH.is_file():
        sys.exit(f"bench/sweep: no LPIPS trunk at {DEFAULT_TRUNK_PATH}: run `archiver gate install-weights`")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = min(args.images, 48)
        rows.append(sweep_once(tmp, images, args.model_dir, "single", []))
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
        }
        results.append(result)
        cap = f"{result['driver_cap_images_per_s']:.0f}" if serial else "-"
        print(
            f"{row['path']:8} {result['archived']:>8} {result['images_per_s']:>9.2f} "
            f"{result['prove_images_per_s']:>11.2f} {result['start_s']:>8.1f} "
            + " ".join(f"{per_image[s]:>14.3f}" for s in steps)
            + f" {serial * 1000:>14.1f} {cap:>10} {row['load']:>5.1f}"
        )
    print(json.dumps({"bench": "sweep", "device": device, "images": images, "runs": results}))


if __name__ == "__main__":
    main()
