"""Records to bytes: rendering a record exactly, and finding the seed that earns one.

Owns `RenderSpec` (the parts of a record that decide the pixels), `rehydrate` (spec + encoding
profile -> the asset's bytes) and `search_seed` (render seeds in batches until the gate passes,
capped). The scheduler class and config come from the record, never from whatever the pipeline
directory holds today. It does not write the catalog; callers store what it returns.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import diffusers
from PIL import Image

from archiver.engine.encoding import EncodingProfile, encode
from archiver.engine.registry import LoadedModel
from archiver.engine.rendering import render_batch
from archiver.errors import ModelError
from archiver.gate import Gate, GateReport
from archiver.gate.siblings import Sibling


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
        return cls(**{name: getattr(record, name) for name in cls.__dataclass_fields__})

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
    if str(pipe.dtype).removeprefix("torch.") != spec.dtype:
        raise ModelError(
            f"record was rendered in {spec.dtype}, the model is loaded in {pipe.dtype}: "
            "its bytes would differ; render it on a device of the same precision"
        )
    scheduler_cls = getattr(diffusers, spec.scheduler_class, None)
    if scheduler_cls is None:
        raise ModelError(
            f"scheduler {spec.scheduler_class} is not in this diffusers: install the one the record used"
        )
    if type(pipe.scheduler) is not scheduler_cls or dict(pipe.scheduler.config) != spec.scheduler_config:
        pipe.scheduler = scheduler_cls.from_config(spec.scheduler_config)


def render_images(loaded: LoadedModel, spec: RenderSpec, seeds: list[int]) -> list[Image.Image]:
    _pin(loaded, spec)
    return render_batch(
        loaded.pipeline,
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt or None,
        seeds=seeds,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        width=spec.width,
        height=spec.height,
        eta=spec.eta,
        device=loaded.device,
    )


def rehydrate(loaded: LoadedModel, spec: RenderSpec, profile: EncodingProfile) -> bytes:
    """The asset's bytes: the record's seed rendered alone, encoded as its original was."""
    (image,) = render_images(loaded, spec, [spec.seed])
    return encode(image, profile)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class SearchResult:
    passed: bool
    spec: RenderSpec  # with the seed found (or the best one tried, when none passed)
    report: GateReport  # the winning report, or the best failing one
    data: bytes | None  # the rehydrated bytes the record will promise (None if nothing passed)
    seeds_tried: int


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _seed_batches(first: int, count: int, batch_size: int) -> Iterator[list[int]]:
    seeds = list(range(first, first + count))
    yield seeds[:1]
    for start in range(1, count, batch_size):
        yield seeds[start : start + batch_size]


def search_seed(
    loaded: LoadedModel,
    base: RenderSpec,
    profile: EncodingProfile,
    original: Image.Image,
    siblings: Callable[[Image.Image], Sequence[Image.Image | Sibling]],
    gate: Gate,
    *,
    max_seeds: int = 8,
    batch_size: int = 4,
    first_seed: int = 0,
) -> SearchResult:
    """Try seeds first_seed, first_seed+1, ... in batches; stop at the first that passes the gate.

    The first call renders one seed alone (a memorizing model passes there nearly always), later
    calls `batch_size` seeds each. Candidates are judged on their encoded bytes decoded again (what
    a reader will get), against `siblings(render)`: the images of the group nearest that render.
    The winner is then rendered alone twice: the bytes a record promises come from a solo render,
    and the two must be identical (the determinism check).
    """
    if max_seeds < 1 or batch_size < 1:
        raise ValueError("max_seeds and batch_size must be at least 1")
    best: tuple[float, RenderSpec, GateReport] | None = None
    tried = 0
    for seeds in _seed_batches(first_seed, max_seeds, batch_size):
        images = render_images(loaded, base, seeds)
        tried += len(seeds)
        for seed, image in zip(seeds, images, strict=True):
            spec = replace(base, seed=seed)
            candidate = encode(image, profile)
            seen = _decoded(candidate)
            report = gate.evaluate(original, seen, siblings(seen), rerender_identical=True)
            if report.passed:
                # A seed rendered alone already is a solo render: one more makes the determinism pair,
                # and when the two agree the report just made is the one for these bytes.
                solo = len(seeds) == 1
                data = candidate if solo else rehydrate(loaded, spec, profile)
                again = rehydrate(loaded, spec, profile)
                if not (solo and data == again):
                    seen = _decoded(data)
                    report = gate.evaluate(original, seen, siblings(seen), rerender_identical=data == again)
                if report.passed:
                    return SearchResult(True, spec, report, data, tried)
            score = float(report.metrics.get("psnr") or 0.0)
            if best is None or score > best[0]:
                best = (score, spec, report)
    assert best is not None
    return SearchResult(False, best[1], best[2], None, tried)
