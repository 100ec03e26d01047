"""The gate's verdict on one render: every measure, the thresholds, and the stored report.

Owns `Thresholds`, `GateReport` and `Gate.evaluate`: LPIPS mean and worst tile and PSNR
(`perceptual`), colour fidelity (`colour`), the sibling margin against the nearest siblings the
caller hands in (`siblings` finds them), and determinism. It renders nothing and never touches the
catalog or storage.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from archiver.cpuslots import cpu_slots
from archiver.gate.colour import colour_difference_lab, lab_lowpass
from archiver.gate.perceptual import Backbone, load_lpips, lpips_map, psnr, worst_tile
from archiver.gate.siblings import Sibling
from archiver.settings import default_of
from archiver.stack import running_stack

if TYPE_CHECKING:
    from archiver.settings import Settings


@dataclass(frozen=True)
class Thresholds:
    """Pass limits. Every one is a setting, and its default is the setting's (README.md lists them)."""

    lpips_max: float = default_of("gate_lpips_max")  # mean LPIPS over the whole image
    worst_tile_max: float = default_of("gate_worst_tile_max")  # mean LPIPS of the worst tile
    psnr_min: float = default_of("gate_psnr_min")  # dB, on 8-bit RGB
    colour_max: float = default_of("gate_colour_max")  # ΔE00 of the worst 1% of the low-passed image
    sibling_margin_db: float = default_of("gate_sibling_margin_db")  # own PSNR minus a sibling's
    tiles: int = 4  # the spatial map is cut into tiles x tiles

    @classmethod
    def from_settings(cls, s: Settings) -> Thresholds:
        """The limits the settings name (a rejection's measures are shown against these)."""
        return cls(
            lpips_max=s.gate_lpips_max,
            worst_tile_max=s.gate_worst_tile_max,
            psnr_min=s.gate_psnr_min,
            colour_max=s.gate_colour_max,
            sibling_margin_db=s.gate_sibling_margin_db,
        )

    def to_dict(self) -> dict[str, float]:
        """Every limit as a float, as a gate report lists them."""
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass
class GateReport:
    passed: bool
    failures: list[str]  # reason codes, see FAILURES
    metrics: dict[str, float | bool | None]
    thresholds: dict[str, float]
    backbone: dict[str, str]
    software: dict[str, str] = field(default_factory=dict)
    nearest_sibling: str | None = None  # the sibling it was confused with, else the PSNR-nearest one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Reason codes, in the order a report lists them (the first is the asset's rejection reason).
FAILURES = {
    "gate-size": "the render is not the original's size",
    "gate-lpips": "LPIPS over the image is above the limit",
    "gate-worst-tile": "LPIPS of the worst tile is above the limit: a local detail differs",
    "gate-psnr": "PSNR is below the floor",
    "gate-colour": "a colour difference a person sees (low-passed ΔE00 over the worst 1% of the image)",
    "gate-sibling": "the render is as near another image of the group as its own",
    "gate-determinism": "two renders of the record gave different bytes",
}


def with_determinism(report: GateReport, identical: bool | None) -> GateReport:
    """The report with the determinism check's outcome: True (rendered again, the same bytes), False
    (other bytes: a failure) or None (not rendered again; the run's determinism sample stands for it,
    `archiver.prove.DeterminismSample`)."""
    failures = [f for f in report.failures if f != "gate-determinism"]
    if identical is False:
        failures.append("gate-determinism")
    metrics = {**report.metrics, "deterministic": identical}
    return replace(report, passed=not failures, failures=failures, metrics=metrics)


@functools.cache
def _stack() -> tuple[tuple[str, str], ...]:
    return tuple(running_stack().items())


def software_versions() -> dict[str, str]:
    """The stack a report (and so a record) was made with: `archiver.stack` owns what it holds."""
    return dict(_stack())


def _finite(value: float | bool | None) -> float | bool | None:
    """±inf (a perfect match somewhere) is not valid JSON: a large finite number, sign kept
    (a sibling margin of -inf means the render IS a sibling)."""
    if isinstance(value, float) and math.isinf(value):
        return math.copysign(1e9, value)
    return value


@dataclass(frozen=True)
class Measures:
    """A render against one image: the gate's measures."""

    lpips: float
    worst_tile: float
    psnr: float
    colour: float  # ΔE00 of the worst 1%


def told_apart(own: Measures, sibling: Measures, t: Thresholds) -> bool:
    """Whether the render is plainly its own original's image and not this sibling's.

    It is when it is nearer its own original by the PSNR margin, or when, had the sibling been the
    original, the gate would have refused the render on a perceptual check that its own original
    passes (LPIPS, worst tile or colour). The second way keeps siblings that differ only in a
    colour apart: LPIPS barely sees colour and a thin coloured part moves PSNR little, but the colour
    check sees it. A sibling that the render would pass as is never told apart.
    """
    if own.psnr - sibling.psnr >= t.sibling_margin_db:
        return True
    return (
        (sibling.lpips > t.lpips_max and sibling.lpips > own.lpips)
        or (sibling.worst_tile > t.worst_tile_max and sibling.worst_tile > own.worst_tile)
        or (sibling.colour > t.colour_max and sibling.colour > own.colour)
    )


