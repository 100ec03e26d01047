"""Deterministic rendering: prompt + seed -> pixels, identical on every run on the same machine.

Owns the rules that make a render repeatable (`enable_determinism`) and the one call that turns a
record's parameters into images (`render_batch`). Initial noise always comes from one CPU
`torch.Generator` per seed, so a record's noise does not depend on the device's RNG. It does not
choose seeds (that is the seed search), check images (the gate) or encode bytes.
"""

from __future__ import annotations

import contextlib
import os

import PIL.Image
import torch
from diffusers import DiffusionPipeline

from archiver.cpuslots import cpu_slots

# Thread count the engine pins for CPU renders. Measured on this project's 2-core build machine:
# see bench/train_notes.md ("Determinism"). Fixing it keeps renders independent of the host's
# default (which follows the number of cores and OMP_NUM_THREADS): the bytes depend on it (1 thread
# rendered other bytes than 2 for 1 of 6 example prompts at 1 step, 3 of 6 at 20). Processes
# sharing a machine take turns through `archiver.cpuslots` rather than rendering on fewer threads.
CPU_THREADS = 2


def enable_determinism(cpu_threads: int | None = CPU_THREADS) -> None:
    """Make torch choose only deterministic kernels; call before the first render.

    On CUDA, cuBLAS needs a fixed workspace for deterministic GEMMs; the variable must be set
    before the first cuBLAS handle is created, so this sets it only if the caller has not.
    """
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)


def render_batch(
    pipe: DiffusionPipeline,
    *,
    prompt: str | list[str],
    negative_prompt: str | None,
    seeds: list[int],
    steps: int,
    guidance_scale: float,
    width: int,
    height: int,
    eta: float,
    device: str | torch.device,
) -> list[PIL.Image.Image]:
    """Render `prompt` once per seed in a single pipeline call; image i belongs to seeds[i]. A list
    of prompts (one per seed) renders several records' prompts in one call.

    The scheduler is the one configured in the pipeline (the record names it). `device` must be
    the device the pipeline sits on; it only checks that, since noise is drawn on the CPU.

    A seed gets the same noise alone or in a batch, but the batch changes the order of float
    reductions: outputs agree only to ~1e-5, so an 8-bit pixel on a rounding edge can move by one
    level. Bytes a record promises must come from a one-seed call; batches are for the search.
    """
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    if not isinstance(prompt, str) and len(prompt) != len(seeds):
        raise ValueError(f"{len(prompt)} prompts for {len(seeds)} seeds: pass one prompt per seed")
    if any(not 0 <= s < 2**63 for s in seeds):
        raise ValueError(f"seeds must lie in [0, 2**63): got {seeds}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    scale = getattr(pipe, "vae_scale_factor", 8)
    if width % scale or height % scale:
        raise ValueError(f"width and height must be multiples of {scale}, got {width}x{height}")
    wanted, actual = torch.device(device), torch.device(pipe.device)
    if wanted.type != actual.type or (wanted.index is not None and wanted.index != actual.index):
        raise ValueError(f"pipeline is on {pipe.device}, not on {device}: move it first")
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    count = len(seeds)
    # On the CPU, the render holds one machine-wide slot per thread: processes rendering at once
    # take turns instead of oversubscribing the cores (`archiver.cpuslots`).
    threads = torch.get_num_threads() if actual.type == "cpu" else 0
    with cpu_slots(threads) if threads else contextlib.nullcontext(), torch.inference_mode():
        out = pipe(
            prompt=[prompt] * count if isinstance(prompt, str) else list(prompt),
            negative_prompt=None if negative_prompt is None else [negative_prompt] * count,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            eta=eta,
            generator=generators,
            output_type="pil",
        )
    return list(out.images)
