"""LPIPS and PSNR: the perceptual distance measures of the gate, and loading the LPIPS network.

Owns building the lpips package's network (AlexNet trunk, spatial output) with the trunk the
settings name, and the per-image measures over it (mean, worst tile) and PSNR. It decides no
verdict: `verdict.Gate` does.

Production uses LPIPS's pretrained AlexNet trunk, installed offline by `archiver gate
install-weights` (see `trunk`). The gate never silently degrades: the random trunk exists only
behind the explicit test-only setting `lpips_backbone="random-test-only"`, and its reports say so.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

Backbone = Literal["pretrained", "random-test-only"]


def _state_sha256(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_lpips(
    backbone: Backbone = "pretrained",
    *,
    trunk_path: Path | None = None,
    allowed_trunks: Collection[str] = (),
) -> tuple[torch.nn.Module, dict[str, str]]:
    """The LPIPS network (spatial output) and a description of it, including its weights' hashes.

    "pretrained": the AlexNet trunk installed by `archiver gate install-weights` (at `trunk_path`,
    default `trunk.DEFAULT_TRUNK_PATH`), refused unless its hash is the known one or allowed.
    Nothing is ever downloaded here.
    """
    import lpips

    from archiver.gate import trunk

    if backbone not in ("pretrained", "random-test-only"):
        raise ValueError(f"unknown LPIPS backbone {backbone!r}")
    # lpips calls torchvision's deprecated `pretrained=` argument; the warning is lpips's to fix.
    # pnet_rand=True: lpips must not reach for torchvision's download; the trunk comes from us.
    # Forked RNG: building the random trunk does not disturb anyone else's random stream.
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        torch.manual_seed(0)
        net = lpips.LPIPS(net="alex", spatial=True, pnet_rand=True, verbose=False)
    described = {"net": "alex", "backbone": backbone}
    if backbone == "pretrained":
        tensors, trunk_sha256 = trunk.load_trunk(trunk_path or trunk.DEFAULT_TRUNK_PATH, allowed_trunks)
        trunk.apply_trunk(net, tensors)
        described["trunk_sha256"] = trunk_sha256
    net.eval()
    described["sha256"] = _state_sha256(net)
    return net, described


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


@torch.no_grad()
def lpips_map(
    net: torch.nn.Module, images: Sequence[Image.Image], refs: Sequence[Image.Image]
) -> torch.Tensor:
    """LPIPS spatial maps (N, 1, H, W) of images[i] against refs[i]."""
    return net(_to_tensor(images), _to_tensor(refs))
