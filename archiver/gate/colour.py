"""Colour fidelity: would a person see a colour difference between a render and its original?

Owns one measure. Both images go to CIELAB (sRGB, D65), are low-passed with a Gaussian whose width
follows the image's size (sigma = shorter side / 32: a product photo is looked at whole, so pixel
noise and a slightly softer edge vanish, while a coloured area keeps its colour), and are compared
pixel by pixel with CIEDE2000. The report keeps the mean over the image and the "worst area": the
99th percentile, i.e. the colour difference that at least 1% of the image shows.

Why this and not LPIPS, PSNR or FLIP (measured on the example model's 48 memorized renders against
regional shifts and tints, see docs/architecture.md and bench/gate_calibration.py): LPIPS (AlexNet)
scored a band shifted by ΔE00 ~ 10 at 0.006 and PSNR averages a region away, and FLIP's error map
is dominated by the renders' edge errors (a ΔE00 10 sole shift scored below the memorized renders'
worst). A low-passed ΔE00 percentile separates them: memorized renders reach 2.8, a shift of ΔE00 5
over a sole or the laces at least 3.5, a tinted white about 10.

It decides no verdict (`verdict.Gate` compares it with the threshold) and renders nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab

WORST_AREA_PERCENTILE = 99.0  # the worst 1% of the image: a thin lace set is about 3% of a shoe
BLUR_FRACTION = 1 / 32  # sigma of the low-pass, as a fraction of the shorter side


@dataclass(frozen=True)
class ColourDifference:
    mean: float  # mean ΔE00 over the low-passed image
    worst: float  # ΔE00 that the worst 1% of the image reaches


def blur_sigma(width: int, height: int) -> float:
    return max(1.0, min(width, height) * BLUR_FRACTION)


def lab_lowpass(image: Image.Image) -> np.ndarray:
    """The image in CIELAB, low-passed as the colour measure sees it: (H, W, 3) float64."""
    lab = rgb2lab(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0)
    sigma = blur_sigma(*image.size)
    return np.stack([ndimage.gaussian_filter(lab[..., c], sigma, mode="nearest") for c in range(3)], axis=-1)


def difference_map_lab(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ΔE00 per pixel between two `lab_lowpass` arrays of one size: (H, W), what the measure summarises."""
    if a.shape != b.shape:
        raise ValueError(f"colour difference needs images of one size, got {a.shape} and {b.shape}")
    return np.asarray(deltaE_ciede2000(a, b), dtype=np.float64)


def difference_map(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Where a person would see a colour difference: the low-passed ΔE00 per pixel (the review page
    shows it; the gate keeps only its mean and 99th percentile)."""
    return difference_map_lab(lab_lowpass(a), lab_lowpass(b))


def colour_difference_lab(a: np.ndarray, b: np.ndarray) -> ColourDifference:
    """The measure on two `lab_lowpass` arrays of one size (lets callers reuse a converted original)."""
    delta = difference_map_lab(a, b)
    return ColourDifference(float(delta.mean()), float(np.percentile(delta, WORST_AREA_PERCENTILE)))


def colour_difference(a: Image.Image, b: Image.Image) -> ColourDifference:
    return colour_difference_lab(lab_lowpass(a), lab_lowpass(b))
