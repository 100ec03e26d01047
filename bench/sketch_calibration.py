"""Calibration: the render sketch's tolerance, drift against divergence. Prints a table and a JSON line.

    .venv/bin/python bench/sketch_calibration.py [--model-dir examples/rumba/model]

The accepted renders are the shipped model's seed-0 renders of the example's 48 keys, made here.
Drift class (must pass): the same records rendered again in fresh processes told to take other
CPU code paths, as another CPU generation would (`ATEN_CPU_CAPABILITY=default`,
`ONEDNN_MAX_CPU_ISA=SSE41`), and on CUDA in float32 and float16 when a GPU is present.
Divergence class (must fail): another seed (1, 2), another step count (10, 30), each key's
neighbour's render (another prompt of the group), the sibling originals, and the gate's
distractor images put in the render's place. For each: the true PSNR to the accepted render, the
PSNR the sketch estimates, and the verdict at the default tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archiver.example.rumba import (  # noqa: E402
    LACE_COLOURS,
    SOLE_COLOURS,
    draw_shoe,
    key_for,
    trained_key_distractors,
)
from archiver.gate.perceptual import psnr  # noqa: E402
from archiver.gate.sketch import DEFAULT_MIN_PSNR, estimated_psnr, sketch  # noqa: E402

KEYS = [key_for(lace, sole) for lace in LACE_COLOURS for sole in SOLE_COLOURS]
RENDER = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, {repo!r})
from archiver.catalog.database import open_catalog
from archiver.engine.manifests import read_render_settings
from archiver.engine.registry import load_model, register_model
from archiver.engine.rehydrate import base_spec, render_images
from archiver.engine.rendering import enable_determinism
from archiver.example.rumba import LACE_COLOURS, SOLE_COLOURS, key_for, prompt_for
model, out, seed, steps, device = Path({model!r}), Path({out!r}), {seed}, {steps}, {device!r}
enable_determinism()
with tempfile.TemporaryDirectory() as tmp:
    catalog = open_catalog(f"sqlite:///{{tmp}}/c.db")
    with catalog.begin() as session:
        loaded = load_model(register_model(session, model, "m"), device=device)
    catalog.close()
steps = steps or read_render_settings(model).steps
wanted = set({keys!r})
for lace in LACE_COLOURS:
    for sole in SOLE_COLOURS:
        if key_for(lace, sole) not in wanted:
            continue
        spec = base_spec(loaded, prompt=prompt_for(lace, sole), width=64, height=64, steps=steps)
        (image,) = render_images(loaded, spec, [seed])
        image.save(out / (key_for(lace, sole).replace("/", "_") + ".png"))
"""


def render_all(
    model: Path, out: Path, *, seed: int = 0, steps: int = 0, device: str = "cpu", **env: str
) -> dict:
    """Render every key in a fresh process (so environment switches take effect); {key: image}."""
    out.mkdir(parents=True, exist_ok=True)
    code = RENDER.format(
        repo=str(REPO), model=str(model), out=str(out), seed=seed, steps=steps, device=device, keys=KEYS
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, capture_output=True)
    return {key: Image.open(out / (key.replace("/", "_") + ".png")).convert("RGB") for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument(
        "--every", type=int, default=1, help="judge every Nth key only (the renders are slow)"
    )
    args = parser.parse_args()
    global KEYS
    KEYS = KEYS[:: args.every]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        accepted = render_all(args.model_dir, root / "accepted")
        sketches = {key: sketch(image) for key, image in accepted.items()}
        drift = {
            "ATEN_CPU_CAPABILITY=default": render_all(
                args.model_dir, root / "aten", ATEN_CPU_CAPABILITY="default"
            ),
            "ONEDNN_MAX_CPU_ISA=SSE41": render_all(
                args.model_dir, root / "onednn", ONEDNN_MAX_CPU_ISA="SSE41"
            ),
        }
        try:
            import torch

            if torch.cuda.is_available():
                drift["CUDA float16"] = render_all(args.model_dir, root / "cuda", device="cuda")
        except ImportError:
            pass
        neighbour = {key: KEYS[(i + 1) % len(KEYS)] for i, key in enumerate(KEYS)}
        divergence = {
            "seed 1": render_all(args.model_dir, root / "seed1", seed=1),
            "seed 2": render_all(args.model_dir, root / "seed2", seed=2),
            "10 steps": render_all(args.model_dir, root / "steps10", steps=10),
            "30 steps": render_all(args.model_dir, root / "steps30", steps=30),
            "another prompt's render": {key: accepted[neighbour[key]] for key in KEYS},
        }
        originals = {
            key_for(lace, sole): draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])
            for lace in LACE_COLOURS
            for sole in SOLE_COLOURS
        }
        divergence["a sibling's original"] = {key: originals[neighbour[key]] for key in KEYS}
        # The gate's distractors, each in place of the render of the key it was drawn for (keys
        # outside --every's sample stand in for the first sampled key).
        distractors = [(d.key if d.key in accepted else KEYS[0], d.image) for d in trained_key_distractors()]
        for kind, cases in [("drift", drift), ("divergence", divergence)]:
            for name, renders in cases.items():
                pairs = [(key, image) for key, image in renders.items()]
                rows.append(measure(kind, name, pairs, accepted, sketches))
        rows.append(measure("divergence", "gate distractors", distractors, accepted, sketches))
    print(
        f"{'class':<11} {'case':<29} {'n':>3} {'exact':>6} {'true PSNR dB':>17}"
        f" {'sketch PSNR dB':>17} {'pass':>5}"
    )
    for r in rows:
        print(
            f"{r['class']:<11} {r['case']:<29} {r['n']:>3} {r['identical_bytes']:>6} "
            f"{r['true_psnr'][0]:>7.1f}-{r['true_psnr'][1]:<8.1f}"
            f" {r['sketch_psnr'][0]:>7.1f}-{r['sketch_psnr'][1]:<8.1f}"
            f" {r['passed']:>5}"
        )
    print(json.dumps({"bench": "sketch_calibration", "min_psnr": DEFAULT_MIN_PSNR, "rows": rows}))


def measure(kind: str, name: str, pairs: list, accepted: dict, sketches: dict) -> dict:
    true, estimated, identical, passed = [], [], 0, 0
    for key, image in pairs:
        same = np.array_equal(np.asarray(image), np.asarray(accepted[key]))
        identical += same
        t = psnr(accepted[key], image)
        e = estimated_psnr(sketches[key], image)
        true.append(min(t, 200.0))
        estimated.append(min(e, 200.0))
        passed += e >= DEFAULT_MIN_PSNR
    return {
        "class": kind,
        "case": name,
        "n": len(pairs),
        "identical_bytes": identical,
        "true_psnr": [min(true), max(true)],
        "sketch_psnr": [min(estimated), max(estimated)],
        "passed": passed,
    }


if __name__ == "__main__":
    main()
