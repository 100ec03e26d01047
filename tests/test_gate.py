"""The gate on real images (the example shoes) with the real lpips package.

These use the seeded random trunk (this machine cannot fetch AlexNet's weights); the production
loading path is tested with a weights file placed where torchvision looks for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archiver.errors import ModelError
from archiver.example.rumba import DISTRACTOR_LACE, LACE_COLOURS, SOLE_COLOURS, draw_shoe
from archiver.gate import ALEXNET_WEIGHTS, Gate, Thresholds, load_lpips, psnr


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate(backbone="random-test-only")


def shoe(lace: str, sole: str = "white") -> Image.Image:
    return draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])


def group(*, but: str) -> list[Image.Image]:
    return [
        shoe(lace, sole) for lace in LACE_COLOURS for sole in SOLE_COLOURS if (lace, sole) != (but, "white")
    ]


def jitter(image: Image.Image, amplitude: int, seed: int = 0) -> Image.Image:
    """The original plus small noise: what a good regeneration looks like."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-amplitude, amplitude + 1, size=(64, 64, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_a_faithful_render_passes_and_the_report_is_complete(gate: Gate) -> None:
    original = shoe("red")
    report = gate.evaluate(original, jitter(original, 2), group(but="red"), rerender_identical=True)
    assert report.passed, report.metrics
    assert report.metrics["psnr"] > 40  # type: ignore[operator]
    assert 0 <= report.metrics["lpips"] <= report.metrics["worst_tile"]  # type: ignore[operator]
    assert report.metrics["sibling_margin_db"] > 10  # type: ignore[operator]
    assert report.backbone["backbone"] == "random-test-only" and len(report.backbone["sha256"]) == 64
    assert {"torch", "lpips", "diffusers"} <= set(report.software)
    json.dumps(report.to_dict(), allow_nan=False)  # storable as is


def test_identical_render_is_storable_json(gate: Gate) -> None:
    original = shoe("blue")
    report = gate.evaluate(original, original.copy(), group(but="blue"), rerender_identical=True)
    assert report.passed and report.metrics["lpips"] == 0
    json.dumps(report.to_dict(), allow_nan=False)


def test_the_wrong_variant_is_caught_by_the_sibling_margin(gate: Gate) -> None:
    """A model that renders the blue-laced shoe for the red-laced record must be caught."""
    original = shoe("red")
    report = gate.evaluate(original, shoe("blue"), group(but="red"), rerender_identical=True)
    assert not report.passed
    assert "gate-sibling" in report.failures
    assert report.metrics["sibling_margin_db"] == -1e9  # the render IS a sibling: -inf, stored finite


def test_an_unseen_lace_colour_is_rejected(gate: Gate) -> None:
    """The distractor: gold laces. The nearest thing a model of the catalogue can draw is yellow,
    which is 33.9 dB from gold: above the PSNR floor. The sibling margin is what catches it."""
    gold = draw_shoe(DISTRACTOR_LACE[1], SOLE_COLOURS["white"])
    report = gate.evaluate(gold, shoe("yellow"), group(but="none"), rerender_identical=True)
    assert report.metrics["psnr"] > report.thresholds["psnr_min"]  # type: ignore[operator]
    assert report.failures == ["gate-sibling"]


def test_one_changed_detail_is_rejected(gate: Gate) -> None:
    striped = draw_shoe(LACE_COLOURS["red"], SOLE_COLOURS["white"], stripe=True)
    report = gate.evaluate(striped, shoe("red"), group(but="red"), rerender_identical=True)
    assert not report.passed and "gate-psnr" in report.failures
    assert report.metrics["worst_tile"] > report.metrics["lpips"]  # type: ignore[operator]


def test_worst_tile_catches_a_local_defect_the_average_hides() -> None:
    original = shoe("green")
    damaged = np.asarray(original).copy()
    damaged[0:14, 0:14] = 0  # one corner blacked out
    probe = Gate(backbone="random-test-only").evaluate(original, Image.fromarray(damaged), [], True)
    mean, worst = probe.metrics["lpips"], probe.metrics["worst_tile"]
    assert worst > 3 * mean  # type: ignore[operator]
    # Limits between the two (the random trunk's scale is not LPIPS's calibrated one):
    # only the tile check can fail.
    limits = Thresholds(lpips_max=mean * 1.5, worst_tile_max=worst / 1.5, psnr_min=0)  # type: ignore[operator]
    report = Gate(limits, backbone="random-test-only").evaluate(original, Image.fromarray(damaged), [], True)
    assert report.failures == ["gate-worst-tile"]


def test_size_mismatch_and_nondeterminism_fail(gate: Gate) -> None:
    original = shoe("red")
    report = gate.evaluate(original, original.resize((32, 32)), [], rerender_identical=False)
    assert report.failures == ["gate-size", "gate-determinism"]


def test_psnr_reference_values() -> None:
    black = Image.new("RGB", (8, 8), (0, 0, 0))
    grey = Image.new("RGB", (8, 8), (1, 1, 1))
    assert psnr(black, black) == float("inf")
    assert psnr(black, grey) == pytest.approx(48.1308, abs=1e-3)  # 20*log10(255)


def test_pretrained_backbone_missing_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError, match=f"put {ALEXNET_WEIGHTS}.*{tmp_path}"):
        load_lpips("pretrained")


def test_pretrained_backbone_loads_from_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The production path: torchvision reads the weights file from its cache, no network."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.alexnet().state_dict(), checkpoints / ALEXNET_WEIGHTS)
    _, described = load_lpips("pretrained")
    _, random_trunk = load_lpips("random-test-only")
    assert described["backbone"] == "pretrained"
    assert described["sha256"] != random_trunk["sha256"]
