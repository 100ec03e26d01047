"""Records to bytes: rendering a record exactly.

Owns `RenderSpec` (the parts of a record that decide the pixels), `render_images` and `rehydrate`
(spec + encoding profile -> the asset's bytes): record -> bytes, nothing else. Finding the seed
that earns a record is `archiver.prove`'s; this module knows nothing of the gate. The scheduler
class and config come from the record, never from whatever the pipeline directory holds today.
It does not write the catalog; callers store what it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import diffusers
from PIL import Image

from archiver.catalog.profiles import RENDER_FIELDS
from archiver.engine.encoding import EncodingProfile, encode
from archiver.engine.registry import LoadedModel
from archiver.engine.rendering import render_batch
from archiver.errors import ModelError


@dataclass(frozen=True)
class RenderSpec:
    """Everything that decides a render's pixels, as stored in a record."""

    pipeline_class: str
    scheduler_class: str
    scheduler_config: dict[str, Any]
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance_scale: float
    width: int
    height: int
    eta: float = 0.0
    rng: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def from_record(cls, record: Any) -> RenderSpec:
        """The spec a catalog record promises: its own prompt, negative prompt and seed, with the
        rest from its render profile (`record.render_profile`, which many records share)."""
        profile = record.render_profile
        return cls.from_parts(
            {name: getattr(profile, name) for name in RENDER_FIELDS},
            prompt=record.prompt,
            negative_prompt=record.negative_prompt,
            seed=record.seed,
        )

    @classmethod
    def from_parts(
        cls, profile: Mapping[str, Any], *, prompt: str, negative_prompt: str, seed: int
    ) -> RenderSpec:
        """The spec from a render profile's fields (a row's, or `profiles.render_profile_doc`'s, as an
        edge bundle holds it) and a record's own values: the one way records become specs."""
        return cls(
            prompt=prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            **{name: profile[name] for name in RENDER_FIELDS},
        )

    def as_columns(self) -> dict[str, Any]:
        return asdict(self)


def base_spec(
    loaded: LoadedModel,
    *,
    prompt: str,
    width: int,
    height: int,
    steps: int,
    guidance_scale: float = 1.0,
    eta: float = 0.0,
    negative_prompt: str = "",
) -> RenderSpec:
    """A spec (seed 0) pinned to the loaded pipeline's class, scheduler and dtype as they are now."""
    pipe = loaded.pipeline
    return RenderSpec(
        pipeline_class=type(pipe).__name__,
        scheduler_class=type(pipe.scheduler).__name__,
        scheduler_config=dict(pipe.scheduler.config),
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=0,
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        eta=eta,
        dtype=str(pipe.dtype).removeprefix("torch."),
    )


def _pin(loaded: LoadedModel, spec: RenderSpec) -> None:
    """Make the pipeline render exactly as the record says, or refuse."""
    pipe = loaded.pipeline
    if type(pipe).__name__ != spec.pipeline_class:
        raise ModelError(
            f"record wants a {spec.pipeline_class}, model {loaded.row.name!r} is a {type(pipe).__name__}"
        )
    if spec.rng != "cpu":
        raise ModelError(f"record uses rng {spec.rng!r}; this archiver draws noise on the CPU only")
    # A record rendered in another precision (float32 on a CPU, read in float16 on a GPU) renders
    # in the loaded one: its bytes differ, and the reader judges the image by the record's sketch.
    scheduler_cls = getattr(diffusers, spec.scheduler_class, None)
    if scheduler_cls is None:
        raise ModelError(
            f"scheduler {spec.scheduler_class} is not in this diffusers: install the one the record used"
        )
    if type(pipe.scheduler) is not scheduler_cls or dict(pipe.scheduler.config) != spec.scheduler_config:
        pipe.scheduler = scheduler_cls.from_config(spec.scheduler_config)


def render_images(loaded: LoadedModel, spec: RenderSpec, seeds: list[int]) -> list[Image.Image]:
    """`spec`'s prompt once per seed, in one pipeline call."""
    return _render(loaded, spec, spec.prompt, seeds)


def render_specs(loaded: LoadedModel, specs: list[RenderSpec]) -> list[Image.Image]:
    """Several records' renders in one pipeline call (their prompts and seeds; every other field the
    same). A batch changes the float order: these are candidates, never a record's bytes."""
    first = specs[0]
    shared = {name: getattr(first, name) for name in RENDER_FIELDS}
    if any({name: getattr(spec, name) for name in RENDER_FIELDS} != shared for spec in specs):
        raise ValueError("render_specs batches specs that differ only in prompt and seed")
    if any(spec.negative_prompt != first.negative_prompt for spec in specs):
        raise ValueError("render_specs batches specs that share one negative prompt")
    return _render(loaded, first, [spec.prompt for spec in specs], [spec.seed for spec in specs])


def _render(
    loaded: LoadedModel, spec: RenderSpec, prompt: str | list[str], seeds: list[int]
) -> list[Image.Image]:
    """The pipeline pinned to `spec`, called once: `prompt` (one, or one per seed) for each seed."""
    _pin(loaded, spec)
    return render_batch(
        loaded.pipeline,
        prompt=prompt,
        negative_prompt=spec.negative_prompt or None,
        seeds=seeds,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        width=spec.width,
        height=spec.height,
        eta=spec.eta,
        device=loaded.device,
    )


def render_and_encode(
    loaded: LoadedModel, spec: RenderSpec, profile: EncodingProfile
) -> tuple[Image.Image, bytes]:
    """The record's seed rendered alone: the render's pixels (what a render sketch is made of, before
    a lossy encoder can amplify a level's drift into a block's), and its bytes encoded as the
    original was."""
    (image,) = render_images(loaded, spec, [spec.seed])
    return image, encode(image, profile)


def rehydrate(loaded: LoadedModel, spec: RenderSpec, profile: EncodingProfile) -> bytes:
    """The asset's bytes: the record's seed rendered alone, encoded as its original was."""
    return render_and_encode(loaded, spec, profile)[1]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
