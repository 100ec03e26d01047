"""Benchmark: render latency and batched seed-search throughput. Prints a table, then a JSON line.

    .venv/bin/python bench/render.py [--model-dir examples/rumba/model] [--images 8] [--steps N ...]

CPU: the example model (cold first render, warm per-image latency, throughput of one pipeline call
over batches of seeds) at the trained schedule, then the cost of one warm render at each step count
of the model's ladder (default: its manifest's, `RenderSettings.ladder`): wall-clock p50 and the
CPU time it took in core-seconds (process CPU time: every thread counted), beside the break-even
for a 50 KB CDN miss (its egress, $4.5e-6 at $0.09/GB, buys about 0.4 CPU-core-seconds on demand or
23 ms of an L4 GPU). With CUDA: also a full-size Stable Diffusion 1.5-architecture pipeline built
from configs with random weights (512x512, float32 and float16, batch 1 and 8, at each step count):
the speed of a real model's shape, without downloading one.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archiver.engine.manifests import RenderSettings, read_captions, read_render_settings  # noqa: E402
from archiver.engine.pipeline import load_pipeline  # noqa: E402
from archiver.engine.rendering import enable_determinism, render_batch  # noqa: E402


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, out


BREAK_EVEN_CORE_S = 0.4  # a 50 KB miss's egress buys this much on-demand CPU (DESIGN.md)
BREAK_EVEN_GPU_MS = 23.0  # ... or this much of an L4 GPU


@dataclass
class Example:
    """The example model loaded once for every figure: its load time, first prompts and render size."""

    pipe: Any
    load_s: float
    prompts: list[str]
    settings: RenderSettings
    size: int
    device: str
    dtype: torch.dtype

    @classmethod
    def load(cls, model_dir: Path, images: int, device: str) -> Example:
        dtype = torch.float16 if device == "cuda" else torch.float32
        load_s, pipe = timed(load_pipeline, model_dir, device=device, dtype=dtype)
        prompts = list(read_captions(model_dir).values())[:images] or ["a product photo"]
        size = int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        return cls(pipe, load_s, prompts, read_render_settings(model_dir), size, device, dtype)

    def render(self, prompt: str, seeds: list[int], steps: int) -> tuple[float, Any]:
        """Seconds for one pipeline call of `prompt` per seed at `steps`, and its images."""
        return timed(
            render_batch,
            self.pipe,
            prompt=prompt,
            negative_prompt=None,
            seeds=seeds,
            steps=steps,
            guidance_scale=self.settings.guidance_scale,
            width=self.size,
            height=self.size,
            eta=self.settings.eta,
            device=self.device,
        )


def ladder_costs(example: Example, ladder: list[int]) -> list[dict[str, object]]:
    """One warm render per prompt at each step count: p50 wall ms and core-seconds (CPU time)."""
    cuda = example.device == "cuda"
    rows: list[dict[str, object]] = []
    for steps in ladder:
        example.render(example.prompts[0], [0], steps)  # warm
        walls, cores = [], []
        for prompt in example.prompts:
            cpu = time.process_time()
            walls.append(example.render(prompt, [0], steps)[0])
            cores.append(time.process_time() - cpu)
        p50_ms = statistics.median(walls) * 1000
        core_s = statistics.median(cores)
        rows.append(
            {
                "steps": steps,
                "size": f"{example.size}x{example.size}",
                "p50_ms": p50_ms,
                "core_s": core_s,
                "break_even": BREAK_EVEN_GPU_MS if cuda else BREAK_EVEN_CORE_S,
                "of_break_even": p50_ms / BREAK_EVEN_GPU_MS if cuda else core_s / BREAK_EVEN_CORE_S,
            }
        )
    return rows


def bench_example(example: Example) -> list[dict[str, object]]:
    steps = example.settings.steps
    cold_s, _ = example.render(example.prompts[0], [0], steps)
    warm = [example.render(p, [0], steps)[0] for p in example.prompts]
    load_s = example.load_s
    rows: list[dict[str, object]] = [
        {"case": "example: load model", "batch": 0, "seconds": load_s, "images_per_s": None},
        {"case": "example: cold first render", "batch": 1, "seconds": cold_s, "images_per_s": 1 / cold_s},
        {
            "case": f"example: warm render (median of {len(warm)})",
            "batch": 1,
            "seconds": statistics.median(warm),
            "images_per_s": 1 / statistics.median(warm),
        },
    ]
    for batch in (4, 8, 16):
        seconds, _ = example.render(example.prompts[0], list(range(batch)), steps)
        rows.append(
            {
                "case": "example: seed search, one call",
                "batch": batch,
                "seconds": seconds,
                "images_per_s": batch / seconds,
            }
        )
    for row in rows:
        row.update(
            steps=steps,
            size=f"{example.size}x{example.size}",
            dtype=str(example.dtype).removeprefix("torch."),
        )
    return rows


def bench_sd15_shape(ladder: list[int]) -> list[dict[str, object]]:
    """SD 1.5's architecture with random weights on CUDA, float32 and float16, at each step count
    (configs only, nothing downloaded)."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from archiver.engine.pipeline import build_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
            vocab_size=49408,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(["a product photo of a shoe"], 77, Path(tmp))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    rows: list[dict[str, object]] = []
    for dtype in (torch.float32, torch.float16):
        pipe = pipe.to("cuda", dtype)
        for steps in ladder:
            kwargs = dict(
                prompt="a product photo of a shoe",
                negative_prompt=None,
                steps=steps,
                guidance_scale=7.5,
                width=512,
                height=512,
                eta=0.0,
                device="cuda",
            )
            render_batch(pipe, seeds=[0], **kwargs)  # warm-up: kernels, allocator
            for batch in (1, 8):
                runs = [timed(render_batch, pipe, seeds=list(range(batch)), **kwargs)[0] for _ in range(3)]
                seconds = statistics.median(runs)
                rows.append(
                    {
                        "case": "SD1.5 shape, random weights",
                        "batch": batch,
                        "seconds": seconds,
                        "images_per_s": batch / seconds,
                        "steps": steps,
                        "size": "512x512",
                        "dtype": str(dtype).removeprefix("torch."),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "examples" / "rumba" / "model")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument(
        "--steps", type=int, nargs="*", default=None, help="step counts to cost (default: the model's ladder)"
    )
    args = parser.parse_args()
    if not (args.model_dir / "model_index.json").is_file():
        sys.exit(f"bench/render: no model at {args.model_dir}: pass --model-dir (a save_pretrained dir)")
    enable_determinism()
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ladder = args.steps or list(read_render_settings(args.model_dir).ladder)
    example = Example.load(args.model_dir, args.images, device)
    rows = bench_example(example)
    costs = ladder_costs(example, ladder)
    if device == "cuda":
        rows += bench_sd15_shape(ladder)
    machine = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    )
    print(f"render benchmark on {machine}")
    print(f"{'case':44} {'batch':>5} {'steps':>5} {'size':>9} {'dtype':>8} {'seconds':>9} {'img/s':>8}")
    for r in rows:
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.2f}"
        print(
            f"{r['case']:44} {r['batch']:>5} {r['steps']:>5} {r['size']:>9} {r['dtype']:>8} "
            f"{r['seconds']:>9.3f} {ips:>8}"
        )
    unit = "GPU ms" if device == "cuda" else "core-s"
    print(
        f"\none warm render per step count ({args.images} prompts; break-even for a 50 KB miss: "
        f"{BREAK_EVEN_GPU_MS if device == 'cuda' else BREAK_EVEN_CORE_S} {unit})"
    )
    print(f"{'steps':>5} {'size':>9} {'p50 ms':>8} {'core-s':>8} {'of break-even':>14}")
    for c in costs:
        print(
            f"{c['steps']:>5} {c['size']:>9} {c['p50_ms']:>8.1f} {c['core_s']:>8.3f} "
            f"{c['of_break_even']:>13.2f}x"
        )
    print(json.dumps({"bench": "render", "device": machine, "rows": rows, "ladder": costs}))


if __name__ == "__main__":
    main()
