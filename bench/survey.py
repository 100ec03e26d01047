"""Benchmark: images per second of `archiver survey` on the CPU, and its peak memory. A table, then a
JSON line.

    .venv/bin/python bench/survey.py [--images 10000,100000] [--groups 40] [--data DIR] [--no-dense-too]

The source: a local directory of synthetic 64x64 PNGs (`--data`, kept and reused when it already
holds that many; default under the system's temp dir). `--groups` folders of variants, each a
random scene (a background, a rectangle, a small disc and a thin band) whose disc and band colours
vary per image, named `scene-xx/item-{colour}-{n}.png`; plus 5% pure noise in `noise/`. The number of
groups stays the same whatever the number of images, so memory that grew with the images would
show as a larger peak at 100,000 than at 10,000.

Each size runs in its own process (`survey_once`), so its peak RSS (getrusage) is its own; the
RSS is sampled during the run itself (before: with torch and the LPIPS network loaded; peak: the
largest seen while surveying; growth: the difference).
The rate counts the whole `run_survey` call: listing, reading, decoding, the pHash, the dense
descriptor, grouping, spooling and pricing, with the network already loaded.

Anchors (their own numbers, other machines): imagededup's perceptual-hash pass about 260 images/s on
4 vCPUs; fastdup about 1,000 images/s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def make_source(root: Path, images: int, groups: int) -> None:
    """Write the synthetic source (see the module docstring) unless `root` already holds it."""
    import numpy as np
    from PIL import Image, ImageDraw

    stamp = root / ".bench-survey"
    want = f"{images} {groups}"
    if stamp.exists() and stamp.read_text() == want:
        return
    rng = np.random.default_rng(0)
    noise = images // 20
    per_group = (images - noise) // groups
    scenes = []
    for _ in range(groups):
        base = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(120, 256, 3)))
        draw = ImageDraw.Draw(base)
        x, y = (int(v) for v in rng.integers(4, 30, 2))
        draw.rectangle((x, y, x + 24, y + 20), fill=tuple(int(c) for c in rng.integers(0, 120, 3)))
        ellipse = np.zeros((64, 64), dtype=bool)
        cx, cy = (int(v) for v in rng.integers(16, 48, 2))
        yy, xx = np.mgrid[0:64, 0:64]
        ellipse[(xx - cx) ** 2 + (yy - cy) ** 2 < 36] = True
        band = np.zeros((64, 64), dtype=bool)
        top = int(rng.integers(40, 56))
        band[top : top + 3, 8:56] = True
        scenes.append((np.asarray(base).copy(), ellipse, band))
    made = 0
    for g, (pixels, ellipse, band) in enumerate(scenes):
        folder = root / f"scene-{chr(97 + g // 26)}{chr(97 + g % 26)}"  # no digits: one folder, one group
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_group):
            image = pixels.copy()
            image[ellipse] = rng.integers(0, 256, 3)
            image[band] = rng.integers(0, 256, 3)
            colour = ["red", "blue", "green", "gold", "gray", "pink"][n % 6]
            _png(image, folder / f"item-{colour}-{n:06d}.png")
            made += 1
    (root / "noise").mkdir(parents=True, exist_ok=True)
    for n in range(images - made):
        _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), root / "noise" / f"noise-{n:06d}.png")
    stamp.write_text(want)


def _png(pixels: Any, path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    path.write_bytes(buf.getvalue())


def rss_mib() -> float:
    """The resident set now (VmRSS), MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class RssSampler:
    """The largest resident set seen while running (sampled every 20 ms): the run's own peak, which
    getrusage's lifetime maximum would hide behind the network's load."""

    def __init__(self) -> None:
        import threading

        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mib())


def survey_once(root: Path, dense: bool) -> dict[str, Any]:
    """One survey in this process; the figures for the table."""
    import torch

    from archiver.storage import LocalHotStore
    from archiver.survey.describe import DenseDescriptor
    from archiver.survey.run import SurveyConfig, run_survey
    from archiver.survey.savings import PriceTerms
    from archiver.sweep.cost import Prices

    if dense:
        DenseDescriptor()  # load the network before the clock starts
    loaded = rss_mib()
    terms = PriceTerms(Prices(), "GLACIER", pack_threshold=1 << 20, pack_target=64 << 20)
    sampler = RssSampler()
    started = time.perf_counter()
    with run_survey(LocalHotStore(root), SurveyConfig(terms=terms, dense=dense)) as survey:
        seconds = time.perf_counter() - started
        peak = sampler.stop()
        top = survey.groups[0]
        return {
            "images": survey.images,
            "dense": dense,
            "seconds": round(seconds, 1),
            "images_per_second": round(survey.images / seconds, 1),
            "rss_before_mib": round(loaded, 1),
            "peak_rss_mib": round(peak, 1),
            "growth_mib": round(peak - loaded, 1),
            "lifetime_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "groups": len(survey.groups),
            "top_group": f"{top.template} core {top.core}/{top.images}",
            "core_share": round(sum(g.core for g in survey.groups) / max(survey.images, 1), 4),
            "torch_threads": torch.get_num_threads(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="10000,100000")
    parser.add_argument("--groups", type=int, default=40)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "archiver-bench-survey")
    parser.add_argument("--no-dense-too", action="store_true", help="Also run each size with pHash only.")
    parser.add_argument("--once", nargs=2, metavar=("DIR", "DENSE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(survey_once(Path(args.once[0]), args.once[1] == "1")))
        return
    rows = []
    for images in [int(n) for n in args.images.split(",")]:
        root = args.data / str(images)
        t = time.perf_counter()
        make_source(root, images, args.groups)
        print(f"source of {images} images ready ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        for dense in [True, False] if args.no_dense_too else [True]:
            out = subprocess.run(
                [sys.executable, __file__, "--once", str(root), "1" if dense else "0"],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            rows.append(json.loads(out.stdout.splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    header = (
        f"{'images':>8} {'dense':>5} {'seconds':>8} {'images/s':>9} {'RSS before MiB':>15} "
        f"{'peak in run':>12} {'growth':>7} {'groups':>7} {'core share':>11}"
    )
    print(f"survey on {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; 64x64 PNG")
    print(header)
    for r in rows:
        print(
            f"{r['images']:>8} {'yes' if r['dense'] else 'no':>5} {r['seconds']:>8} "
            f"{r['images_per_second']:>9} {r['rss_before_mib']:>15} {r['peak_rss_mib']:>12} "
            f"{r['growth_mib']:>7} {r['groups']:>7} {r['core_share']:>11}"
        )
    print(json.dumps({"bench": "survey", "groups": args.groups, "rows": rows}))


if __name__ == "__main__":
    main()
