"""Benchmark: served bytes over the original's, per case, at the gate's verdict. A table, then a JSON line.

    .venv/bin/python bench/encoding.py [--images 48] [--k 8]

The example's 48 shoes are rendered by the shipped model (examples/rumba) and served as the
encoding profile says (issue 26, item 4). Cases: the example as shipped (PNG: RGB, zlib level 9;
JPEG: quality 92, 4:4:4; both with the sRGB ICC and EXIF), the drawn shoes saved by common tools
(PIL `optimize=True` PNG, a palette PNG, a baseline JPEG with optimized Huffman tables, a
progressive JPEG, a camera-style JPEG with EXIF at quality 90, 4:2:0), and one case that cannot
match: the example's JPEGs decoded and saved as PNG (over 256 colours).

Each image is rendered at seed 0 on the model's step ladder, cheapest first, and judged by the
pretrained-LPIPS gate (against its k nearest originals of the example as siblings), served first
as a version-1 profile would serve it (the profile's version-2 fields left out), then as it is
captured now. The render used is the cheapest step count whose version-1 bytes pass (the
version-2 bytes are judged on that same render); a case version 1 refused (a palette PNG) uses
the cheapest that passes now. Ratio = served bytes / the original's bytes. "same verdict" counts
images whose verdict did not change.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archiver.engine.encoding import _V2_FIELDS, EncodingProfile, capture_profile, encode  # noqa: E402
from archiver.engine.manifests import read_render_settings  # noqa: E402
from archiver.engine.originals import decode_rgb  # noqa: E402
from archiver.engine.pipeline import load_pipeline  # noqa: E402
from archiver.engine.rendering import render_batch  # noqa: E402
from archiver.example import rumba  # noqa: E402
from archiver.gate import Gate  # noqa: E402
from archiver.gate.siblings import SiblingIndex  # noqa: E402

MODEL = REPO / "examples" / "rumba" / "model"


def _save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "Canon EOS R6"  # Model
    exif[0x0131] = "Adobe Lightroom 13.0"  # Software
    exif[0x0132] = "2026:03:14 10:00:00"  # DateTime
    return exif.tobytes()


# case -> (the format it applies to in the example: None for every shoe, how the original is written)
CASES: dict[str, tuple[str | None, Callable[[Image.Image, bytes], bytes]]] = {
    "example PNG (RGB, level 9, ICC+EXIF)": ("PNG", lambda pixels, shipped: shipped),
    "example JPEG (q92 4:4:4, ICC+EXIF)": ("JPEG", lambda pixels, shipped: shipped),
    "PIL optimize=True PNG": (None, lambda p, _: _save(p, "PNG", optimize=True)),
    "palette PNG (PIL adaptive, optimize)": (
        None,
        lambda p, _: _save(p.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", optimize=True),
    ),
    "JPEG optimize=True (q85)": (None, lambda p, _: _save(p, "JPEG", quality=85, optimize=True)),
    "progressive JPEG (q85)": (None, lambda p, _: _save(p, "JPEG", quality=85, progressive=True)),
    "JPEG with camera EXIF (q90 4:2:0)": (
        None,
        lambda p, _: _save(p, "JPEG", quality=90, exif=_camera_exif()),
    ),
    # Where it cannot match: a PNG of over 256 colours (here the example's JPEGs decoded, artefacts
    # and all) keeps the render's noise, and its profile says so (`png-many-colours`).
    "PNG of a decoded JPEG (>256 colours)": (
        "JPEG",
        lambda _, shipped: _save(decoded(shipped), "PNG", optimize=True),
    ),
}


def v1(profile: EncodingProfile) -> EncodingProfile:
    """The profile as version 1 captured it: the same fields, none of version 2's."""
    cleared: dict[str, Any] = dict.fromkeys(_V2_FIELDS)
    return dataclasses.replace(profile, **cleared)


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--k", type=int, default=8, help="siblings per judgement (the sweep's default)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        entries = rumba.write_catalogue(Path(tmp))[: args.images]
        shipped = {e.key: e.path.read_bytes() for e in entries}
    # The common tools save the drawn shoes (the example's JPEGs would bring their artefacts along);
    # the gate's siblings are the example's originals as shipped.
    pixels = {e.key: rumba.draw_shoe(rumba.LACE_COLOURS[e.lace], rumba.SOLE_COLOURS[e.sole]) for e in entries}
    shipped_pixels = {e.key: decode_rgb(shipped[e.key], e.key) for e in entries}
    index = SiblingIndex(shipped_pixels.get, k=args.k)
    for key, image in shipped_pixels.items():
        index.add(key, image)
    pipe = load_pipeline(MODEL, device="cpu")
    settings = read_render_settings(MODEL)
    gate = Gate()
    renders: dict[tuple[str, int], Image.Image] = {}

    def render(entry: rumba.CatalogueEntry, steps: int) -> Image.Image:
        if (entry.key, steps) not in renders:
            (renders[entry.key, steps],) = render_batch(
                pipe, prompt=entry.prompt, negative_prompt=None, seeds=[0], steps=steps,
                guidance_scale=settings.guidance_scale, width=64, height=64, eta=settings.eta, device="cpu",
            )  # fmt: skip
        return renders[entry.key, steps]

    def judge(key: str, original: Image.Image, data: bytes) -> bool:
        seen = decoded(data)
        return gate.evaluate(original, seen, index.nearest(seen, exclude=key), rerender_identical=None).passed

    rows: list[dict[str, Any]] = []
    all_ratios: list[float] = []
    matched: list[float] = []  # the cases whose profiles carry no size note: the target
    for case, (fmt, write) in CASES.items():
        ratios: list[float] = []
        before_ratios: list[float] = []
        passed = {"v1": 0, "v2": 0}
        same = refused_v1 = 0
        notes: set[str] = set()
        for entry in entries:
            if fmt is not None and entry.format != fmt:
                continue
            data = write(pixels[entry.key], shipped[entry.key])
            original = decode_rgb(data, entry.key)
            profile = capture_profile(data, entry.key)
            notes.update(profile.size_notes or ())
            old = v1(profile)
            old_refused = profile.png_mode == "P"  # version 1 refused palette PNGs
            chosen, verdict_v1, old_bytes = None, False, b""
            for steps in settings.ladder:
                image = render(entry, steps)
                if old_refused:
                    if judge(entry.key, original, encode(image, profile)):
                        chosen = image
                        break
                    continue
                old_bytes = encode(image, old)
                if judge(entry.key, original, old_bytes):
                    chosen, verdict_v1 = image, True
                    break
            chosen = chosen or render(entry, settings.ladder[-1])
            served = encode(chosen, profile)
            verdict_v2 = judge(entry.key, original, served)
            passed["v2"] += verdict_v2
            if old_refused:
                refused_v1 += 1
            else:
                passed["v1"] += verdict_v1
                same += verdict_v1 == verdict_v2
                before_ratios.append(len(old_bytes or encode(chosen, old)) / len(data))
            ratios.append(len(served) / len(data))
        all_ratios += ratios
        if not notes:
            matched += ratios
        print(f"{case}: {len(ratios)} images judged", file=sys.stderr, flush=True)
        rows.append({
            "case": case,
            "images": len(ratios),
            "ratio_before_median": round(statistics.median(before_ratios), 3) if before_ratios else None,
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_max": round(max(ratios), 3),
            "passed_before": None if refused_v1 else passed["v1"],
            "passed": passed["v2"],
            "same_verdict": None if refused_v1 else same,
            "refused_before": refused_v1,
            "size_notes": sorted(notes),
        })  # fmt: skip

    head = f"{'case':40} {'images':>6} {'before':>7} {'median':>7} {'max':>6} {'passed':>11} {'same':>5}"
    print(head + "  notes")
    for r in rows:
        before = "refused" if r["refused_before"] else f"{r['ratio_before_median']:.3f}x"
        was = "-" if r["passed_before"] is None else str(r["passed_before"])
        unchanged = "-" if r["same_verdict"] is None else str(r["same_verdict"])
        print(
            f"{r['case']:40} {r['images']:>6} {before:>7} {r['ratio_median']:>6.3f}x {r['ratio_max']:>5.3f}x"
            f" {was:>4} -> {r['passed']:<4} {unchanged:>5}  {', '.join(r['size_notes'])}"
        )
    overall = round(statistics.median(all_ratios), 3)
    target = round(statistics.median(matched), 3)
    print(f"all cases: median {overall}x, worst {max(all_ratios):.3f}x over {len(all_ratios)} images")
    print(f"cases without a size note: median {target}x, worst {max(matched):.3f}x, {len(matched)} images")
    print(json.dumps({
        "bench": "encoding", "rows": rows, "median": overall, "worst": round(max(all_ratios), 3),
        "median_without_notes": target, "worst_without_notes": round(max(matched), 3),
        "machine": platform.machine(), "python": platform.python_version(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
