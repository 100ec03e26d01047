"""Calibration: the render sketch's tolerance, drift against divergence. Prints a table and a JSON line.

    .venv/bin/python bench/sketch_calibration.py [--model-dir examples/rumba/model]

The accepted renders are the records a sweep makes today: `archiver verify` over the example's 48
keys (in a temporary home) says each key's (steps, seed), the cheapest rung of the model's step
ladder the gate accepts, and each is rendered here. Drift class (must pass): the same records
rendered again in fresh processes told to take other CPU code paths, as another CPU generation
would (`ATEN_CPU_CAPABILITY=default`, `ONEDNN_MAX_CPU_ISA=SSE41`), and on CUDA (float16) when a GPU
is present. Divergence class (must fail): another seed (the record's + 1 and + 2, at its steps),
another step count (each other rung of the ladder, seed kept), each key's neighbour's render
(another prompt of the group), the sibling originals, and the gate's distractor images put in the
render's place. For each: the true PSNR to the accepted render, the PSNR the sketch estimates, and
the verdict at the default tolerance.
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

from archiver.engine.manifests import read_render_settings  # noqa: E402
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
from archiver.engine.registry import load_model, register_model
from archiver.engine.rehydrate import base_spec, render_images
from archiver.engine.rendering import enable_determinism
from archiver.example.rumba import LACE_COLOURS, SOLE_COLOURS, key_for, prompt_for
model, out, plan, device = Path({model!r}), Path({out!r}), {plan!r}, {device!r}
enable_determinism()
with tempfile.TemporaryDirectory() as tmp:
    catalog = open_catalog(f"sqlite:///{{tmp}}/c.db")
    with catalog.begin() as session:
        loaded = load_model(register_model(session, model, "m"), device=device)
    catalog.close()
for lace in LACE_COLOURS:
    for sole in SOLE_COLOURS:
        key = key_for(lace, sole)
        if key not in plan:
            continue
        steps, seed = plan[key]
        spec = base_spec(loaded, prompt=prompt_for(lace, sole), width=64, height=64, steps=steps)
        (image,) = render_images(loaded, spec, [seed])
        image.save(out / (key.replace("/", "_") + ".png"))
"""


def render_all(
    model: Path, out: Path, plan: dict[str, tuple[int, int]], *, device: str = "cpu", **env: str
) -> dict:
    """Render every key at its planned (steps, seed) in a fresh process (so environment switches
    take effect); {key: image}."""
    out.mkdir(parents=True, exist_ok=True)
    code = RENDER.format(repo=str(REPO), model=str(model), out=str(out), plan=plan, device=device)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, capture_output=True)
    return {key: Image.open(out / (key.replace("/", "_") + ".png")).convert("RGB") for key in plan}


def records_made_today(model: Path, root: Path) -> dict[str, tuple[int, int]]:
    """Each example key's (steps, seed) as `archiver verify` chooses them with today's defaults."""
    from archiver.example.rumba import write_catalogue

    write_catalogue(root / "rumba")
    env = {**os.environ, "ARCHIVER_HOME": str(root / "home")}
    run = [sys.executable, "-m", "archiver"]
    subprocess.run(
        [*run, "model", "add", str(model), "--name", "m"], env=env, check=True, capture_output=True
    )
    done = subprocess.run(
        [*run, "verify", str(root / "rumba"), "--model", "m", "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    rows = json.loads(done.stdout)["images"]
    return {r["key"]: (r["steps"], r["seed"]) for r in rows if r["passed"] and r["key"] in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument(
        "--every", type=int, default=1, help="judge every Nth key only (the renders are slow)"
    )
    args = parser.parse_args()
    global KEYS
    KEYS = KEYS[:: args.every]
    by_steps: dict[int, int] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model_dir
        plan = records_made_today(model, root)
        KEYS = [key for key in KEYS if key in plan]  # a key the gate refused has no record to judge
        for steps, _ in plan.values():
            by_steps[steps] = by_steps.get(steps, 0) + 1
        accepted = render_all(model, root / "accepted", plan)
        sketches = {key: sketch(image) for key, image in accepted.items()}
        drift = {
            "ATEN_CPU_CAPABILITY=default": render_all(
                model, root / "aten", plan, ATEN_CPU_CAPABILITY="default"
            ),
            "ONEDNN_MAX_CPU_ISA=SSE41": render_all(model, root / "onednn", plan, ONEDNN_MAX_CPU_ISA="SSE41"),
        }
        try:
            import torch

            if torch.cuda.is_available():
                drift["CUDA float16"] = render_all(model, root / "cuda", plan, device="cuda")
        except ImportError:
            pass
        neighbour = {key: KEYS[(i + 1) % len(KEYS)] for i, key in enumerate(KEYS)}
        ladder = read_render_settings(model).ladder
        divergence = {
            "seed + 1": render_all(model, root / "seed1", {k: (n, s + 1) for k, (n, s) in plan.items()}),
            "seed + 2": render_all(model, root / "seed2", {k: (n, s + 2) for k, (n, s) in plan.items()}),
        }
        for other in ladder:  # every other rung, the record's seed: one image, rendered cheaper or dearer
            moved = {k: (other, s) for k, (n, s) in plan.items() if n != other}
            if moved:
                divergence[f"{other} steps (record's seed)"] = render_all(
                    model, root / f"steps{other}", moved
                )
        divergence["another prompt's render"] = {key: accepted[neighbour[key]] for key in KEYS}
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
    print("records by steps: " + ", ".join(f"{n} steps: {c}" for n, c in sorted(by_steps.items())))
    print(
        json.dumps(
            {
                "bench": "sketch_calibration",
                "min_psnr": DEFAULT_MIN_PSNR,
                "records_by_steps": by_steps,
                "rows": rows,
            }
        )
    )


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
