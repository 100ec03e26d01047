"""Calibration: the gate's measures and verdicts per distractor class. Prints a table, then a JSON line.

    .venv/bin/python bench/gate_calibration.py [--model-dir examples/rumba/model] [--search]

Renders every key of the example catalogue at every rung of the model's step ladder (seed 0, the
sweep's first try: 1, 2, 4 and the trained 20 steps for the shipped model) and judges each case as
the sweep does: the trained schedule's render must pass (else the case is refused, with its
measures), and then the cheapest rung whose render passes too is the record (the measures shown are
that rung's). Judged with the pretrained LPIPS trunk and default thresholds:
the 48 memorized originals, and distractors drawn by the example's own code and placed under a
trained key (what a sweep would see if the image had been replaced): a region (the sole or the
laces) moved by ΔE00 3, 5 and 10 along six CIELAB directions on six colourways, a tinted white,
an added dot, a removed heel tab, a stripe, another colourway's image, gold laces, and the original
under generic edits a person sees (`archiver.example.edits`: mirrored, moved a pixel, turned,
rescaled, blurred, re-lit, washed out, recompressed, grain, a small mark). Each row
gives how many were refused, the range of every measure, and which checks refused them. The
table in docs/architecture.md comes from this script.

`--search` also runs the sweep's whole search (`prove.search_seed`: 8 seeds, 4 a call, on each
case's own encoded bytes) for the memorized originals and the classes nearest the limits (regions
shifted by ΔE00 3 and 5), twice in one run: before issue 25 (the trained schedule only) and with the
step ladder, and counts the cases each accepts: what a sweep would archive, every attempt counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archiver.catalog.database import open_catalog  # noqa: E402
from archiver.engine.manifests import read_render_settings  # noqa: E402
from archiver.engine.registry import load_model, register_model  # noqa: E402
from archiver.engine.rehydrate import base_spec, render_images  # noqa: E402
from archiver.engine.rendering import enable_determinism  # noqa: E402
from archiver.example.edits import EDITS  # noqa: E402
from archiver.example.rumba import (  # noqa: E402
    DISTRACTOR_LACE,
    LACE_COLOURS,
    SOLE_COLOURS,
    TINTED_WHITE,
    draw_shoe,
    key_for,
    prompt_for,
    shift_colour,
)
from archiver.gate import Gate  # noqa: E402
from archiver.gate.siblings import SiblingIndex  # noqa: E402

DIRECTIONS = {
    "+L": (1, 0, 0),
    "-L": (-1, 0, 0),
    "+a": (0, 1, 0),
    "-a": (0, -1, 0),
    "+b": (0, 0, 1),
    "-b": (0, 0, -1),
}
COLOURWAYS = [
    ("red", "white"),
    ("blue", "gum"),
    ("yellow", "black"),
    ("green", "blue"),
    ("pink", "red"),
    ("purple", "green"),
]
MEASURES = ("lpips", "worst_tile", "psnr", "colour_worst", "sibling_margin_db")


def distractors() -> list[tuple[str, str, Image.Image]]:
    """(class, trained key, image) for every distractor of the calibration."""
    made: list[tuple[str, str, Image.Image]] = []
    for lace, sole in COLOURWAYS:
        key = key_for(lace, sole)
        for delta_e in (3, 5, 10):
            for direction in DIRECTIONS.values():
                for part in ("sole", "lace"):
                    base = SOLE_COLOURS[sole] if part == "sole" else LACE_COLOURS[lace]
                    try:
                        moved = shift_colour(base, delta_e, direction)  # type: ignore[arg-type]
                    except ValueError:  # that direction leaves sRGB before reaching delta_e
                        continue
                    image = (
                        draw_shoe(LACE_COLOURS[lace], moved)
                        if part == "sole"
                        else draw_shoe(moved, SOLE_COLOURS[sole])
                    )
                    made.append((f"{part} shifted ΔE00 {delta_e}", key, image))
        made.append(("added dot", key, draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole], dot=True)))
        made.append(
            ("removed heel tab", key, draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole], heel_tab=False))
        )
        made.append(("added stripe", key, draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole], stripe=True)))
        other = list(LACE_COLOURS)[(list(LACE_COLOURS).index(lace) + 1) % len(LACE_COLOURS)]
        made.append(("another colourway's image", key, draw_shoe(LACE_COLOURS[other], SOLE_COLOURS[sole])))
        original = draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])
        made.extend((edit, key, apply(original)) for edit, apply in EDITS.items())  # the original, edited
    for lace in ("red", "blue", "black"):  # white soles tinted blue
        made.append(("tinted white", key_for(lace, "white"), draw_shoe(LACE_COLOURS[lace], TINTED_WHITE)))
    for sole in ("white", "gum", "blue"):
        made.append(
            (
                "gold laces as yellow",
                key_for("yellow", sole),
                draw_shoe(DISTRACTOR_LACE[1], SOLE_COLOURS[sole]),
            )
        )
    return made


SEARCHED = (
    "memorized original",
    "lace shifted ΔE00 3",
    "sole shifted ΔE00 3",
    "lace shifted ΔE00 5",
    "sole shifted ΔE00 5",
)


def whole_search(loaded: Any, cases: list, index: SiblingIndex, gate: Gate, ladder: tuple[int, ...]) -> None:
    """Accepted cases per class, with the sweep's whole search, before and with the step ladder."""
    from archiver.engine.encoding import capture_profile
    from archiver.engine.originals import decode_rgb
    from archiver.example.rumba import encode_like_key
    from archiver.prove import DeterminismSample, search_seed

    trained = ladder[-1]
    print(
        f"\nthe sweep's whole search (8 seeds, 4 a call): cases accepted, "
        f"trained {trained} steps only / ladder"
    )
    prompts = {key_for(lace, sole): prompt_for(lace, sole) for lace in LACE_COLOURS for sole in SOLE_COLOURS}
    rows = {}
    for kind in SEARCHED:
        counts = {"before": 0, "ladder": 0}
        steps_used: Counter[int] = Counter()
        chosen = [(key, image) for k, key, image in cases if k == kind]
        for key, image in chosen:
            data = encode_like_key(image, key)
            profile, original = capture_profile(data, key), decode_rgb(data, key)
            base = base_spec(loaded, prompt=prompts[key], width=64, height=64, steps=trained)
            for name, rungs in (("before", ()), ("ladder", ladder)):
                found = search_seed(
                    loaded,
                    base,
                    profile,
                    original,
                    lambda r, key=key: index.nearest(r, exclude=key),
                    gate,
                    max_seeds=8,
                    batch_size=4,
                    ladder=rungs,
                    determinism=DeterminismSample(1_000_000),
                )
                counts[name] += found.passed
                if found.passed and name == "ladder":
                    steps_used[found.spec.steps] += 1
        rows[kind] = {"cases": len(chosen), **counts, "ladder_steps": dict(steps_used)}
        print(
            f"{kind:<28} {counts['before']:>3}/{len(chosen):<3} "
            f"{counts['ladder']:>3}/{len(chosen):<3} {dict(steps_used)}"
        )
    print(json.dumps({"bench": "gate_calibration_search", "rows": rows}))


