"""How well a trained model memorized its group: render every caption once, compare to originals.

A training-time report (PSNR on 8-bit RGB, nearest original, sibling margin, render time), used
by `python -m archiver.training` and the training notes. It is not the gate: the gate decides
what may be archived, with its own metrics and thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from diffusers import DiffusionPipeline

from archiver.engine.rendering import render_batch
from archiver.training.common import Example


@dataclass(frozen=True)
class Recall:
    key: str
    psnr: float  # dB against its own original, 8-bit RGB
    nearest: str  # the original this render is closest to (should be `key`)
    margin: float  # dB by which its own original beats the nearest other one
    seconds: float  # render time


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def evaluate_memorization(
    pipe: DiffusionPipeline, examples: Sequence[Example], *, steps: int, seed: int = 0
) -> list[Recall]:
    """Render each example's prompt with `seed` (alone, guidance 1, eta 0) and score it."""
    originals = [np.asarray(img.convert("RGB")) for _, _, img in examples]
    results = []
    for i, (key, prompt, image) in enumerate(examples):
        started = time.perf_counter()
        (render,) = render_batch(
            pipe, prompt=prompt, negative_prompt=None, seeds=[seed], steps=steps, guidance_scale=1.0,
            width=image.width, height=image.height, eta=0.0, device=pipe.device,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        scores = [psnr(np.asarray(render), original) for original in originals]
        others = [s for j, s in enumerate(scores) if j != i]
        best = int(np.argmax(scores))
        margin = scores[i] - max(others) if others else float("inf")
        results.append(Recall(key, scores[i], examples[best][0], margin, seconds))
    return results


def summary(results: Sequence[Recall]) -> dict[str, float]:
    values = np.array([r.psnr for r in results])
    margins = np.array([r.margin for r in results])
    return {
        "images": len(results),
        "psnr_min": round(float(values.min()), 2),
        "psnr_median": round(float(np.median(values)), 2),
        "psnr_max": round(float(values.max()), 2),
        "margin_min": round(float(margins.min()), 2),
        "own_nearest": sum(r.nearest == r.key for r in results),
        "render_s_median": round(float(np.median([r.seconds for r in results])), 3),
    }
