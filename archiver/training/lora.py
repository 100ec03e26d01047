"""Fit LoRA adapters (peft) to the UNet of an existing pipeline so it memorizes one group.

Meant for a real Stable Diffusion on a GPU, where training the whole UNet per group is too
costly; on a CPU it is exercised on a tiny pipeline only. The base pipeline is loaded through
`archiver.engine.pipeline.load_pipeline` (safetensors only) and left untouched: the output is the
adapter (`pytorch_lora_weights.safetensors`, diffusers' LoRA format) plus captions.json and
training.json, which names the base directory the adapter belongs to.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from archiver.cpuslots import each_in_slots
from archiver.engine.manifests import RenderSettings
from archiver.engine.pipeline import load_pipeline
from archiver.training.common import (
    CHECKPOINT_DIR,
    Example,
    Progress,
    check_examples,
    cosine_lr,
    images_to_tensor,
    latest_checkpoint,
    load_checkpoint_optimizer,
    load_checkpoint_state,
    load_checkpoint_weights,
    make_progress,
    save_checkpoint,
    software_versions,
    step_generator,
    with_fast_kernels,
    write_manifests,
)
from archiver.training.tiny import TrainResult

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# The attention projections: the usual LoRA targets for Stable Diffusion UNets.
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


@with_fast_kernels
def train_lora(
    base_dir: Path,
    examples: Sequence[Example],
    out_dir: Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    rank: int = 8,
    resume: bool = False,
    checkpoint_every: int = 500,
    progress: Progress | None = None,
    device: str | torch.device = "cpu",
    warmup: int = 20,
) -> TrainResult:
    """Train LoRA adapters on base_dir's UNet to memorize `examples`; save them to out_dir."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    if steps < 1 or batch_size < 1 or rank < 1 or checkpoint_every < 1:
        raise ValueError("steps, batch_size, rank and checkpoint_every must be >= 1")
    started = time.monotonic()
    out_dir = Path(out_dir)
    width, height = check_examples(examples)
    pipe = load_pipeline(Path(base_dir), device, torch.float32)
    scale = pipe.vae_scale_factor
    if width % scale or height % scale:
        raise ValueError(f"image size {width}x{height} is not a multiple of the VAE's factor {scale}")
    recipe: dict[str, Any] = {
        "kind": "lora",
        "base_dir": str(Path(base_dir).resolve()),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "rank": rank,
        "target_modules": list(TARGET_MODULES),
        "warmup": warmup,
        "examples": len(examples),
    }
    vae, unet, text_encoder, scheduler = pipe.vae, pipe.unet, pipe.text_encoder, pipe.scheduler
    for module in (vae, unet, text_encoder):
        module.requires_grad_(False)
    torch.manual_seed(seed)  # LoRA's initial A matrices
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(TARGET_MODULES))
    )
    params = [p for p in unet.parameters() if p.requires_grad]

    with torch.no_grad():
        pixels = images_to_tensor([img for _, _, img in examples]).to(device)
        clean = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        ids = pipe.tokenizer(
            [prompt for _, prompt, _ in examples],
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        context_all = text_encoder(ids)[0]

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    start = 0
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if not resume:
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    if checkpoint is not None:
        state = load_checkpoint_state(checkpoint)
        if state["recipe"] != json.loads(json.dumps(recipe)):
            raise ValueError(f"cannot resume from {checkpoint}: it was made by a different recipe")
        set_peft_model_state_dict(unet, load_checkpoint_weights(checkpoint, "unet_lora"))
        load_checkpoint_optimizer(checkpoint, optimizer, state)
        start = state["step"]

    report, close = make_progress(progress, steps, "lora")
    prediction = scheduler.config.prediction_type
    count = len(examples)
    loss_value = float("nan")
    unet.train()
    try:
        for step in each_in_slots(range(start, steps), torch.get_num_threads()):
            gen = step_generator(seed, step)
            index = torch.randint(count, (batch_size,), generator=gen)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen)
            noise = torch.randn(clean[index].shape, generator=gen).to(device)
            target_clean = clean[index]
            noisy = scheduler.add_noise(target_clean, noise, timesteps.to(device))
            if prediction == "sample":
                target = target_clean
            elif prediction == "epsilon":
                target = noise
            else:
                target = scheduler.get_velocity(target_clean, noise, timesteps.to(device))
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, step, steps, warmup)
            pred = unet(noisy, timesteps.to(device), context_all[index]).sample
            loss = F.mse_loss(pred.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            report(step + 1, steps, loss_value)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                save_checkpoint(
                    out_dir, step + 1, {"unet_lora": get_peft_model_state_dict(unet)}, optimizer,
                    {"recipe": recipe},
                )  # fmt: skip
    finally:
        close()

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    out_dir.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        out_dir,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        safe_serialization=True,
        weight_name=LORA_WEIGHTS,
    )
    seconds = time.monotonic() - started
    write_manifests(
        out_dir,
        examples,
        {
            "recipe": recipe,
            "final_loss": loss_value,
            "seconds_this_run": round(seconds, 1),
            "resumed_from_step": start,
            "software": software_versions(),
        },
        # Trained on every timestep to predict noise: the default schedule, no guidance, and no
        # cheaper rungs (a 1-4 step render of an epsilon model is a blur the gate refuses, at a cost).
        RenderSettings(step_ladder=(RenderSettings().steps,)),
    )
    return TrainResult(out_dir, steps, float("nan"), loss_value, seconds)
