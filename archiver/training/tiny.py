"""Train a tiny pipeline from scratch until it memorizes one group of images.

Two phases share one step counter (so checkpoints and resume cover both):
1. the VAE learns to be a near-lossless autoencoder of exactly these images (MSE on
   decode(encode(x).mode())), then is frozen; its latents are rescaled to unit spread;
2. the UNet and the text encoder learn to predict each image's clean latent (`sample`
   prediction by default) from its caption at every noise level.
Memorization is the goal, so there is no held-out data, no augmentation and no dropout of the
caption: a render of caption c must come back as c's image, whatever the seed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from archiver.cpuslots import each_in_slots
from archiver.engine.manifests import DEFAULT_RENDER_STEPS, RenderSettings
from archiver.engine.pipeline import TinySpec, build_tiny_pipeline
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


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    steps: int  # total optimisation steps, both phases
    vae_loss: float  # last VAE reconstruction MSE, images in [-1, 1]
    final_loss: float  # last denoiser loss
    seconds: float  # wall time of this call (a resumed run counts only its own part)


def _weights(modules: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {name: module.state_dict() for name, module in modules.items()}


def _training_timesteps(scheduler: Any, schedule_steps: int | None) -> torch.Tensor:
    if schedule_steps is None:
        return torch.arange(scheduler.config.num_train_timesteps)
    probe = type(scheduler).from_config(scheduler.config)
    probe.set_timesteps(schedule_steps)
    return probe.timesteps.clone().long()


def _spec_for(spec: TinySpec | None, examples: Sequence[Example], size: tuple[int, int]) -> TinySpec:
    width, height = size
    if width != height:
        raise ValueError(f"train_tiny needs square images, got {width}x{height}")
    spec = spec or TinySpec(image_size=width)
    if spec.image_size != width:
        raise ValueError(f"spec.image_size is {spec.image_size} but the images are {width}x{height}")
    # The tokenizer must keep every caption word whole.
    return dataclasses.replace(spec, vocabulary=tuple(sorted({p for _, p, _ in examples})))


@with_fast_kernels
def train_tiny(
    examples: Sequence[Example],
    out_dir: Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    resume: bool = False,
    checkpoint_every: int = 500,
    progress: Progress | None = None,
    spec: TinySpec | None = None,
    vae_steps: int | None = None,
    vae_lr: float = 2e-3,
    vae_batch_size: int = 16,
    warmup: int = 50,
    schedule_steps: int | None = 20,
    train_text_encoder: bool = True,
    keep_checkpoints: bool = True,
) -> TrainResult:
    """Train a tiny pipeline that memorizes `examples`; save it to `out_dir`.

    `steps`, `batch_size` and `lr` are the denoiser phase's; `vae_steps` etc. the autoencoder's
    (only for `spec.vae == "learned"`; the default identity VAE needs none). `schedule_steps`
    restricts training to the timesteps a DDIM render with that many steps visits ("trailing"
    spacing, so its divisors' schedules are included): capacity goes where renders need it.
    None trains on all timesteps.
    With `resume`, training continues from the newest checkpoint in out_dir/checkpoints (made by
    the same recipe); without it, old checkpoints there are discarded and training starts over.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    size = check_examples(examples)
    spec = _spec_for(spec, examples, size)
    if vae_steps is None:
        vae_steps = 0 if spec.vae == "identity" else 1000
    if spec.vae == "identity" and vae_steps:
        raise ValueError("the identity VAE is built exact: pass vae_steps=0 (or a learned VAE spec)")
    if steps < 1 or batch_size < 1 or vae_steps < 0 or checkpoint_every < 1:
        raise ValueError("steps, batch_size and checkpoint_every must be >= 1 and vae_steps >= 0")
    recipe: dict[str, Any] = {
        "kind": "tiny",
        "spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "vocabulary"},
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "vae_steps": vae_steps,
        "vae_lr": vae_lr,
        "vae_batch_size": vae_batch_size,
        "warmup": warmup,
        "schedule_steps": schedule_steps,
        "train_text_encoder": train_text_encoder,
        "examples": len(examples),
    }

    pipe = build_tiny_pipeline(spec, seed)
    vae, unet, text_encoder, scheduler = pipe.vae, pipe.unet, pipe.text_encoder, pipe.scheduler
    modules = {"vae": vae, "unet": unet, "text_encoder": text_encoder}
    pixels = images_to_tensor([img for _, _, img in examples])
    token_ids = pipe.tokenizer(
        [prompt for _, prompt, _ in examples],
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    count = len(examples)
    total = vae_steps + steps

    start, state, checkpoint = 0, None, None
    if resume:
        checkpoint = latest_checkpoint(out_dir)
    else:
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    if checkpoint is not None:
        state = load_checkpoint_state(checkpoint)
        if state["recipe"] != json.loads(json.dumps(recipe)):
            raise ValueError(
                f"cannot resume from {checkpoint}: it was made by a different recipe; "
                "pass the same arguments, or resume=False to start over"
            )
        for name, module in modules.items():
            module.load_state_dict(load_checkpoint_weights(checkpoint, name))
        start = state["step"]

    report, close = make_progress(progress, total, "train")
    vae_loss = state["vae_loss"] if state else float("nan")
    loss_value = float("nan")
    try:
        # Phase 1: the autoencoder.
        if start < vae_steps:
            optimizer = torch.optim.AdamW(vae.parameters(), lr=vae_lr, weight_decay=0.0)
            if checkpoint is not None and state is not None:
                load_checkpoint_optimizer(checkpoint, optimizer, state)
            vae.train()
            for step in each_in_slots(range(start, vae_steps), torch.get_num_threads()):
                gen = step_generator(seed, step)
                batch = pixels[torch.randperm(count, generator=gen)[: min(vae_batch_size, count)]]
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(vae_lr, step, vae_steps, warmup)
                recon = vae.decode(vae.encode(batch).latent_dist.mode()).sample
                loss = F.mse_loss(recon, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                vae_loss = loss_value = loss.item()
                report(step + 1, total, loss_value)
                if (step + 1) % checkpoint_every == 0 or step + 1 == vae_steps:
                    save_checkpoint(
                        out_dir, step + 1, _weights(modules), optimizer,
                        {"recipe": recipe, "phase": "vae", "vae_loss": vae_loss},
                    )  # fmt: skip
            checkpoint = None  # the denoiser phase starts with a fresh optimizer

        # Phase 2: the denoiser, on the frozen VAE's deterministic latents.
        vae.eval().requires_grad_(False)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mode()
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        clean = latents * scaling
        if not train_text_encoder:
            text_encoder.requires_grad_(False)
        params = [p for m in (unet, text_encoder) for p in m.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        if checkpoint is not None and state is not None and state["phase"] == "denoiser":
            load_checkpoint_optimizer(checkpoint, optimizer, state)
        unet.train()
        text_encoder.train(train_text_encoder)
        prediction = scheduler.config.prediction_type
        choices = _training_timesteps(scheduler, schedule_steps)
        for step in each_in_slots(range(max(start, vae_steps), total), torch.get_num_threads()):
            local = step - vae_steps
            gen = step_generator(seed, step)
            if batch_size <= count:
                index = torch.randperm(count, generator=gen)[:batch_size]
            else:
                index = torch.randint(count, (batch_size,), generator=gen)
            timesteps = choices[torch.randint(len(choices), (batch_size,), generator=gen)]
            noise = torch.randn(clean[index].shape, generator=gen)
            target_clean = clean[index]
            noisy = scheduler.add_noise(target_clean, noise, timesteps)
            if prediction == "sample":
                target = target_clean
            elif prediction == "epsilon":
                target = noise
            else:
                target = scheduler.get_velocity(target_clean, noise, timesteps)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, local, steps, warmup)
            context = text_encoder(token_ids[index])[0]
            pred = unet(noisy, timesteps, context).sample
            loss = F.mse_loss(pred, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            report(step + 1, total, loss_value)
            if (step + 1) % checkpoint_every == 0 or step + 1 == total:
                save_checkpoint(
                    out_dir, step + 1, _weights(modules), optimizer,
                    {"recipe": recipe, "phase": "denoiser", "vae_loss": vae_loss},
                )  # fmt: skip
    finally:
        close()

    unet.eval()
    text_encoder.eval()
    # Calling the fast tokenizer with padding leaves that state in its backend, and it would be
    # saved into tokenizer.json: the model's files (and hash) would depend on how it was used.
    pipe.tokenizer.backend_tokenizer.no_padding()
    pipe.tokenizer.backend_tokenizer.no_truncation()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    seconds = time.monotonic() - started
    training = {
        "recipe": recipe,
        "vae_scaling_factor": scaling,
        "vae_loss": vae_loss,
        "final_loss": loss_value,
        "seconds_this_run": round(seconds, 1),
        "resumed_from_step": start,
        "threads": torch.get_num_threads(),
        "software": software_versions(),
    }
    # Render with the DDIM schedule the denoiser was trained on (the sweep reads it from here).
    write_manifests(out_dir, examples, training, RenderSettings(steps=schedule_steps or DEFAULT_RENDER_STEPS))
    if not keep_checkpoints:
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(out_dir, total, vae_loss, loss_value, seconds)
