"""A model directory's manifests: the one owner of `captions.json` and `training.json`.

`captions.json` maps each trained key to its prompt (a sweep's and verify's only source of prompts).
`training.json` holds the training recipe, losses and software versions, and `render`: the steps,
guidance scale and eta the model was trained to render with. Training writes both through here;
prove, verify, the benchmarks and the registry read them through here only.

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


@dataclass(frozen=True)
class RenderSettings:
    """How a model renders its group: what it was trained for, so a sweep renders the same way."""

    steps: int = DEFAULT_RENDER_STEPS
    guidance_scale: float = 1.0
    eta: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
            return RenderSettings(
                steps=int(render.get("steps", DEFAULT_RENDER_STEPS)),
                guidance_scale=float(render.get("guidance_scale", 1.0)),
                eta=float(render.get("eta", 0.0)),
            )
        except (TypeError, ValueError) as bad:
            raise ModelError(
                f"{model_dir / TRAINING}: bad render settings ({bad}): retrain or fix it"
            ) from None
    schedule = (training.get("recipe") or {}).get("schedule_steps")
    return RenderSettings(steps=int(schedule)) if isinstance(schedule, int) else RenderSettings()


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
