"""The render sketch: proof that a render is the accepted image when its bytes are not.

A record promises the SHA-256 of the render the gate accepted; another CPU generation, a GPU or
float16 runs other kernels and changes a few pixel values by a level or two, so the bytes differ
while the image does not. The sketch lets a reader tell that drift from a different image.

It is made of the render's pixels before they are encoded: a JPEG encoder turns another CPU's
drift of a level in a few pixels into a changed coefficient, which moves a whole 8x8 block (on the
example, drift of 66 dB and up in the pixels measured 49-60 dB after JPEG, where another seed
already sits), so the reader compares the pixels it rendered, not the bytes it encoded.

It is a random projection of the render's pixels (a count sketch, the sparse form of a
Johnson-Lindenstrauss projection): every pixel value is given, by a fixed pseudo-random draw, one
of `PROJECTIONS` buckets and a sign; each bucket sums its signed values, scaled by sqrt(K/N), and is
stored as float16 (125 bytes with its version byte). For two images x and y, the mean of the
squared differences of their buckets is an unbiased estimate of the mean squared pixel difference
of x and y, so the sketch estimates the PSNR between a new render and the accepted one
(within about ±1-2 dB at 62 projections) without storing the render. Drift measured here sits at
66 dB or more; another seed, another step count, another prompt or a sibling's render sits below
`DEFAULT_MIN_PSNR` (bench/sketch_calibration.py regenerates the calibration).

Pure numpy; the patterns are derived from the image's shape with a fixed seed, so every machine
draws the same ones. It decides only "same image or not" against a tolerance the caller passes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

VERSION = 1
PROJECTIONS = 62  # 1 version byte + 62 float16 = 125 bytes: under the 128 a record may spend
SIZE = 1 + 2 * PROJECTIONS
# dB, estimated against the accepted render. Calibrated on the example (bench/sketch_calibration.py):
# other CPU code paths estimate >= 66.2 dB, while another seed or step count of this strongly
# memorizing model already estimates 45.4-54.1 dB (and another prompt <= 15.7 dB).
DEFAULT_MIN_PSNR = 60.0
_PATTERN_SEED = 0x5EED_5CE7C4  # fixed forever for VERSION 1: changing it changes every sketch


@lru_cache(maxsize=8)
def _hashing(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel value's bucket and sign for images of this shape, the same on every machine
    (1.5 bytes per value: 1.2 MB for 512x512, kept for the last few shapes)."""
    n = math.prod(shape)
    rng = np.random.Generator(np.random.PCG64([_PATTERN_SEED, *shape]))
    buckets = rng.integers(0, PROJECTIONS, size=n, dtype=np.uint8)
    signs = rng.integers(0, 2, size=n, dtype=np.int8) * 2 - 1
    return buckets, signs


def _project(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    buckets, signs = _hashing(pixels.shape)
    # Centred, so float16 keeps its precision near zero; sqrt(K/N) makes each bucket's expected
    # squared difference the per-value mean squared difference.
    flat = (pixels.reshape(-1) - 127.5) * signs
    return np.bincount(buckets, weights=flat, minlength=PROJECTIONS) * math.sqrt(PROJECTIONS / flat.size)


def sketch(image: Image.Image) -> bytes:
    """The image's sketch: SIZE bytes."""
    return bytes([VERSION]) + _project(image).astype("<f2").tobytes()


def _buckets(stored: bytes) -> np.ndarray:
    """A stored sketch's buckets, or ValueError if it is not a sketch of this version."""
    if len(stored) != SIZE or stored[0] != VERSION:
        raise ValueError(f"not a version-{VERSION} render sketch ({len(stored)} bytes)")
    return np.frombuffer(stored, dtype="<f2", offset=1).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def estimated_psnr(stored: bytes, image: Image.Image) -> float:
    """The PSNR (dB, 8-bit) between `image` and the image `stored` was made from, estimated."""
    reference = _buckets(stored)
    return _psnr(_project(image).astype(np.float16).astype(np.float32), reference)


def sketches_psnr(a: bytes, b: bytes) -> float:
    """The PSNR (dB, 8-bit) between the images two sketches were made from, estimated."""
    return _psnr(_buckets(a), _buckets(b))


def same_image(stored: bytes, image: Image.Image, min_psnr: float = DEFAULT_MIN_PSNR) -> tuple[bool, float]:
    """(whether `image` is the sketched image within the tolerance, the estimated PSNR)."""
    estimate = estimated_psnr(stored, image)
    return estimate >= min_psnr, estimate
