"""Benchmark: the gate's cost per image as the group grows. Prints a table, then a JSON line.

    .venv/bin/python bench/gate.py [--groups 48 480 4800] [--sizes 64 256] [--images 3] [--budget 60]

For each group size and image size: seconds to judge one render with the sibling index (the k
nearest siblings, pixels loaded on demand from encoded bytes, as a sweep reads them) beside the
old way (every same-size sibling judged in full), on the pretrained LPIPS trunk. The group is the
example shoe in random lace and sole colours (seeded), the "render" each original plus noise.
The old way is measured only where one image takes under --budget seconds; beyond that its
linear extrapolation from the largest measured group is printed and marked as such.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archiver.example.rumba import draw_shoe  # noqa: E402
from archiver.gate import Gate  # noqa: E402
from archiver.gate.siblings import SiblingIndex  # noqa: E402
from archiver.settings import default_of  # noqa: E402

K = default_of("gate_siblings_k")


def make_group(count: int, size: int) -> dict[str, bytes]:
    """`count` shoes in seeded random colourways, PNG-encoded (the "store")."""
    rng = np.random.default_rng(count)
    group = {}
    for i in range(count):
        lace, sole = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
        image = draw_shoe(lace, sole)  # type: ignore[arg-type]
        if size != image.width:
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        group[f"shoe-{i:05d}.png"] = buffer.getvalue()
    return group


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def noisy(image: Image.Image, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-3, 4, size=(image.height, image.width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def bench(gate: Gate, count: int, size: int, images: int, budget: float, old_s: float | None) -> dict:
    group = make_group(count, size)
    keys = sorted(group)
    started = time.perf_counter()
    index = SiblingIndex(lambda key: decode(group[key]), k=K)
    for key in keys:
        index.add(key, decode(group[key]))
    build_s = time.perf_counter() - started
    probes = keys[:: max(1, len(keys) // images)][:images]
    indexed = []
    for key in probes:
        original = decode(group[key])
        render = noisy(original, 1)
        started = time.perf_counter()
        report = gate.evaluate(original, render, index.nearest(render, exclude=key), True)
        indexed.append(time.perf_counter() - started)
        assert report.passed, report.failures
    row = {
        "group": count,
        "size": size,
        "index_build_s_per_image": build_s / count,
        "indexed_s_per_image": float(np.median(indexed)),
        "all_siblings_s_per_image": None,
        "all_siblings_extrapolated": False,
    }
    if old_s is None or old_s < budget:
        siblings_of = {key: [decode(group[k]) for k in keys if k != key] for key in probes[:1]}
        key = probes[0]
        original = decode(group[key])
        started = time.perf_counter()
        gate.evaluate(original, noisy(original, 1), siblings_of[key], True)
        row["all_siblings_s_per_image"] = time.perf_counter() - started
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[48, 480, 4800])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--images", type=int, default=3, help="renders judged per configuration")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per image the old way may take")
    args = parser.parse_args()
    gate = Gate()
    rows = []
    for size in args.sizes:
        last: dict | None = None
        for count in sorted(args.groups):
            old = None if last is None else last["all_siblings_s_per_image"] * count / last["group"]
            row = bench(gate, count, size, args.images, args.budget, old)
            if row["all_siblings_s_per_image"] is None and last is not None:
                row["all_siblings_s_per_image"], row["all_siblings_extrapolated"] = old, True
            rows.append(row)
            last = row if not row["all_siblings_extrapolated"] else last
    print(
        f"{'size':>5} {'group':>6} {'index build/img':>16} {'k nearest (s/img)':>18}"
        f" {'all siblings (s/img)':>22}"
    )
    for r in rows:
        old = f"{r['all_siblings_s_per_image']:.3f}" + (
            " (extrap.)" if r["all_siblings_extrapolated"] else ""
        )
        print(
            f"{r['size']:>5} {r['group']:>6} {r['index_build_s_per_image'] * 1000:>13.2f} ms "
            f"{r['indexed_s_per_image']:>18.3f} {old:>22}"
        )
    ratios = {}
    for size in args.sizes:
        mine = [r for r in rows if r["size"] == size]
        ratios[str(size)] = mine[-1]["indexed_s_per_image"] / mine[0]["indexed_s_per_image"]
        print(
            f"{size}x{size}: k-nearest cost at {mine[-1]['group']} / at {mine[0]['group']}"
            f" = {ratios[str(size)]:.2f}x (limit 1.5x)"
        )
    print(
        json.dumps(
            {
                "bench": "gate",
                "machine": platform.machine(),
                "k": K,
                "rows": rows,
                "largest_over_smallest": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