def gate_thresholds(gate: Gate) -> dict[str, float]:
    from dataclasses import asdict

    return {k: float(v) for k, v in asdict(gate.thresholds).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument(
        "--search", action="store_true", help="also the sweep's whole search, before and after"
    )
    args = parser.parse_args()
    enable_determinism()
    with tempfile.TemporaryDirectory() as tmp:
        catalog = open_catalog(f"sqlite:///{tmp}/catalog.db")
        with catalog.begin() as session:
            loaded = load_model(register_model(session, args.model_dir, "rumba"))
        catalog.close()
    ladder = read_render_settings(args.model_dir).ladder
    originals = {
        key_for(lace, sole): draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])
        for lace in LACE_COLOURS
        for sole in SOLE_COLOURS
    }
    renders: dict[int, dict[str, Image.Image]] = {steps: {} for steps in ladder}
    for steps in ladder:
        for lace in LACE_COLOURS:
            for sole in SOLE_COLOURS:
                spec = base_spec(loaded, prompt=prompt_for(lace, sole), width=64, height=64, steps=steps)
                (renders[steps][key_for(lace, sole)],) = render_images(loaded, spec, [0])
    index = SiblingIndex(originals.__getitem__)
    index.extend(originals.items())
    gate = Gate()
    cases = [("memorized original", key, image) for key, image in originals.items()] + distractors()
    results: dict[str, list[dict]] = defaultdict(list)
    trained, cheaper = ladder[-1], ladder[:-1]
    for kind, key, image in cases:
        # As the sweep does: the trained schedule proves the image, then the cheapest rung that
        # passes too is the record; a case the trained schedule refuses is refused.
        render = renders[trained][key]
        steps, report = trained, gate.evaluate(image, render, index.nearest(render, exclude=key), True)
        if report.passed:
            for rung in cheaper:
                render = renders[rung][key]
                judged = gate.evaluate(image, render, index.nearest(render, exclude=key), True)
                if judged.passed:
                    steps, report = rung, judged
                    break
        results[kind].append(
            {
                "passed": report.passed,
                "steps": steps,
                "failures": report.failures,
                **{m: report.metrics.get(m) for m in MEASURES},
            }
        )
    rows: list[dict[str, Any]] = []
    for kind, found in results.items():
        refused = [r for r in found if not r["passed"]]
        row: dict[str, Any] = {
            "class": kind,
            "cases": len(found),
            "refused": len(refused),
            "accepted_at_steps": dict(Counter(r["steps"] for r in found if r["passed"])),
            "by": dict(Counter(f for r in refused for f in r["failures"]).most_common()),
            **{m: [min(r[m] for r in found), max(r[m] for r in found)] for m in MEASURES},
        }
        rows.append(row)
    print(
        f"{'class':<28} {'refused':>9}  {'LPIPS':>13} {'worst tile':>13} {'PSNR dB':>13}"
        f" {'ΔE00 worst 1%':>13} {'margin dB':>13}  checks that refused"
    )
    for r in rows:
        ranges = " ".join(f"{r[m][0]:>6.3g}-{r[m][1]:<6.3g}" for m in MEASURES)
        accepted = ", ".join(f"{n} steps {c}" for n, c in sorted(r["accepted_at_steps"].items()))
        print(
            f"{r['class']:<28} {r['refused']:>4}/{r['cases']:<4}  {ranges}  "
            + ", ".join(f"{k} {v}" for k, v in r["by"].items())
            + (f"  (accepted at: {accepted})" if accepted else "")
        )
    print(
        json.dumps(
            {
                "bench": "gate_calibration",
                "ladder": list(ladder),
                "thresholds": gate_thresholds(gate),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
