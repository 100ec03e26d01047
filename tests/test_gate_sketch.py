"""The render sketch: small, the same on every machine, and an honest estimate of PSNR."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from archiver.example.rumba import LACE_COLOURS, SOLE_COLOURS, draw_shoe
from archiver.gate import psnr
from archiver.gate.sketch import DEFAULT_MIN_PSNR, SIZE, estimated_psnr, same_image, sketch, sketches_psnr


def shoe(lace: str = "red", sole: str = "white") -> Image.Image:
    return draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])


def noisy(image: Image.Image, amplitude: int, seed: int = 0, fraction: float = 1.0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-amplitude, amplitude + 1, size=pixels.shape) * (rng.random(pixels.shape) < fraction)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def test_a_sketch_fits_a_record_and_is_the_same_on_every_machine() -> None:
    made = sketch(shoe())
    assert len(made) == SIZE <= 128
    # Pinned: the hashing draws come from numpy's PCG64 with a fixed seed, a stream numpy keeps
    # stable across versions and platforms. If this changes, every stored sketch is void.
    assert (
        hashlib.sha256(made).hexdigest() == "f4e47f8f8917d07d4aa095328cd58853cd8604e5be65094abb5808fe1798430f"
    )
    assert made == sketch(Image.fromarray(np.asarray(shoe()).copy()))


@pytest.mark.parametrize("amplitude", [1, 2, 4, 8, 16])
def test_the_estimate_follows_the_true_psnr(amplitude: int) -> None:
    original = shoe("blue", "gum")
    render = noisy(original, amplitude)
    assert estimated_psnr(sketch(original), render) == pytest.approx(psnr(original, render), abs=2.0)


@pytest.mark.parametrize("amplitude", [1, 4, 16])
def test_two_sketches_estimate_the_psnr_between_their_images(amplitude: int) -> None:
    original = shoe("blue", "gum")
    render = noisy(original, amplitude)
    between = sketches_psnr(sketch(original), sketch(render))
    assert between == pytest.approx(estimated_psnr(sketch(original), render))
    assert between == pytest.approx(psnr(original, render), abs=2.0)
    assert sketches_psnr(sketch(original), sketch(original)) == float("inf")
    with pytest.raises(ValueError, match="not a version-1"):
        sketches_psnr(sketch(original), sketch(original)[:-2])


def test_kernel_drift_passes_and_other_images_fail() -> None:
    accepted = shoe()
    drift = noisy(accepted, 1, fraction=0.02)  # a level here and there: what other kernels do (~67 dB)
    assert same_image(sketch(accepted), drift) == (
        True,
        pytest.approx(estimated_psnr(sketch(accepted), drift)),
    )
    assert same_image(sketch(accepted), accepted)[1] == float("inf")
    # Another image, and the same image re-rendered with another seed (about 50 dB here).
    for other in (shoe("orange"), shoe("red", "gum"), noisy(accepted, 6), noisy(accepted, 1, fraction=0.5)):
        passed, estimate = same_image(sketch(accepted), other)
        assert not passed and estimate < DEFAULT_MIN_PSNR


def test_a_sketch_of_another_size_or_version_is_refused() -> None:
    with pytest.raises(ValueError, match="not a version-1 render sketch"):
        estimated_psnr(b"\x02" + sketch(shoe())[1:], shoe())
    with pytest.raises(ValueError, match="not a version-1"):
        estimated_psnr(sketch(shoe())[:-2], shoe())
