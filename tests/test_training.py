"""Training on a CPU, a few steps at a time: the loss falls, checkpoints are written and resumed
from, the output is a loadable pipeline with its manifests, and LoRA saves safetensors adapters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from archiver.engine.manifests import RenderSettings, read_render_settings
from archiver.engine.pipeline import TinySpec, build_tiny_pipeline, load_pipeline
from archiver.training import train_lora, train_tiny

SPEC = TinySpec(
    image_size=16,
    unet_channels=(8, 16),
    unet_cross_attention=(False, True),
    unet_norm_groups=4,
    attention_head_dim=4,
    text_hidden=16,
    text_max_length=16,
)
# The learned-VAE variant: exercises both phases (autoencoder, then denoiser) of train_tiny.
LEARNED = TinySpec(**{**SPEC.__dict__, "vae": "learned", "vae_channels": (8, 8)})
COLOURS = {"red": (220, 30, 40), "blue": (30, 60, 220), "green": (30, 170, 60), "yellow": (240, 210, 20)}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _examples() -> list[tuple[str, str, Image.Image]]:
    examples = []
    for name, colour in COLOURS.items():
        image = Image.new("RGB", (16, 16), (235, 235, 235))
        image.paste(colour, (4, 4, 12, 12))
        examples.append((f"shoes/{name}.png", f"a {name} square", image))
    return examples


def _train(out: Path, steps: int, resume: bool = False, losses: list[float] | None = None, every: int = 4):  # type: ignore[no-untyped-def]
    """Learned VAE for 4 steps, then `steps` denoiser steps; a checkpoint every `every` steps."""

    def progress(step: int, total: int, loss: float) -> None:
        if losses is not None:
            losses.append(loss)

    return train_tiny(
        _examples(), out, steps=steps, batch_size=4, lr=3e-3, seed=0, resume=resume,
        checkpoint_every=every, progress=progress, spec=LEARNED, vae_steps=4, vae_lr=3e-3, warmup=1,
    )  # fmt: skip


def test_train_tiny_lowers_the_loss_and_writes_a_loadable_model(tmp_path: Path) -> None:
    losses: list[float] = []
    result = _train(tmp_path / "model", steps=12, losses=losses)
    assert result.steps == 16 and len(losses) == 16  # 4 autoencoder steps, then 12 denoiser steps
    denoiser = losses[4:]
    assert sum(denoiser[-3:]) / 3 < sum(denoiser[:3]) / 3
    out = tmp_path / "model"
    assert json.loads((out / "captions.json").read_text()) == {k: p for k, p, _ in _examples()}
    training = json.loads((out / "training.json").read_text())
    assert training["recipe"]["steps"] == 12 and training["software"]["torch"] == torch.__version__
    assert training["final_loss"] == pytest.approx(losses[-1])
    # The render settings it was trained for, read back the only way prove reads them.
    assert read_render_settings(out) == RenderSettings(steps=training["recipe"]["schedule_steps"] or 20)
    assert training["render"] == {"steps": read_render_settings(out).steps, "guidance_scale": 1.0, "eta": 0.0}
    pipe = load_pipeline(out, "cpu", torch.float32)
    assert pipe.vae.config.scaling_factor == pytest.approx(training["vae_scaling_factor"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000012", "step-0000016"]


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(straight, steps=4, every=2)
    _train(resumed, steps=4, every=2)  # checkpoints at steps 2, 4, 6, 8; the last two are kept
    checkpoint = resumed / "checkpoints" / "step-0000008"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["step"] == 8 and state["phase"] == "denoiser"
    assert load_file(checkpoint / "optimizer.safetensors")  # Adam's moments, pickle-free
    # Pretend the run died after step 6: resume must redo only steps 7 and 8.
    shutil.rmtree(checkpoint)
    losses: list[float] = []
    result = _train(resumed, steps=4, resume=True, losses=losses, every=2)
    assert len(losses) == 2 and result.steps == 8
    assert json.loads((resumed / "training.json").read_text())["resumed_from_step"] == 6
    a = load_file(straight / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run must match an uninterrupted one"


def test_identity_vae_needs_no_autoencoder_phase(tmp_path: Path) -> None:
    losses: list[float] = []
    result = train_tiny(
        _examples(), tmp_path / "m", steps=3, batch_size=2, lr=1e-3, seed=0, spec=SPEC,
        progress=lambda step, total, loss: losses.append(loss), keep_checkpoints=False,
    )  # fmt: skip
    assert result.steps == 3 and len(losses) == 3
    assert not (tmp_path / "m" / "checkpoints").exists()
    with pytest.raises(ValueError, match="vae_steps=0"):
        train_tiny(
            _examples(), tmp_path / "n", steps=1, batch_size=1, lr=1e-3, seed=0, spec=SPEC, vae_steps=5
        )


def test_resume_refuses_a_different_recipe(tmp_path: Path) -> None:
    _train(tmp_path / "m", steps=1)
    with pytest.raises(ValueError, match="different recipe"):
        _train(tmp_path / "m", steps=2, resume=True)


def test_train_lora_saves_safetensors_adapters(tmp_path: Path) -> None:
    base = tmp_path / "base"
    spec = TinySpec(**{**SPEC.__dict__, "vocabulary": tuple(p for _, p, _ in _examples())})
    build_tiny_pipeline(spec, seed=0).save_pretrained(base, safe_serialization=True)
    losses: list[float] = []
    out = tmp_path / "lora"
    train_lora(
        base, _examples(), out, steps=2, batch_size=2, lr=1e-3, seed=0, rank=2,
        progress=lambda step, total, loss: losses.append(loss),
    )  # fmt: skip
    assert len(losses) == 2
    adapter = load_file(out / "pytorch_lora_weights.safetensors")
    assert adapter and all("lora" in name for name in adapter)
    assert (out / "checkpoints" / "step-0000002" / "unet_lora.safetensors").is_file()
    assert json.loads((out / "training.json").read_text())["recipe"]["base_dir"] == str(base.resolve())
    pipe = load_pipeline(base, "cpu", torch.float32)
    pipe.load_lora_weights(out, weight_name="pytorch_lora_weights.safetensors")  # diffusers reads it back
