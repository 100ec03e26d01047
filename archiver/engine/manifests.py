"""A model directory's manifests: the one owner of `captions.json` and `training.json`.

`captions.json` maps each trained key to its prompt (a sweep's and verify's only source of prompts).
`training.json` holds the training recipe, losses and software versions, and `render`: the steps,
guidance scale and eta the model was trained to render with, and the step ladder: the step counts a
sweep tries, cheapest first, up to the trained one (a record keeps the cheapest the gate accepts).
Training writes both through here; prove, verify, the benchmarks and the registry read them here.

It reads and writes JSON files; it loads no model and renders nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from archiver.errors import ModelError

CAPTIONS = "captions.json"
TRAINING = "training.json"
DEFAULT_RENDER_STEPS = 20
# Step counts tried before the trained schedule when a model's manifest names none. Cheap to try:
# a rung the model cannot render costs one render of that many steps, refused by the gate's PSNR.
DEFAULT_CHEAPER_STEPS = (1, 2, 4)


@dataclass(frozen=True)
class RenderSettings:
    """How a model renders its group: what it was trained for, so a sweep renders the same way."""

    steps: int = DEFAULT_RENDER_STEPS
    guidance_scale: float = 1.0
    eta: float = 0.0
    # The step counts a sweep tries, ascending, ending with `steps` (None: DEFAULT_CHEAPER_STEPS
    # below `steps`, then `steps`). `(steps,)` turns the ladder off: every record renders `steps`.
    step_ladder: tuple[int, ...] | None = None

    @property
    def ladder(self) -> tuple[int, ...]:
        """The step counts to try, cheapest first; the last is the trained schedule."""
        if self.step_ladder is not None:
            return self.step_ladder
        return (*(n for n in DEFAULT_CHEAPER_STEPS if n < self.steps), self.steps)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        if self.step_ladder is None:
            del body["step_ladder"]
        else:
            body["step_ladder"] = list(self.step_ladder)
        return body


def read_captions(model_dir: Path) -> dict[str, str]:
    """The key -> prompt manifest ({} if the model has none)."""
    path = model_dir / CAPTIONS
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ModelError(f"{path} is not a key -> prompt mapping: retrain or fix it")
    return data


def read_training(model_dir: Path) -> dict[str, Any]:
    """training.json as written by `archiver train` ({} if absent)."""
    path = model_dir / TRAINING
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object: retrain or fix it")
    return data


def read_render_settings(model_dir: Path) -> RenderSettings:
    """The render settings the model was trained for.

    `training.json["render"]` when training wrote it; for models trained before it did, the DDIM
    schedule the denoiser was trained on (`recipe.schedule_steps`); else the defaults.
    """
    training = read_training(model_dir)
    render = training.get("render")
    if isinstance(render, dict):
        try:
            steps = int(render.get("steps", DEFAULT_RENDER_STEPS))
            ladder = render.get("step_ladder")
            return RenderSettings(
                steps=steps,
                guidance_scale=float(render.get("guidance_scale", 1.0)),
                eta=float(render.get("eta", 0.0)),
                step_ladder=None if ladder is None else _ladder(ladder, steps),
            )
        except (TypeError, ValueError) as bad:
            raise ModelError(
                f"{model_dir / TRAINING}: bad render settings ({bad}): retrain or fix it"
            ) from None
    schedule = (training.get("recipe") or {}).get("schedule_steps")
    return RenderSettings(steps=int(schedule)) if isinstance(schedule, int) else RenderSettings()


def _ladder(value: Any, steps: int) -> tuple[int, ...]:
    """A manifest's step ladder, checked: whole step counts, ascending, ending at the trained one."""
    if not isinstance(value, list) or not all(isinstance(n, int) and n >= 1 for n in value):
        raise ValueError(f"step_ladder must be a list of step counts of at least 1, got {value!r}")
    if value != sorted(set(value)) or not value or value[-1] != steps:
        raise ValueError(f"step_ladder must ascend and end with steps ({steps}), got {value!r}")
    return tuple(value)


def write_manifests(
    model_dir: Path, captions: Mapping[str, str], training: Mapping[str, Any], render: RenderSettings
) -> None:
    """Write captions.json and training.json (with `render`) into a trained model's directory."""
    (model_dir / CAPTIONS).write_text(json.dumps(dict(captions), indent=1, ensure_ascii=False) + "\n")
    body = {**training, "render": render.to_json()}
    (model_dir / TRAINING).write_text(json.dumps(body, indent=1) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise ModelError(f"cannot read {path}: {bad}; retrain or fix it") from None
