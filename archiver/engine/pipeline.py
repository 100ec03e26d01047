"""Building and loading diffusion pipelines: the engine's only door to model weights.

Owns two things: `build_tiny_pipeline`, which makes a small text-to-image pipeline in the real
`StableDiffusionPipeline` format entirely from configs (no download: the CLIP tokenizer's
vocab.json/merges.txt are generated here from the captions it must read), and `load_pipeline`,
which opens a `save_pretrained` directory from safetensors only. It never renders (that is
`archiver.engine.rendering`) and never trains (`archiver.training`).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from archiver.errors import ModelError

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# Any file with one of these suffixes can execute code when unpickled; we never open them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny pipeline. Defaults suit a group of 64x64 product images on a CPU.

    `vocabulary` is the text the tokenizer learns whole words from (the group's captions); any
    other text still tokenizes, one byte-level symbol at a time.

    `vae="identity"` builds an AutoencoderKL whose weights are set by hand so that its latents
    are the image's own pixels (3 channels, no downsampling) and decode returns them to within
    ~1e-3 of a level: nothing to train, nothing lost, and the UNet works in pixel space. `"learned"`
    builds a randomly initialised VAE with `vae_channels` levels for training.
    """

    vocabulary: Sequence[str] = ()
    image_size: int = 64
    vae: str = "identity"
    # Learned VAE only: one entry per resolution level; two levels = one 2x downsampling.
    vae_channels: tuple[int, ...] = (32, 32)
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (16, 32, 64, 64)
    unet_layers_per_block: int = 1
    # Which UNet levels attend to the prompt; attention at fine levels is costly on a CPU.
    unet_cross_attention: tuple[bool, ...] = (False, False, False, True)
    unet_norm_groups: int = 8
    # Also feed an attention-pooled prompt embedding into every ResNet block through the time
    # embedding (diffusers' addition_embed_type="text"): global attributes such as a colour reach
    # every level, not only those with cross-attention.
    unet_text_time_embedding: bool = True
    attention_head_dim: int = 32
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 2
    text_max_length: int = 32
    prediction_type: str = "sample"
    timestep_spacing: str = "trailing"

    @property
    def latent_size(self) -> int:
        if self.vae == "identity":
            return self.image_size
        return self.image_size // 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_depth(self) -> int:
        return 3 if self.vae == "identity" else self.latent_channels


# Identity VAE constants. Each GroupNorm group holds (x, -x, ANCHOR): its mean is ANCHOR/3 and its
# spread ~ANCHOR*sqrt(2)/3 whatever x is (x's share is ~1e-6), so the norm becomes a fixed affine
# map; LIFT moves the values to where SiLU is linear to ~1e-4, ALPHA keeps them in that range.
_ANCHOR = 1000.0
_LIFT = 10.0
_ALPHA = 0.01


def _silu(x: float) -> float:
    return x / (1.0 + math.exp(-x))


def _silu_slope(x: float) -> float:
    s = 1.0 / (1.0 + math.exp(-x))
    return s + x * s * (1.0 - s)


def identity_vae(channels: int = 3, sample_size: int = 64) -> AutoencoderKL:
    """An AutoencoderKL whose latents are its input: encode/decode are identities (see TinySpec)."""
    vae = AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(3 * channels,),
        layers_per_block=1,
        latent_channels=channels,
        norm_num_groups=channels,
        sample_size=sample_size,
        mid_block_add_attention=False,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.0,
    )
    sigma = _ANCHOR * math.sqrt(2.0) / 3.0
    slope = _ALPHA * _silu_slope(_LIFT)
    with torch.no_grad():
        # All zero: every ResNet block's last conv is then zero, so each block is x -> x.
        for param in vae.parameters():
            param.zero_()
        for conv_in in (vae.encoder.conv_in, vae.decoder.conv_in):
            for c in range(channels):
                conv_in.weight[3 * c, c, 1, 1] = 1.0
                conv_in.weight[3 * c + 1, c, 1, 1] = -1.0
                conv_in.bias[3 * c + 2] = _ANCHOR
        for norm, conv_out in (
            (vae.encoder.conv_norm_out, vae.encoder.conv_out),
            (vae.decoder.conv_norm_out, vae.decoder.conv_out),
        ):
            for c in range(channels):
                norm.weight[3 * c] = _ALPHA * sigma
                norm.bias[3 * c] = _ALPHA * _ANCHOR / 3.0 + _LIFT
                conv_out.weight[c, 3 * c, 1, 1] = 1.0 / slope
                conv_out.bias[c] = -_silu(_LIFT) / slope
        # The encoder's log-variance channels: as small as the distribution allows, so that
        # latent_dist.sample() is the mode too.
        vae.encoder.conv_out.bias[channels:] = -30.0
    return vae


