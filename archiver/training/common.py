"""What every training run shares: example tensors, checkpoints, progress, and the output manifest.

Checkpoints are pickle-free: module weights and the optimizer's tensors go to safetensors, the
rest (step, phase, param groups) to JSON, written to a temporary folder and renamed into place so
a crash never leaves a half-written checkpoint that resume would trust.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import PIL.Image
import torch
from safetensors.torch import load_file, save_file

from archiver.engine import manifests
from archiver.engine.manifests import RenderSettings

# (key, prompt, image)
Example = tuple[str, str, PIL.Image.Image]
# progress(step, total_steps, loss): called after every optimisation step.
Progress = Callable[[int, int, float], None]

P = ParamSpec("P")
R = TypeVar("R")

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2


def check_examples(examples: Sequence[Example]) -> tuple[int, int]:
    """Validate the group and return its common (width, height)."""
    if not examples:
        raise ValueError("examples is empty: pass at least one (key, prompt, image)")
    keys = [k for k, _, _ in examples]
    if len(set(keys)) != len(keys):
        raise ValueError("examples has duplicate keys: each key must name one image")
    sizes = {img.size for _, _, img in examples}
    if len(sizes) != 1:
        raise ValueError(f"examples must all have one size, got {sorted(sizes)}")
    return sizes.pop()


def images_to_tensor(images: Sequence[PIL.Image.Image]) -> torch.Tensor:
    """RGB images -> float32 NCHW in [-1, 1], the range the VAE works in."""
    arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator for one step's randomness, derived from (seed, step) alone.

    Tying each step's batch, timesteps and noise to its index makes a resumed run draw exactly what
    an uninterrupted run would have, without saving RNG state.
    """
    return torch.Generator("cpu").manual_seed((seed * 1_000_003 + step) % 2**63)


def cosine_lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + np.cos(np.pi * min(1.0, progress))))


def make_progress(progress: Progress | None, total: int, desc: str) -> tuple[Progress, Callable[[], None]]:
    """The caller's callback, else a tqdm bar with the loss when stderr is a terminal, else nothing."""
    if progress is not None:
        return progress, lambda: None
    if not sys.stderr.isatty():
        return (lambda step, total, loss: None), lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

    def update(step: int, total: int, loss: float) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.5f}", refresh=False)
        bar.refresh()

    return update, bar.close


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    out_dir: Path,
    step: int,
    weights: dict[str, dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
) -> Path:
    """Write checkpoints/step-NNNNNNN atomically and keep only the newest few."""
    root = out_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, tensors in weights.items():
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
    tensors, meta = _optimizer_to_flat(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": meta, **info}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = sorted((out_dir / CHECKPOINT_DIR).glob("step-*"))
    return found[-1] if found else None


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    return json.loads((path / "state.json").read_text())


def load_checkpoint_weights(path: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(path / f"{name}.safetensors"))


def load_checkpoint_optimizer(path: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    _optimizer_from_flat(optimizer, load_file(str(path / "optimizer.safetensors")), state["optimizer"])


@contextmanager
def fast_kernels() -> Iterator[None]:
    """Allow torch's non-deterministic kernels while training, then restore the caller's choice.

    `enable_determinism()` is process-wide and meant for renders; measured here, it made a
    16-step CPU training run 3-4x slower. Training does not need it: on the CPU each step's
    arithmetic is already repeatable (a resumed run matches an uninterrupted one bit for bit).
    """
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def with_fast_kernels(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with fast_kernels():
            return fn(*args, **kwargs)

    return wrapper


def software_versions() -> dict[str, str]:
    import diffusers
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:  # peft is only needed for LoRA
        pass
    return versions


def write_manifests(
    out_dir: Path, examples: Sequence[Example], training: dict[str, Any], render: RenderSettings
) -> None:
    """captions.json (key -> prompt, so a sweep knows each key's prompt) and training.json, with the
    render settings the model was trained for (`archiver.engine.manifests` owns both files)."""
    manifests.write_manifests(out_dir, {key: prompt for key, prompt, _ in examples}, training, render)
