"""The gate on real images (the example shoes) with the real lpips package and its pretrained
AlexNet trunk (installed by `archiver gate install-weights`, as the README's set-up does).

Every test that asserts a verdict uses the pretrained trunk; the seeded random trunk appears only
where a test checks plumbing (what a report says about its trunk, a tile computation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archiver.errors import ModelError
from archiver.example.edits import EDITS
from archiver.example.rumba import (
    DISTRACTOR_LACE,
    LACE_COLOURS,
    SOLE_COLOURS,
    TINTED_WHITE,
    draw_shoe,
    shift_colour,
)
from archiver.gate import Gate, Thresholds, load_lpips, psnr
from archiver.gate.trunk import KNOWN_TRUNK_SHA256


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()  # pretrained trunk, default thresholds


def shoe(lace: str, sole: str = "white") -> Image.Image:
    return draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])


def group(*, but: str, sole: str = "white") -> list[Image.Image]:
    """The catalogue's shoes but one: the siblings of (but, sole)."""
    return [shoe(lace, s) for lace in LACE_COLOURS for s in SOLE_COLOURS if (lace, s) != (but, sole)]


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
    assert report.backbone["backbone"] == "pretrained"
    assert report.backbone["trunk_sha256"] == KNOWN_TRUNK_SHA256 and len(report.backbone["sha256"]) == 64
    assert report.metrics["colour_worst"] < 1.5  # type: ignore[operator]  # pixel noise is low-passed away
    assert {"torch", "lpips", "diffusers", "scikit-image"} <= set(report.software)
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
    which is 33.9 dB from gold: above the PSNR floor, and LPIPS barely sees it. The colour check and
    the sibling margin both catch it."""
    gold = draw_shoe(DISTRACTOR_LACE[1], SOLE_COLOURS["white"])
    report = gate.evaluate(gold, shoe("yellow"), group(but="none"), rerender_identical=True)
    assert report.metrics["psnr"] > report.thresholds["psnr_min"]  # type: ignore[operator]
    assert report.metrics["lpips"] < report.thresholds["lpips_max"]  # type: ignore[operator]
    assert report.failures == ["gate-colour", "gate-sibling"]
    assert report.nearest_sibling == "#" + str(list(LACE_COLOURS).index("yellow") * len(SOLE_COLOURS))


def test_a_tinted_white_is_refused_by_colour_although_lpips_and_psnr_pass(gate: Gate) -> None:
    """The report from the field: a white area tinted to (235,235,250) passed LPIPS and PSNR."""
    tinted = draw_shoe(LACE_COLOURS["red"], TINTED_WHITE)
    report = gate.evaluate(tinted, jitter(shoe("red"), 2), group(but="red"), rerender_identical=True)
    assert report.metrics["lpips"] < report.thresholds["lpips_max"]  # type: ignore[operator]
    assert report.metrics["psnr"] > report.thresholds["psnr_min"]  # type: ignore[operator]
    assert report.failures == ["gate-colour"]
    assert report.metrics["colour_worst"] > 3 * report.thresholds["colour_max"]


@pytest.mark.parametrize("delta_e", [5, 10])
@pytest.mark.parametrize("direction", [(0, 0, -1), (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0)])
def test_a_regional_colour_shift_is_refused(gate: Gate, delta_e: float, direction: tuple[int, ...]) -> None:
    """The sole (one region) moved by ΔE00 5 or 10, against a faithful render of the catalogue shoe."""
    moved = draw_shoe(LACE_COLOURS["blue"], shift_colour(SOLE_COLOURS["gum"], delta_e, direction))  # type: ignore[arg-type]
    report = gate.evaluate(
        moved, jitter(shoe("blue", "gum"), 2), group(but="blue", sole="gum"), rerender_identical=True
    )
    assert "gate-colour" in report.failures, report.metrics
    assert report.metrics["colour_worst"] >= 0.8 * delta_e  # type: ignore[operator]


def test_an_imperceptible_colour_difference_passes(gate: Gate) -> None:
    """ΔE00 1 on the sole (below what a person sees side by side) plus render noise is not refused."""
    moved = draw_shoe(LACE_COLOURS["blue"], shift_colour(SOLE_COLOURS["gum"], 1, (0, 0, 1)))
    report = gate.evaluate(
        moved, jitter(shoe("blue", "gum"), 3), group(but="blue", sole="gum"), rerender_identical=True
    )
    assert report.passed, report.metrics


def test_a_sibling_that_differs_only_in_colour_does_not_reject_a_faithful_render(gate: Gate) -> None:
    """LPIPS alone can call a colour-only sibling "nearer" than the own original; with colour in the
    sibling rule a faithful render is still told apart from it."""
    original = shoe("orange")
    near_sibling = draw_shoe(shift_colour(LACE_COLOURS["orange"], 12, (0, 1, 0)), SOLE_COLOURS["white"])
    render = jitter(original, 6, seed=3)
    report = gate.evaluate(original, render, [near_sibling, shoe("red")], rerender_identical=True)
    assert report.passed, report.metrics
    assert report.metrics["nearest_sibling_colour"] > report.metrics["colour_worst"]  # type: ignore[operator]


def test_one_changed_detail_is_rejected(gate: Gate) -> None:
    striped = draw_shoe(LACE_COLOURS["red"], SOLE_COLOURS["white"], stripe=True)
    report = gate.evaluate(striped, shoe("red"), group(but="red"), rerender_identical=True)
    assert not report.passed and "gate-psnr" in report.failures
    assert report.metrics["worst_tile"] > report.metrics["lpips"]  # type: ignore[operator]


COLOURWAYS = [("red", "white"), ("blue", "gum")]


@pytest.fixture(scope="module", params=COLOURWAYS, ids="-".join)
def judged(request: pytest.FixtureRequest) -> tuple[Image.Image, Image.Image, list[Image.Image]]:
    """(original, a faithful render of it, its siblings) for one colourway, built once."""
    lace, sole = request.param
    original = shoe(lace, sole)
    return original, jitter(original, 2), group(but=lace, sole=sole)


def test_the_faithful_render_of_each_edited_colourway_passes(
    gate: Gate, judged: tuple[Image.Image, Image.Image, list[Image.Image]]
) -> None:
    original, faithful, siblings = judged
    assert gate.evaluate(original, faithful, siblings, rerender_identical=True).passed


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edit_a_person_sees_is_refused_beside_a_faithful_render(
    gate: Gate, edit: str, judged: tuple[Image.Image, Image.Image, list[Image.Image]]
) -> None:
    """The hot image was replaced by an edited copy (mirrored, moved a pixel, re-lit, blurred ...):
    the model's faithful render of the record no longer stands for it, whatever kind the edit is."""
    original, faithful, siblings = judged
    report = gate.evaluate(EDITS[edit](original), faithful, siblings, rerender_identical=True)
    assert not report.passed, (edit, report.metrics)
    assert set(report.failures) <= {
        "gate-lpips",
        "gate-worst-tile",
        "gate-psnr",
        "gate-colour",
        "gate-sibling",
    }


