"""Benchmark: `archiver train` beside a sweep, against each alone, for this checkout and an earlier
commit, in one run. Prints a table, then a JSON line.

    .venv/bin/python bench/contention.py [--before REF] [--after REF] [--train-steps 40] [--images 24]

Each code (`--before`, and `--after` or the working tree) trains the tiny recipe for --train-steps
on the example catalogue alone (seconds per step of its training loop, from its own JSON), sweeps
the first --images shoes alone (images per second over the whole command), then runs both at once,
each measured the same way, with the peak load average. Training threads: the
command's default (before: torch's; after: `train_threads`, holding CPU slots per step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from subprocess import PIPE, Popen

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sweep import ARCHIVER, checkout, code_env, prepare  # noqa: E402


def start(argv: list[str], home: Path, code: Path | None) -> Popen[str]:
    return Popen(
        [*ARCHIVER, "--home", str(home), *argv],
        stdout=PIPE,
        stderr=PIPE,
        text=True,
        env=code_env(code),
        cwd=code,
    )


def finish(process: Popen[str], what: str) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"bench/contention: {what} exited {process.returncode}: {err[-300:]}")
    return json.loads(out.strip().splitlines()[-1])


def run_together(processes: dict[str, Popen[str]]) -> tuple[dict[str, float], float]:
    """Wall seconds of each process, and the peak 1-minute load while any ran."""
    started, peak = time.perf_counter(), 0.0
    ended: dict[str, float] = {}
    while len(ended) < len(processes):
        for name, process in processes.items():
            if name not in ended and process.poll() is not None:
                ended[name] = time.perf_counter() - started
        peak = max(peak, os.getloadavg()[0])
        time.sleep(0.2)
    return ended, peak


def measure(tmp: Path, label: str, code: Path | None, steps: int, images: int, model: Path) -> dict:
    source, _ = prepare(tmp, 48, model, f"{label}-train-src", code)
    train = ["train", str(source), "--captions", str(source / "captions.csv"), "--steps", str(steps)]
    row: dict = {"code": label}
    t = start([*train, "--out", str(tmp / f"{label}-model-alone")], tmp / f"{label}-train-alone", code)
    run_together({"train": t})
    row["train_alone_s_per_step"] = finish(t, "train alone")["seconds"] / steps  # its loop, not start-up
    src, home = prepare(tmp, images, model, f"{label}-sweep-alone", code)
    s = start(["sweep", str(src), "--model", "bench", "--json"], home, code)
    times, _ = run_together({"sweep": s})
    finish(s, "sweep alone")
    row["sweep_alone_images_per_s"] = images / times["sweep"]
    src, home = prepare(tmp, images, model, f"{label}-sweep-beside", code)
    s = start(["sweep", str(src), "--model", "bench", "--json"], home, code)
    t = start([*train, "--out", str(tmp / f"{label}-model-beside")], tmp / f"{label}-train-beside", code)
    times, peak = run_together({"sweep": s, "train": t})
    finish(s, "sweep beside training")
    row["sweep_beside_images_per_s"] = images / times["sweep"]
    row["train_beside_s_per_step"] = finish(t, "train beside a sweep")["seconds"] / steps
    row["peak_load_1m"] = peak
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument("--before", help="also measure the code of this commit")
    parser.add_argument("--after", help="measure this commit, not the working tree")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--images", type=int, default=24)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        codes: list[tuple[str, Path | None]] = []
        if args.before:
            codes.append(("before", checkout(args.before, tmp / "before-code")))
        codes.append(("after", checkout(args.after, tmp / "after-code") if args.after else None))
        for label, code in codes:
            rows.append(measure(tmp, label, code, args.train_steps, args.images, args.model_dir))
    print(f"train ({args.train_steps} steps) beside a sweep ({args.images} images), {os.cpu_count()} cores")
    print(
        f"{'code':7} {'train s/step alone':>19} {'beside':>8} {'sweep img/s alone':>18} {'beside':>8}"
        f" {'peak load':>10}"
    )
    for r in rows:
        print(
            f"{r['code']:7} {r['train_alone_s_per_step']:>19.2f} {r['train_beside_s_per_step']:>8.2f} "
            f"{r['sweep_alone_images_per_s']:>18.2f} {r['sweep_beside_images_per_s']:>8.2f}"
            f" {r['peak_load_1m']:>10.1f}"
        )
    print(
        json.dumps(
            {"bench": "contention", "train_steps": args.train_steps, "images": args.images, "rows": rows}
        )
    )


if __name__ == "__main__":
    main()
