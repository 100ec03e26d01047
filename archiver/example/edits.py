"""Edits a person sees that are not a regional colour: the gate's generic distractors.

Owns `EDITS`, named functions that change an image the way a replaced or re-exported photo differs
from the one a record promises (mirrored, moved by a pixel, turned, rescaled, softened, re-lit,
washed out, recompressed, marked). The calibration (bench/gate_calibration.py) and the gate's tests
apply them to the example's originals; they hold no knowledge of the shoe, so they fit any image.

Must not: draw the example's own variants (that is `rumba.draw_shoe`), or be tuned to what the gate
measures: each is a plain image operation at a strength a person notices side by side.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

WHITE = (255, 255, 255)


def shifted(image: Image.Image, dx: int) -> Image.Image:
    """Moved right by `dx` pixels, the uncovered edge filled with white (a re-cropped shot)."""
    moved = Image.new("RGB", image.size, WHITE)
    moved.paste(image, (dx, 0))
    return moved


def rescaled(image: Image.Image, factor: float) -> Image.Image:
    """Shrunk by `factor` about the centre, padded with white (a re-framed shot)."""
    width, height = image.size
    small = image.resize((round(width * factor), round(height * factor)), Image.Resampling.BICUBIC)
    return ImageOps.pad(small, image.size, color=WHITE)


def recompressed(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return decoded.convert("RGB")


def marked(image: Image.Image) -> Image.Image:
    """A small dark mark (3 x 4 pixels) below the centre: a smudge, a glyph, a sticker's edge."""
    edited = image.copy()
    x, y = image.width // 2, image.height // 2 + image.height // 10
    ImageDraw.Draw(edited).rectangle([x - 1, y, x + 1, y + 3], fill=(20, 20, 20))
    return edited


def grainy(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian grain of `sigma` levels (seeded): a noisy scan or a high-ISO shot."""
    pixels = np.asarray(image, dtype=np.float64)
    grained = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(np.rint(grained), 0, 255).astype(np.uint8))


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "mirrored": ImageOps.mirror,
    "shifted 1 px": lambda image: shifted(image, 1),
    "rotated 3°": lambda image: image.rotate(3, Image.Resampling.BICUBIC, fillcolor=WHITE),
    "rescaled 90%": lambda image: rescaled(image, 0.9),
    "blurred (sigma 1)": lambda image: image.filter(ImageFilter.GaussianBlur(1)),
    "darker 10%": lambda image: ImageEnhance.Brightness(image).enhance(0.9),
    "brighter 10%": lambda image: ImageEnhance.Brightness(image).enhance(1.1),
    "contrast -20%": lambda image: ImageEnhance.Contrast(image).enhance(0.8),
    "desaturated 40%": lambda image: ImageEnhance.Color(image).enhance(0.6),
    "grayscale": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "JPEG quality 10": lambda image: recompressed(image, 10),
    "grain (sigma 8)": lambda image: grainy(image, 8),
    "small dark mark": marked,
}
