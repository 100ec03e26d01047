"""What the survey keeps of one image: a small descriptor, never the pixels.

Owns decoding an object's bytes (through `engine.originals`, so an image the engine would refuse is
counted with the engine's own reason code), the perceptual hash (imagehash's pHash, 64 bits) and
the dense descriptor: the LPIPS AlexNet trunk's first two layers, each channel-normalised per
location as LPIPS does, average-pooled over a 2 x 2 grid, concatenated and unit-normalised (1,024
float16 values, 2 KiB). Every image is reduced to `THUMB` x `THUMB` first, so the cost per image does
not grow with its size. It reads no storage and knows no groups.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagehash
import numpy as np
from PIL import Image

from archiver.engine.originals import open_original
from archiver.errors import UnsupportedImage

if TYPE_CHECKING:
    import torch

THUMB = 64  # descriptors are computed on this square reduction of every image
GRID = 2  # the dense descriptor pools each layer over GRID x GRID cells


@dataclass(frozen=True)
class Decoded:
    """An image ready to be described: its small reduction and what the file says about itself."""

    key: str
    size: int
    width: int
    height: int
    format: str
    mode: str
    metadata: str  # camera make/model from EXIF, and whether an ICC profile is present, in short
    thumb: Image.Image  # THUMB x THUMB RGB


@dataclass(frozen=True)
class Descriptor:
    key: str
    size: int
    phash: int  # 64 bits
    dense: np.ndarray | None  # float16, unit length; None when the survey runs without it


def decode(data: bytes, key: str) -> Decoded:
    """Decode and reduce the image, or raise `UnsupportedImage` (its `reason` is what gets counted)."""
    original, image = open_original(data, key)
    with image:
        thumb = image.convert("RGB").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    return Decoded(
        key=key,
        size=len(data),
        width=original.width,
        height=original.height,
        format=original.format,
        # An opaque palette image ("P") decodes to RGB pixels like any other and is regenerated as
        # RGB: how its file stores them is the encoding profile's business, not what groups it.
        mode="RGB" if original.mode == "P" else original.mode,
        metadata=_metadata(original.exif, original.icc_profile is not None),
        thumb=thumb,
    )


def _metadata(exif: bytes | None, has_icc: bool) -> str:
    """Make and Model from EXIF (the camera or studio that made the image), and ICC or not."""
    parts = []
    if exif:
        try:
            read = Image.Exif()
            read.load(exif)
            parts = [str(read.get(tag, "")).strip("\0 ")[:40] for tag in (0x010F, 0x0110)]
        except Exception:  # damaged EXIF is already refused by open_original; this is only a label
            parts = []
    label = " ".join(p for p in parts if p)
    return f"{label or 'no camera'}, {'ICC' if has_icc else 'no ICC'}"


def phash(thumb: Image.Image) -> int:
    return int(str(imagehash.phash(thumb)), 16)


@functools.cache
def _lpips(trunk_path: Path | None, allowed_trunks: tuple[str, ...]) -> tuple[Any, dict[str, str]]:
    """The LPIPS network, built once per process (about 3 s); only its first layers are used here,
    read-only, so surveys in one process share it."""
    from archiver.gate.perceptual import load_lpips

    return load_lpips("pretrained", trunk_path=trunk_path, allowed_trunks=allowed_trunks)


class DenseDescriptor:
    """Pooled features of the LPIPS trunk's first two layers (see the module docstring), in batches."""

    def __init__(self, trunk_path: Path | None = None, allowed_trunks: Sequence[str] = ()) -> None:
        import torch

        net, self.described = _lpips(trunk_path, tuple(allowed_trunks))
        self._scaling: Any = net.scaling_layer
        alexnet: Any = net.net
        self._slice1: Any = alexnet.slice1
        self._slice2: Any = alexnet.slice2
        self._torch = torch

    @contextlib.contextmanager
    def one_thread(self) -> Iterator[None]:
        """Run the trunk on one thread meanwhile. Its convolutions on 64 x 64 batches are too small
        to share: on this 2-core machine, shared with other work, two threads took 5.1 ms per image
        and one 0.6 ms; the survey's reading threads use the other core."""
        before = self._torch.get_num_threads()
        self._torch.set_num_threads(1)
        try:
            yield
        finally:
            self._torch.set_num_threads(before)

    def __call__(self, thumbs: Sequence[Image.Image]) -> np.ndarray:
        """(N, 1024) float16 unit vectors for N thumbnails."""
        torch = self._torch
        array = np.stack([np.asarray(t) for t in thumbs]).astype(np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0
            h1 = self._slice1(self._scaling(x))
            h2 = self._slice2(h1)
            parts = [_pooled(h) for h in (h1, h2)]
            out = torch.cat(parts, dim=1)
            out = out / out.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return out.numpy().astype(np.float16)


def _pooled(h: torch.Tensor) -> torch.Tensor:
    import torch

    unit = h / torch.sqrt((h * h).sum(dim=1, keepdim=True)).clamp_min(1e-10)  # as LPIPS normalises
    return torch.nn.functional.adaptive_avg_pool2d(unit, (GRID, GRID)).flatten(1)


def thumbnail_bytes(thumb: Image.Image, size: int = THUMB) -> bytes:
    buf = io.BytesIO()
    thumb.resize((size, size), Image.Resampling.BILINEAR).save(buf, "PNG")
    return buf.getvalue()


def is_unsupported(error: BaseException) -> str | None:
    return error.reason if isinstance(error, UnsupportedImage) else None
