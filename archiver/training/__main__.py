"""`python -m archiver.training CATALOGUE OUT`: train a tiny model on a catalogue and report recall.

CATALOGUE is a directory with `captions.csv` (`key,prompt`; each key a path relative to it), as
`archiver.example.rumba.write_catalogue` writes. Prints the memorization table and a JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from archiver.engine.pipeline import load_pipeline
from archiver.engine.rendering import enable_determinism
from archiver.training.common import Example
from archiver.training.evaluate import evaluate_memorization, summary
from archiver.training.tiny import train_tiny


def read_catalogue(root: Path) -> list[Example]:
    examples = []
    with (root / "captions.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            with Image.open(root / row["key"]) as image:
                examples.append((row["key"], row["prompt"], image.convert("RGB")))
    return examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archiver.training", description=__doc__)
    parser.add_argument("catalogue", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--ship", action="store_true", help="drop checkpoints/ when done")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    examples = read_catalogue(args.catalogue)
    started = time.monotonic()
    result = train_tiny(
        examples, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        resume=args.resume, schedule_steps=args.schedule_steps, checkpoint_every=250,
    )  # fmt: skip
    trained_s = time.monotonic() - started
    if args.ship:
        shutil.rmtree(args.out / "checkpoints", ignore_errors=True)

    enable_determinism(args.threads)
    pipe = load_pipeline(args.out, "cpu", torch.float32)
    results = evaluate_memorization(pipe, examples, steps=args.eval_steps)
    for r in results:
        print(f"{r.key:44s} {r.psnr:6.2f} dB  margin {r.margin:6.2f}  nearest {r.nearest}")
    report = {
        "train_s": round(trained_s, 1),
        "final_loss": result.final_loss,
        "eval_steps": args.eval_steps,
        **summary(results),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
