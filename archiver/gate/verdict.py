"""The gate's verdict on one render: every measure, the thresholds, and the stored report.

Owns `Thresholds`, `GateReport` and `Gate.evaluate`: LPIPS mean and worst tile and PSNR
(`perceptual`), colour fidelity (`colour`), the sibling margin against the nearest siblings the
caller hands in (`siblings` finds them), and determinism. It renders nothing and never touches the
catalog or storage.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from archiver.gate.colour import colour_difference_lab, lab_lowpass
from archiver.gate.perceptual import Backbone, load_lpips, lpips_map, psnr, worst_tile
from archiver.gate.siblings import Sibling


@dataclass(frozen=True)
class Thresholds:
    """Pass limits. Defaults are documented in README.md; every one is a setting."""

    lpips_max: float = 0.05  # mean LPIPS over the whole image
    worst_tile_max: float = 0.10  # mean LPIPS of the worst tile of the spatial map
    psnr_min: float = 30.0  # dB, on 8-bit RGB
    colour_max: float = 3.0  # ΔE00 that the worst 1% of the low-passed image may reach (`colour`)
    sibling_margin_db: float = 3.0  # own-original PSNR minus the nearest sibling's PSNR
    tiles: int = 4  # the spatial map is cut into tiles x tiles


@dataclass
class GateReport:
    passed: bool
    failures: list[str]  # reason codes, see FAILURES
    metrics: dict[str, float | bool | None]
    thresholds: dict[str, float]
    backbone: dict[str, str]
    software: dict[str, str] = field(default_factory=dict)
    nearest_sibling: str | None = None  # the sibling key the render is most like, when one was judged

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


def software_versions() -> dict[str, str]:
    names = ("torch", "diffusers", "lpips", "pillow", "numpy", "scikit-image")
    return {name: importlib.metadata.version(name) for name in names}


def _finite(value: float | bool | None) -> float | bool | None:
    """±inf (a perfect match somewhere) is not valid JSON: a large finite number, sign kept
    (a sibling margin of -inf means the render IS a sibling)."""
    if isinstance(value, float) and math.isinf(value):
        return math.copysign(1e9, value)
    return value


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

    def evaluate(
        self,
        original: Image.Image,
        rendered: Image.Image,
        siblings: Sequence[Image.Image | Sibling],
        rerender_identical: bool,
    ) -> GateReport:
        """The verdict on one render.

        `siblings`: the other images of its group it could be mistaken for (the k nearest from a
        `SiblingIndex`, or any list of images; may be empty). Siblings of another size are ignored.
        """
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
                nearest_key, sibling_metrics, confusable = self._against_siblings(
                    rendered, render_lab, judged, own_lpips, colour.worst
                )
                metrics.update(sibling_metrics)
                metrics["sibling_margin_db"] = own_psnr - sibling_metrics["nearest_sibling_psnr"]  # type: ignore[operator]
                if metrics["sibling_margin_db"] < t.sibling_margin_db or confusable:  # type: ignore[operator]
                    failures.append("gate-sibling")
        if not rerender_identical:
            failures.append("gate-determinism")
        return GateReport(
            passed=not failures,
            failures=failures,
            metrics={k: _finite(v) for k, v in metrics.items()},
            thresholds={k: float(v) for k, v in asdict(t).items()},
            backbone=self.backbone,
            software=software_versions(),
            nearest_sibling=nearest_key,
        )

    def _against_siblings(
        self,
        rendered: Image.Image,
        render_lab: np.ndarray,
        siblings: Sequence[Sibling],
        own_lpips: float,
        own_colour: float,
    ) -> tuple[str, dict[str, float | bool | None], bool]:
        """The nearest sibling by PSNR, its measures, and whether any sibling is confusable: at
        least as near the render as its own original by LPIPS *and* by colour. (LPIPS alone would
        call a sibling that differs only in colour "nearer"; colour alone misses shape.)"""
        images = [s.image for s in siblings]
        psnrs = [psnr(image, rendered) for image in images]
        lpipses = lpips_map(self.net, [rendered] * len(images), images).mean(dim=(1, 2, 3)).tolist()
        colours = [colour_difference_lab(lab_lowpass(image), render_lab).worst for image in images]
        confusable = any(lp <= own_lpips and c <= own_colour for lp, c in zip(lpipses, colours, strict=True))
        best = max(range(len(images)), key=psnrs.__getitem__)
        return (
            siblings[best].key,
            {
                "nearest_sibling_psnr": psnrs[best],
                "nearest_sibling_lpips": min(lpipses),
                "nearest_sibling_colour": min(colours),
            },
            confusable,
        )
