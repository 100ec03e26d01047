"""The colour measure on its own: what it reports for uniform shifts, noise and regions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from archiver.example.rumba import LACE_COLOURS, SOLE_COLOURS, draw_shoe, shift_colour
from archiver.gate.colour import ColourDifference, blur_sigma, colour_difference


def flat(rgb: tuple[int, int, int], size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


def test_identical_images_differ_by_nothing() -> None:
    shoe = draw_shoe(LACE_COLOURS["red"], SOLE_COLOURS["white"])
    assert colour_difference(shoe, shoe.copy()) == ColourDifference(0.0, 0.0)


@pytest.mark.parametrize("delta_e", [1, 3, 5, 10])
def test_a_uniform_shift_reads_as_its_ciede2000(delta_e: float) -> None:
    base = (120, 140, 90)
    moved = shift_colour(base, delta_e, (0, 1, 0))
    expected = float(
        deltaE_ciede2000(rgb2lab(np.asarray([[base]]) / 255), rgb2lab(np.asarray([[moved]]) / 255))[0, 0]
    )
    measured = colour_difference(flat(base), flat(moved))
    assert measured.mean == pytest.approx(expected, abs=0.01)
    assert measured.worst == pytest.approx(expected, abs=0.01)


def test_pixel_noise_is_low_passed_away() -> None:
    """±8 levels of independent noise per pixel (PSNR about 33 dB) is not a colour difference."""
    shoe = draw_shoe(LACE_COLOURS["green"], SOLE_COLOURS["gum"])
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(shoe, dtype=np.int16) + rng.integers(-8, 9, size=(64, 64, 3)), 0, 255)
    measured = colour_difference(shoe, Image.fromarray(noisy.astype(np.uint8)))
    assert measured.worst < 2.0  # the limit is 3.0; unfiltered, the same noise reaches ΔE00 10


def test_a_region_shift_shows_in_the_worst_area_more_than_the_mean() -> None:
    """The sole is about 15% of the image: the mean dilutes its shift, the worst 1% does not."""
    shoe = draw_shoe(LACE_COLOURS["blue"], SOLE_COLOURS["red"])
    moved = draw_shoe(LACE_COLOURS["blue"], shift_colour(SOLE_COLOURS["red"], 8, (1, 0, 0)))
    measured = colour_difference(shoe, moved)
    assert measured.worst > 6 and measured.mean < measured.worst / 3


def test_the_low_pass_follows_the_image_size() -> None:
    assert blur_sigma(64, 64) == 2.0 and blur_sigma(512, 256) == 8.0 and blur_sigma(16, 16) == 1.0
    with pytest.raises(ValueError, match="one size"):
        colour_difference(flat((1, 2, 3), 32), flat((1, 2, 3), 64))
