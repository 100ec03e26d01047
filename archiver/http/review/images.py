"""The pictures a reviewer compares besides the pair itself: an amplified difference, the colour
map the gate's colour check summarises, and thumbnails for the static contact sheets.

Pure functions of encoded bytes to PNG bytes; the maths of colour stays in `archiver.gate.colour`.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from archiver.gate import colour

GAIN = 8  # the difference map multiplies |original - render| by this: 32 levels off is white
# The colour map's ramp: black (no difference) through yellow (the threshold) to red (twice it).
RAMP = np.array([[0, 0, 0], [255, 220, 0], [230, 0, 0]], dtype=np.float64)


def _rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _pair(original: bytes, render: bytes) -> tuple[Image.Image, Image.Image]:
    a, b = _rgb(original), _rgb(render)
    if a.size != b.size:
        raise ValueError(f"the original is {a.size[0]}x{a.size[1]}, the render {b.size[0]}x{b.size[1]}")
    return a, b


def difference(original: bytes, render: bytes, gain: int = GAIN) -> bytes:
    """|original - render| per channel, times `gain`, as a PNG: where pixels differ at all."""
    a, b = _pair(original, render)
    delta = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)) * gain
    return png(Image.fromarray(np.clip(delta, 0, 255).astype(np.uint8)))


def colour_map(original: bytes, render: bytes, limit: float) -> bytes:
    """The low-passed ΔE00 per pixel (`gate.colour.difference_map`) as a heat map: black at 0,
    yellow at the gate's `limit`, red at twice it and above."""
    a, b = _pair(original, render)
    scaled = np.clip(colour.difference_map(a, b) / max(limit, 1e-6), 0.0, 2.0)
    low = np.clip(scaled, 0.0, 1.0)[..., None]
    high = np.clip(scaled - 1.0, 0.0, 1.0)[..., None]
    rgb = np.where(
        scaled[..., None] <= 1.0, RAMP[0] + (RAMP[1] - RAMP[0]) * low, RAMP[1] + (RAMP[2] - RAMP[1]) * high
    )
    return png(Image.fromarray(rgb.round().astype(np.uint8)))


def thumbnail(data: bytes, side: int) -> bytes:
    """A PNG at most `side` pixels on its longer side (never enlarged)."""
    image = _rgb(data)
    image.thumbnail((side, side))
    return png(image)


def extension(data: bytes) -> str:
    """The file extension of encoded image bytes (png, jpg, webp), by their signature."""
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def media_type(data: bytes) -> str:
    return {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}.get(
        extension(data), "application/octet-stream"
    )
