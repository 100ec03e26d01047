"""Merging a LoRA adapter into a registrable model: the base pipeline with the adapter fused in.

A record must pin the exact weights it renders with, and the registry hashes a model directory's
files; an adapter that needs a base found elsewhere cannot be pinned that way. So `archiver train
--base` writes the fused pipeline (save_pretrained, safetensors) into its output directory, beside
the adapter and the manifests.
"""

from __future__ import annotations

from pathlib import Path

import torch

from archiver.engine.pipeline import load_pipeline
from archiver.training.lora import LORA_WEIGHTS


def merge_into_pipeline(base_dir: Path, out_dir: Path) -> Path:
    """Load `base_dir`, fuse `out_dir`'s LoRA adapter into it, and save the result into `out_dir`."""
    pipe = load_pipeline(base_dir, "cpu", torch.float32)
    pipe.load_lora_weights(str(out_dir), weight_name=LORA_WEIGHTS)
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # keeps the fused weights, drops the adapter layers
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
