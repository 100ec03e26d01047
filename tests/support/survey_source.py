"""A source for the survey's tests: the rumba catalogue among unrelated images, and bad input.

shoes/rumba-{lace}-{sole}.{png,jpg}   the 48 shoes (archiver example rumba)
shoes/rumba-noise-static.png          pure noise under a shoe's name: an outlier
shoes/rumba-circle-red.png            a random shape under a shoe's name: an outlier
shoes/rumba-broken-file.png           a PNG cut after its signature: counted as bad
shoes/rumba-cafe\u0301-x.png          a key not in NFC: skipped as unsafe, counted
shoes/notes.txt                       not an image
noise/noise-0000..0015.png            16 noise images, 64x64
shapes/shape-0000..0015.png           16 random shapes (kind, place, size, colours), 64x64
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from archiver.example.rumba import write_catalogue

OUTLIERS = {"shoes/rumba-noise-static.png", "shoes/rumba-circle-red.png"}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def noise(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def shape(rng: np.random.Generator) -> Image.Image:
    def colour() -> tuple[int, int, int]:
        r, g, b = (int(c) for c in rng.integers(0, 256, 3))
        return r, g, b

    image = Image.new("RGB", (64, 64), colour())
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(0, 40, 2))
    w, h = (int(v) for v in rng.integers(10, 30, 2))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        draw.ellipse((x, y, x + w, y + h), fill=colour())
    elif kind == 1:
        draw.rectangle((x, y, x + w, y + h), fill=colour())
    else:
        draw.polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=colour())
    return image


def build_source(root: Path) -> dict[str, bytes]:
    """Write the source under `root`; return key -> bytes of every object (for an S3 upload)."""
    write_catalogue(root)
    (root / "captions.csv").unlink()  # keep the source to images (and one text file below)
    rng = np.random.default_rng(13)
    extra = {
        "shoes/rumba-noise-static.png": _png(noise(rng)),
        "shoes/rumba-circle-red.png": _png(shape(rng)),
        "shoes/rumba-broken-file.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 10,
        "shoes/notes.txt": b"not an image\n",
    }
    extra.update({f"noise/noise-{i:04d}.png": _png(noise(rng)) for i in range(16)})
    extra.update({f"shapes/shape-{i:04d}.png": _png(shape(rng)) for i in range(16)})
    for key, data in extra.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    (root / "shoes" / "rumba-cafe\u0301-x.png").write_bytes(extra["shoes/rumba-circle-red.png"])
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