class Gate:
    """Judges renders against originals. Build once per run: loading LPIPS is the slow part."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        backbone: Backbone = "pretrained",
        *,
        trunk_path: Path | None = None,
        allowed_trunks: Collection[str] = (),
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.net, self.backbone = load_lpips(backbone, trunk_path=trunk_path, allowed_trunks=allowed_trunks)

    @classmethod
    def from_settings(cls, s: Settings) -> Gate:
        """The gate the settings describe. Loading LPIPS is the slow part: build it once per process.
        Takes only picklable settings, so a fleet worker builds the same gate (`archiver.fleet`)."""
        allowed = [sha for sha in s.lpips_allow_trunk.split(",") if sha]
        return cls(
            Thresholds.from_settings(s),
            backbone=s.lpips_backbone,
            trunk_path=s.lpips_weights,
            allowed_trunks=allowed,
        )

    def evaluate(
        self,
        original: Image.Image,
        rendered: Image.Image,
        siblings: Sequence[Image.Image | Sibling],
        rerender_identical: bool | None,
    ) -> GateReport:
        """The verdict on one render.

        `siblings`: the other images of its group it could be mistaken for (the k nearest from a
        `SiblingIndex`, or any list of images; may be empty). Siblings of another size are ignored.
        `rerender_identical`: whether a second render gave the same bytes; None when it was not
        rendered again (the seed search samples determinism per run: `with_determinism`).
        It holds a machine-wide CPU slot per torch thread while it measures (`archiver.cpuslots`).
        """
        with cpu_slots(torch.get_num_threads()):
            return self._evaluate(original, rendered, siblings, rerender_identical)

    def _evaluate(
        self,
        original: Image.Image,
        rendered: Image.Image,
        siblings: Sequence[Image.Image | Sibling],
        rerender_identical: bool | None,
    ) -> GateReport:
        t = self.thresholds
        failures: list[str] = []
        metrics: dict[str, float | bool | None] = {
            "deterministic": rerender_identical,
            "lpips": None,
            "worst_tile": None,
            "psnr": None,
            "colour_mean": None,
            "colour_worst": None,
            "sibling_margin_db": None,
        }
        nearest_key: str | None = None
        if original.size != rendered.size:
            failures.append("gate-size")
        else:
            spatial = lpips_map(self.net, [rendered], [original])
            render_lab = lab_lowpass(rendered)
            colour = colour_difference_lab(lab_lowpass(original), render_lab)
            own_lpips, own_tile, own_psnr = (
                float(spatial.mean()),
                worst_tile(spatial, t.tiles),
                psnr(original, rendered),
            )
            metrics.update(
                lpips=own_lpips,
                worst_tile=own_tile,
                psnr=own_psnr,
                colour_mean=colour.mean,
                colour_worst=colour.worst,
            )
            if own_lpips > t.lpips_max:
                failures.append("gate-lpips")
            if own_tile > t.worst_tile_max:
                failures.append("gate-worst-tile")
            if own_psnr < t.psnr_min:
                failures.append("gate-psnr")
            if colour.worst > t.colour_max:
                failures.append("gate-colour")
            judged = [s if isinstance(s, Sibling) else Sibling(f"#{i}", s) for i, s in enumerate(siblings)]
            # Only a sibling of the render's size can be compared pixel for pixel.
            judged = [s for s in judged if s.image.size == rendered.size]
            if judged:
                own = Measures(own_lpips, own_tile, own_psnr, colour.worst)
                measured = self._measure_siblings(rendered, render_lab, judged)
                confused = [s for s, m in zip(judged, measured, strict=True) if not told_apart(own, m, t)]
                nearest = max(range(len(judged)), key=lambda i: measured[i].psnr)
                nearest_key = (confused or [judged[nearest]])[0].key
                metrics.update(
                    sibling_margin_db=own_psnr - measured[nearest].psnr,
                    nearest_sibling_psnr=measured[nearest].psnr,
                    nearest_sibling_lpips=min(m.lpips for m in measured),
                    nearest_sibling_colour=min(m.colour for m in measured),
                )
                if confused:
                    failures.append("gate-sibling")
        if rerender_identical is False:
            failures.append("gate-determinism")
        return GateReport(
            passed=not failures,
            failures=failures,
            metrics={k: _finite(v) for k, v in metrics.items()},
            thresholds=t.to_dict(),
            backbone=self.backbone,
            software=software_versions(),
            nearest_sibling=nearest_key,
        )

    def _measure_siblings(
        self, rendered: Image.Image, render_lab: np.ndarray, siblings: Sequence[Sibling]
    ) -> list[Measures]:
        """The render measured against each sibling as if that sibling were its original."""
        images = [s.image for s in siblings]
        spatial = lpips_map(self.net, [rendered] * len(images), images)
        return [
            Measures(
                lpips=float(spatial[i].mean()),
                worst_tile=worst_tile(spatial[i : i + 1], self.thresholds.tiles),
                psnr=psnr(image, rendered),
                colour=colour_difference_lab(lab_lowpass(image), render_lab).worst,
            )
            for i, image in enumerate(images)
        ]
