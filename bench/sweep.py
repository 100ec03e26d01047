"""Benchmark: `archiver sweep` over the example catalogue. Prints a table, then a JSON line.

    .venv/bin/python bench/sweep.py [--model-dir examples/rumba/model]

Writes the rumba catalogue to a temporary directory, registers the model, sweeps it into a local
vault with a fresh SQLite catalog, and reports images per second and the time of each step
(discover, claim, verify = render + gate, vault, delete). Device: CUDA when present, else CPU.
LPIPS uses its pretrained trunk when torchvision's AlexNet weights are on this machine, else the
test-only random trunk (the table says which: it changes the gate's cost only slightly).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from archiver.cli import main as archiver  # noqa: E402
from archiver.example.rumba import write_catalogue  # noqa: E402
from archiver.gate import ALEXNET_WEIGHTS  # noqa: E402


def run(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        code = archiver(list(argv))
    if code != 0:
        sys.exit(f"bench/sweep: `archiver {' '.join(argv)}` exited {code}")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    args = parser.parse_args()
    if not (args.model_dir / "model_index.json").is_file():
        sys.exit(f"bench/sweep: no model at {args.model_dir}: pass --model-dir")
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    backbone = "pretrained" if weights.is_file() else "random-test-only"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(ARCHIVER_HOME=f"{tmp}/home", ARCHIVER_LPIPS_BACKBONE=backbone)
        images = len(write_catalogue(Path(tmp) / "rumba"))
        run("model", "add", str(args.model_dir), "--name", "bench")
        started = time.perf_counter()
        summary = json.loads(run("sweep", f"{tmp}/rumba", "--model", "bench", "--json"))
        total = time.perf_counter() - started
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"cpu, {torch.get_num_threads()} threads"
    )
    steps = summary["seconds"]
    print(f"sweep benchmark: {images} example images on {device}, LPIPS trunk {backbone}")
    print(f"{'step':10} {'seconds':>9} {'per image':>10}")
    for step, seconds in steps.items():
        print(f"{step:10} {seconds:>9.2f} {seconds / images:>10.3f}")
    print(
        f"{'total':10} {total:>9.2f} {total / images:>10.3f}   ({images / total:.2f} images/s; "
        f"archived {summary['archived']}, rejected {sum(summary['rejected'].values())})"
    )
    print(
        json.dumps(
            {
                "bench": "sweep",
                "device": device,
                "lpips": backbone,
                "images": images,
                "total_s": total,
                "images_per_s": images / total,
                "steps_s": steps,
                "archived": summary["archived"],
                "rejected": summary["rejected"],
            }
        )
    )


if __name__ == "__main__":
    main()
