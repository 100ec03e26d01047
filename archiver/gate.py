"""The verification gate: proves, image by image, that a regeneration is indistinguishable.

Owns the metrics and the verdict: LPIPS (the lpips package, AlexNet trunk) averaged over the
image and on its worst tile, PSNR, the sibling margin (the render must be nearer its own original
than any other image of its group) and determinism (two renders, identical bytes). The report it
returns is stored with the asset. It renders nothing itself and never touches the catalog.

Production uses LPIPS's pretrained backbone. torchvision fetches the AlexNet trunk weights from
the network on first use; on an offline machine the gate stops with where to put the file. It
never silently degrades: the random trunk exists only behind the explicit test-only setting
`lpips_backbone="random-test-only"`, and its reports say so.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from archiver.errors import ModelError

Backbone = Literal["pretrained", "random-test-only"]
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"  # the file torchvision's AlexNet weights load from


@dataclass(frozen=True)
class Thresholds:
    """Pass limits. Defaults are documented in README.md; every one is a setting."""

    lpips_max: float = 0.05  # mean LPIPS over the whole image
    worst_tile_max: float = 0.10  # mean LPIPS of the worst tile of the spatial map
    psnr_min: float = 30.0  # dB, on 8-bit RGB
    sibling_margin_db: float = 3.0  # own-original PSNR minus the best sibling's PSNR
    tiles: int = 4  # the spatial map is cut into tiles x tiles


@dataclass
class GateReport:
    passed: bool
    failures: list[str]  # reason codes: gate-size, gate-lpips, gate-worst-tile, gate-psnr, ...
    metrics: dict[str, float | bool | None]
    thresholds: dict[str, float]
    backbone: dict[str, str]
    software: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def software_versions() -> dict[str, str]:
    names = ("torch", "diffusers", "lpips", "pillow", "numpy")
    return {name: importlib.metadata.version(name) for name in names}


def _state_sha256(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_lpips(backbone: Backbone = "pretrained") -> tuple[torch.nn.Module, dict[str, str]]:
    """The LPIPS network (spatial output) and a description of it including its weights' hash."""
    import lpips

    # lpips calls torchvision's deprecated `pretrained=` argument; the warning is lpips's to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        return _load_lpips(lpips, backbone)


def _load_lpips(lpips: Any, backbone: Backbone) -> tuple[torch.nn.Module, dict[str, str]]:
    if backbone == "pretrained":
        weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
        if not weights.is_file():
            raise ModelError(
                f"LPIPS needs torchvision's AlexNet weights and this machine cannot fetch them: put "
                f"{ALEXNET_WEIGHTS} (https://download.pytorch.org/models/{ALEXNET_WEIGHTS}) at {weights} "
                "(or set TORCH_HOME to a directory whose hub/checkpoints/ holds it)"
            )
        net = lpips.LPIPS(net="alex", spatial=True, verbose=False)
    elif backbone == "random-test-only":
        # A seeded random trunk (the calibrated linear layers still ship inside lpips). Forked RNG
        # so building it does not disturb anyone else's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = lpips.LPIPS(net="alex", spatial=True, pnet_rand=True, verbose=False)
    else:
        raise ValueError(f"unknown LPIPS backbone {backbone!r}")
    net.eval()
    return net, {"net": "alex", "backbone": backbone, "sha256": _state_sha256(net)}


def _to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0  # LPIPS wants [-1, 1]


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB of two same-size images on 8-bit RGB (inf when identical)."""
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def worst_tile(spatial_map: torch.Tensor, tiles: int) -> float:
    """Mean of the worst of tiles x tiles cells of an LPIPS spatial map (1, 1, H, W)."""
    pooled = torch.nn.functional.adaptive_avg_pool2d(spatial_map, (tiles, tiles))
    return float(pooled.max())


class Gate:
    """Judges renders against originals. Build once per run: loading LPIPS is the slow part."""

    def __init__(self, thresholds: Thresholds | None = None, backbone: Backbone = "pretrained") -> None:
        self.thresholds = thresholds or Thresholds()
        self.net, self.backbone = load_lpips(backbone)

    @torch.no_grad()
    def lpips_map(self, images: Sequence[Image.Image], references: Sequence[Image.Image]) -> torch.Tensor:
        return self.net(_to_tensor(images), _to_tensor(references))

    def evaluate(
        self,
        original: Image.Image,
        rendered: Image.Image,
        siblings: Sequence[Image.Image],
        rerender_identical: bool,
    ) -> GateReport:
        """The verdict on one render. `siblings`: the other originals of its group (may be empty)."""
        t = self.thresholds
        failures: list[str] = []
        metrics: dict[str, float | bool | None] = {"deterministic": rerender_identical}
        if original.size != rendered.size:
            failures.append("gate-size")
            metrics.update(lpips=None, worst_tile=None, psnr=None, sibling_margin_db=None)
        else:
            spatial = self.lpips_map([rendered], [original])
            mean_lpips, tile, own_psnr = (
                float(spatial.mean()),
                worst_tile(spatial, t.tiles),
                psnr(original, rendered),
            )
            metrics.update(lpips=mean_lpips, worst_tile=tile, psnr=own_psnr, sibling_margin_db=None)
            if mean_lpips > t.lpips_max:
                failures.append("gate-lpips")
            if tile > t.worst_tile_max:
                failures.append("gate-worst-tile")
            if own_psnr < t.psnr_min:
                failures.append("gate-psnr")
            same_size = [s for s in siblings if s.size == rendered.size]
            if same_size:
                nearest_psnr = max(psnr(s, rendered) for s in same_size)
                per_sibling = self.lpips_map([rendered] * len(same_size), same_size).mean(dim=(1, 2, 3))
                nearest_lpips = float(per_sibling.min())
                margin = own_psnr - nearest_psnr
                metrics.update(
                    nearest_sibling_psnr=nearest_psnr,
                    nearest_sibling_lpips=nearest_lpips,
                    sibling_margin_db=margin,
                )
                # Nearer its own original than any sibling, by PSNR (with a margin) and by LPIPS.
                if margin < t.sibling_margin_db or nearest_lpips <= mean_lpips:
                    failures.append("gate-sibling")
        if not rerender_identical:
            failures.append("gate-determinism")
        # ±inf (a perfect match somewhere) is not valid JSON: store it as a large finite number,
        # keeping the sign: a margin of -inf means the render IS a sibling.
        clean = {
            k: (math.copysign(1e9, v) if isinstance(v, float) and math.isinf(v) else v)
            for k, v in metrics.items()
        }
        return GateReport(
            passed=not failures,
            failures=failures,
            metrics=clean,
            thresholds={k: float(v) for k, v in asdict(t).items()},
            backbone=self.backbone,
            software=software_versions(),
        )
