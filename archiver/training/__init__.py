"""Training: make a diffusion model memorize one group of near-identical images.

`train_tiny` builds a small pipeline from configs and trains it from scratch (CPU-sized);
`train_lora` fits LoRA adapters to the UNet of an existing pipeline (meant for a real Stable
Diffusion on a GPU). Both write a save_pretrained directory plus `captions.json` (key -> prompt)
and `training.json` (recipe, losses, software versions), and checkpoint to out_dir/checkpoints.
This package never renders for the gate and never decides what gets archived.
"""

from archiver.training.common import Example, Progress
from archiver.training.lora import train_lora
from archiver.training.tiny import TrainResult, train_tiny

__all__ = ["Example", "Progress", "TrainResult", "train_lora", "train_tiny"]