def test_worst_tile_catches_a_local_defect_the_average_hides() -> None:
    original = shoe("green")
    damaged = np.asarray(original).copy()
    damaged[0:14, 0:14] = 0  # one corner blacked out
    probe = Gate().evaluate(original, Image.fromarray(damaged), [], True)
    mean, worst = probe.metrics["lpips"], probe.metrics["worst_tile"]
    assert worst > 3 * mean  # type: ignore[operator]
    # Limits between the two: only the tile check (and colour: a black corner is a colour change) fail.
    limits = Thresholds(lpips_max=mean * 1.5, worst_tile_max=worst / 1.5, psnr_min=0, colour_max=100)  # type: ignore[operator]
    report = Gate(limits).evaluate(original, Image.fromarray(damaged), [], True)
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


def test_pretrained_trunk_missing_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="archiver gate install-weights"):
        Gate(trunk_path=tmp_path / "nowhere.safetensors")


def test_the_random_trunk_is_named_in_its_reports_and_differs_from_the_pretrained_one() -> None:
    """Plumbing: a report always says which trunk judged (the random one exists for plumbing tests)."""
    _, random_trunk = load_lpips("random-test-only")
    _, pretrained = load_lpips("pretrained")
    assert random_trunk["backbone"] == "random-test-only" and "trunk_sha256" not in random_trunk
    assert pretrained["trunk_sha256"] == KNOWN_TRUNK_SHA256
    assert random_trunk["sha256"] != pretrained["sha256"]