def _clip_words(texts: Iterable[str]) -> list[str]:
    """The distinct words CLIPTokenizer's pre-tokenizer makes of `texts` (normalised, byte-level)."""
    backend = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[]).backend_tokenizer
    words: set[str] = set()
    for text in texts:
        normalized = backend.normalizer.normalize_str(text)
        words.update(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized))
    return sorted(words)


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins GPT-2/CLIP use for raw bytes."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def build_tokenizer(vocabulary: Iterable[str], max_length: int, directory: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt so every word of `vocabulary` is one token, and load them.

    The vocabulary starts like CLIP's: every byte symbol alone and as a word end (`x</w>`), so any
    text can be tokenized. Merges are derived word by word (left to right); a merge learnt for one
    word can pre-empt another word's, so each word is checked with the real tokenizer and repaired
    by merging whatever pieces remain, until every word is a single token.
    """
    words = _clip_words(vocabulary)
    alphabet = _byte_alphabet()
    tokens: list[str] = [*alphabet, *(c + "</w>" for c in alphabet)]
    known = set(tokens)
    merges: list[tuple[str, str]] = []
    merges_set: set[tuple[str, str]] = set()

    def add_merge(left: str, right: str) -> None:
        if (left, right) not in merges_set:
            merges.append((left, right))
            merges_set.add((left, right))
        if left + right not in known:
            tokens.append(left + right)
            known.add(left + right)

    for word in words:
        symbols = [*word[:-1], word[-1] + "</w>"]
        acc = symbols[0]
        for sym in symbols[1:]:
            add_merge(acc, sym)
            acc += sym

    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(len(words) + 1):
        tokenizer = _write_and_load(directory, tokens, merges, max_length)
        broken = [w for w in words if len(tokenizer.backend_tokenizer.model.tokenize(w)) != 1]
        if not broken:
            return tokenizer
        for word in broken:
            pieces = [t.value for t in tokenizer.backend_tokenizer.model.tokenize(word)]
            acc = pieces[0]
            for piece in pieces[1:]:
                add_merge(acc, piece)
                acc += piece
    raise RuntimeError(f"could not derive BPE merges that keep these words whole: {broken[:5]}")


def _write_and_load(
    directory: Path, tokens: list[str], merges: list[tuple[str, str]], max_length: int
) -> CLIPTokenizer:
    vocab = {tok: i for i, tok in enumerate([*tokens, BOS, EOS])}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Loaded back from the files, as from_pretrained would, so what we check is what ships.
    return CLIPTokenizer.from_pretrained(directory, model_max_length=max_length, local_files_only=True)


def build_tiny_pipeline(spec: TinySpec, seed: int) -> StableDiffusionPipeline:
    """A randomly initialised (seeded) tiny StableDiffusionPipeline built from configs only."""
    if spec.image_size % spec.latent_size or spec.latent_size % 2 ** (len(spec.unet_channels) - 1):
        raise ValueError(f"image_size {spec.image_size} does not divide through the VAE's and UNet's levels")
    if len(spec.unet_cross_attention) != len(spec.unet_channels):
        raise ValueError("unet_cross_attention needs one flag per entry of unet_channels")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(spec.vocabulary, spec.text_max_length, Path(tmp))

    torch.manual_seed(seed)
    if spec.vae == "identity":
        vae = identity_vae(3, spec.image_size)
    elif spec.vae == "learned":
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * len(spec.vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(spec.vae_channels),
            block_out_channels=spec.vae_channels,
            layers_per_block=1,
            latent_channels=spec.latent_channels,
            norm_num_groups=min(spec.vae_channels[0], 32),
            sample_size=spec.image_size,
            # Attention at the bottleneck buys nothing for memorisation and costs time.
            mid_block_add_attention=False,
            scaling_factor=1.0,  # set by training from the latents' measured spread
        )
    else:
        raise ValueError(f"spec.vae must be 'identity' or 'learned', got {spec.vae!r}")
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_hidden * 2,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        max_position_embeddings=spec.text_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    down = tuple("CrossAttnDownBlock2D" if attn else "DownBlock2D" for attn in spec.unet_cross_attention)
    up = tuple("CrossAttnUpBlock2D" if attn else "UpBlock2D" for attn in reversed(spec.unet_cross_attention))
    unet = UNet2DConditionModel(
        sample_size=spec.latent_size,
        in_channels=spec.latent_depth,
        out_channels=spec.latent_depth,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=spec.unet_channels,
        layers_per_block=spec.unet_layers_per_block,
        cross_attention_dim=spec.text_hidden,
        attention_head_dim=spec.attention_head_dim,
        norm_num_groups=spec.unet_norm_groups,
        addition_embed_type="text" if spec.unet_text_time_embedding else None,
        addition_embed_type_num_heads=max(1, spec.text_hidden // 16),
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,  # latents are not confined to [-1, 1]
        set_alpha_to_one=True,
        steps_offset=1,  # the pipeline rewrites any other value (with a warning) when it loads
        prediction_type=spec.prediction_type,
        timestep_spacing=spec.timestep_spacing,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# Components a StableDiffusionPipeline directory needs, and the config file each one holds.
_REQUIRED = {
    "model_index.json": None,
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "tokenizer": None,
    "scheduler": "scheduler_config.json",
}
# Components that hold no weights; every other one must have safetensors.
_WEIGHTLESS = {"tokenizer", "tokenizer_2", "scheduler", "feature_extractor"}


def check_model_dir(path: Path) -> None:
    """Raise ModelError naming what is missing or unsafe in a save_pretrained directory."""
    if not path.exists():
        raise ModelError(f"model directory {path} does not exist: check the path or train one first")
    if not path.is_dir():
        raise ModelError(f"model path {path} is not a directory: pass a save_pretrained directory")
    if not (path / "model_index.json").is_file():
        raise ModelError(f"{path} has no model_index.json: it is not a diffusers save_pretrained directory")
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{path / 'model_index.json'} is unreadable ({err}): re-save the model") from None
    components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]]
    missing = []
    for name in components:
        sub = path / name
        config = _REQUIRED.get(name)
        if not sub.is_dir():
            missing.append(f"{name}/")
        elif config and not (sub / config).is_file():
            missing.append(f"{name}/{config}")
    if missing:
        raise ModelError(f"model directory {path} is incomplete: missing {', '.join(missing)}")
    for name in components:
        sub = path / name
        if name in _WEIGHTLESS or any(sub.glob("*.safetensors")):
            continue
        pickles = sorted(p.name for p in sub.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(
                f"{sub} holds only pickle weights ({', '.join(pickles)}), which archiver never loads: "
                "convert them with pipe.save_pretrained(dir, safe_serialization=True) on a trusted machine"
            )
        raise ModelError(f"model directory {path} is incomplete: missing {name}/*.safetensors weights")


def load_pipeline(
    path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> DiffusionPipeline:
    """Open a save_pretrained directory from local safetensors only, on `device` in `dtype`."""
    path = Path(path)
    check_model_dir(path)
    try:
        pipe = DiffusionPipeline.from_pretrained(
            path, use_safetensors=True, local_files_only=True, dtype=dtype
        )
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the model at {path}: {err}".splitlines()[0]) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
