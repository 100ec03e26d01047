"""Proving that each image of a group can be rehydrated: the per-image work of `verify` and `sweep`.

Owns one step: given how to read a group's originals (`read(key) -> bytes`), their prompts and a
loaded model, find for each image the record that regenerates it and the gate report that proves
it, or the reason it cannot be archived. The group is streamed once into a sibling index (never
held in memory); each original is read again when it is proved. It opens no storage and writes no
catalog: callers hand in `read` and store what comes back.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from archiver.captionkeys import SAME_KEYS, CaptionKeys
from archiver.engine.encoding import EncodingProfile, capture_profile, encode
from archiver.engine.manifests import RenderSettings, read_captions, read_render_settings
from archiver.engine.originals import decode_rgb
from archiver.engine.registry import LoadedModel
from archiver.engine.rehydrate import (
    RenderSpec,
    base_spec,
    rehydrate,
    render_and_encode,
    render_images,
    render_specs,
)
from archiver.errors import AuthorizationError, NoSuchObject, UnsafeKey, UnsupportedImage
from archiver.gate import Gate, GateReport, psnr
from archiver.gate import sketch as render_sketch
from archiver.gate.siblings import Sibling, SiblingIndex
from archiver.gate.verdict import with_determinism
from archiver.settings import default_of

# Images whose first trained-schedule render is made in one pipeline call (`GroupProver.prove_many`):
# 6 example prompts at 20 steps took 376 ms an image in one call against 528 alone (2-core CPU).
PROOF_BATCH = 8


@dataclass(frozen=True)
class SearchLimits:
    """How hard to look for a record; defaults are the settings' (seed_search_*, gate_siblings_k)."""

    max_seeds: int = default_of("seed_search_max")
    batch_size: int = default_of("seed_search_batch")
    siblings: int = default_of("gate_siblings_k")  # nearest siblings judged in full per render
    determinism_every: int = default_of("determinism_sample_every")  # `DeterminismSample`


@dataclass
class Proof:
    key: str
    passed: bool
    reason: str | None  # why not: a gate failure code, an UnsupportedImage reason, "no-caption"
    detail: str | None
    spec: RenderSpec | None = None
    profile: EncodingProfile | None = None
    report: GateReport | None = None
    data: bytes | None = None  # the rehydrated bytes the record promises
    sketch: bytes | None = None  # their render sketch: how other hardware's renders are verified
    seeds_tried: int = 0  # renders judged
    steps_rendered: int = 0  # denoising steps rendered for it, all renders counted (its compute)


def index_group(
    keys: Iterable[str], read: Callable[[str], bytes], *, k: int
) -> tuple[SiblingIndex, dict[str, Proof]]:
    """Stream a group once into a sibling index; a rejecting Proof for each image that cannot be
    decoded. Pixels are not kept: the index loads the few siblings it needs again through `read`.
    A key that vanished from the store meanwhile is simply not a sibling."""

    def load(key: str) -> Image.Image | None:
        try:
            return decode_rgb(read(key), key)
        except (NoSuchObject, AuthorizationError, UnsafeKey, UnsupportedImage):
            return None  # gone, or no longer readable, since it was indexed

    index = SiblingIndex(load, k=k)
    undecodable: dict[str, Proof] = {}
    for key in keys:
        try:
            index.add(key, decode_rgb(read(key), key))
        except (NoSuchObject, AuthorizationError, UnsafeKey):
            continue  # gone or unreadable: not a sibling (its own proof says why)
        except UnsupportedImage as bad:
            undecodable[key] = Proof(key, False, bad.reason, str(bad))
    return index, undecodable


@dataclass
class Group:
    """What every prover of one source shares: the prompts by the source's keys, the model's captions,
    the sibling index and the images that could not be decoded. Built once by streaming the group;
    it pickles when `read` does, so the fleet path builds it once and hands it to every worker."""

    prompts: Mapping[str, str]  # by the source's keys (`caption_keys` applied)
    captions: Mapping[str, str]  # the model's captions.json, by its own keys
    index: SiblingIndex
    undecodable: dict[str, Proof]

    @classmethod
    def build(
        cls,
        image_keys: Iterable[str],
        read: Callable[[str], bytes],
        captions: Mapping[str, str],
        *,
        k: int,
        caption_keys: CaptionKeys = SAME_KEYS,
    ) -> Group:
        prompts = {
            key: captions[caption_key]
            for key in image_keys
            if (caption_key := caption_keys.lookup(key)) is not None and caption_key in captions
        }
        index, undecodable = index_group(list(prompts), read, k=k)
        return cls(prompts, captions, index, undecodable)


@dataclass
class GroupProver:
    """Proves keys of one source against one model, with the siblings `verify` and `sweep` share:
    every image of the source the model has a caption for (coldness filters do not change them)."""

    read: Callable[[str], bytes]
    prompts: Mapping[str, str]  # by the source's keys (`caption_keys` applied)
    captions: Mapping[str, str]  # the model's captions.json, by its own keys
    loaded: LoadedModel
    gate: Gate
    limits: SearchLimits
    index: SiblingIndex
    undecodable: dict[str, Proof]
    determinism: DeterminismSample = field(init=False)
    render: RenderSettings = field(init=False)  # the model's manifest, read once for the group

    def __post_init__(self) -> None:
        self.determinism = DeterminismSample(self.limits.determinism_every)
        self.render = read_render_settings(Path(self.loaded.row.path))

    @classmethod
    def for_source(
        cls,
        image_keys: Iterable[str],
        read: Callable[[str], bytes],
        loaded: LoadedModel,
        gate: Gate,
        limits: SearchLimits,
        caption_keys: CaptionKeys = SAME_KEYS,
    ) -> GroupProver:
        captions = read_captions(Path(loaded.row.path))
        group = Group.build(image_keys, read, captions, k=limits.siblings, caption_keys=caption_keys)
        return cls.for_group(group, read, loaded, gate, limits)

    @classmethod
    def for_group(
        cls, group: Group, read: Callable[[str], bytes], loaded: LoadedModel, gate: Gate, limits: SearchLimits
    ) -> GroupProver:
        """A prover over a group built elsewhere (the fleet's driver builds it once for all workers)."""
        return cls(read, group.prompts, group.captions, loaded, gate, limits, group.index, group.undecodable)

    def prove(self, key: str) -> tuple[Proof, bytes | None]:
        """The Proof for one key, and the original bytes it judged (None when it could not read them).

        A file that is not a readable image says so before anything else, caption or not."""
        refused, data = self._admit(key)
        if refused is not None:
            return refused, data
        assert data is not None
        proof = prove_one(
            key, data, self.prompts[key], self.loaded, self.gate, self.limits, self.index,
            self.determinism, self.render,
        )  # fmt: skip
        return proof, data

    def prove_many(
        self, keys: Iterable[str], batch: int = PROOF_BATCH
    ) -> Iterator[tuple[Proof, bytes | None]]:
        """Each key's Proof and original bytes, as `prove` gives them (in any order), with the trained
        schedule's first render (seed 0) of up to `batch` images made in one pipeline call: that
        render proves the image and is never a record's bytes, so a batch may make it."""
        chunk: list[str] = []
        for key in keys:
            chunk.append(key)
            if len(chunk) == batch:
                yield from self._prove_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._prove_chunk(chunk)

    def _prove_chunk(self, keys: list[str]) -> Iterator[tuple[Proof, bytes | None]]:
        ready: dict[str, tuple[bytes, Image.Image, EncodingProfile, RenderSpec]] = {}
        for key in keys:
            refused, data = self._admit(key)
            if refused is not None:
                yield refused, data
                continue
            assert data is not None
            opened = _open_original(key, data)
            if isinstance(opened, Proof):
                yield opened, data
                continue
            original, profile = opened
            base = trained_spec(self.loaded, self.render, self.prompts[key], original.width, original.height)
            ready[key] = (data, original, profile, base)
        by_shape: dict[tuple[int, int], list[str]] = {}
        for key, (*_, base) in ready.items():
            by_shape.setdefault((base.width, base.height), []).append(key)
        for same in by_shape.values():
            firsts = render_specs(self.loaded, [ready[key][3] for key in same])
            for key, first in zip(same, firsts, strict=True):
                data, original, profile, base = ready[key]
                proof = _prove_opened(
                    key, original, profile, base, self.render.ladder, self.loaded, self.gate, self.limits,
                    self.index, self.determinism, first,
                )  # fmt: skip
                yield proof, data

    def _admit(self, key: str) -> tuple[Proof | None, bytes | None]:
        """The refusal that needs no render (gone, undecodable, no caption) or None, and the bytes read."""
        try:
            data = self.read(key)
        except NoSuchObject:
            return Proof(
                key, False, "vanished", f"{key} was removed from the source before it was verified"
            ), None
        if key in self.undecodable:
            return self.undecodable[key], data
        if self.prompts.get(key) is None:
            try:
                decode_rgb(data, key)
            except UnsupportedImage as bad:
                return Proof(key, False, bad.reason, str(bad)), data
            return Proof(
                key, False, "no-caption", f"model {self.loaded.row.name!r} has no prompt for {key}"
            ), data
        return None, data


def trained_spec(
    loaded: LoadedModel, render: RenderSettings, prompt: str, width: int, height: int
) -> RenderSpec:
    """Seed 0 of `prompt` at the schedule the model was trained for (its manifest's `render`)."""
    return base_spec(
        loaded,
        prompt=prompt,
        width=width,
        height=height,
        steps=render.steps,
        guidance_scale=render.guidance_scale,
        eta=render.eta,
    )


@dataclass
class SearchResult:
    passed: bool
    spec: RenderSpec  # with the steps and seed found (or the best tried, when none passed)
    report: GateReport  # the winning report, or the best failing one
    data: bytes | None  # the rehydrated bytes the record will promise (None if nothing passed)
    seeds_tried: int  # renders judged, every rung of the ladder counted
    image: Image.Image | None = None  # their render's pixels, before encoding (for the render sketch)
    steps_rendered: int = 0  # denoising steps spent on this image, every render counted


class DeterminismSample:
    """Which accepted records are rendered a second time to check that their bytes repeat.

    Determinism belongs to the stack (kernels, thread count, device, shapes), not to a prompt or a
    seed: `enable_determinism` pins the kernels and threads, and a record's solo render is the very
    call a reader makes. So one prover checks the first record it accepts and then every `every`-th
    one, instead of rendering every record twice. A sampled record whose bytes differ fails
    `gate-determinism`, and from then on every record is checked (the stack is not what it was).
    Readers check every render anyway, against the record's SHA-256 or its sketch (`reader`), and
    the first use of a model on a device renders a sample of records again (`modelcheck`): an
    unsampled record never serves unverified bytes. `every=1` checks every record.
    """

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.every = every
        self.accepted = 0  # records accepted by this prover
        self.checked = 0  # of which rendered twice
        self.broken = False  # a sampled pair differed: check every record from now on

    def due(self) -> bool:
        return self.broken or self.accepted % self.every == 0

    def observe(self, identical: bool | None) -> None:
        self.accepted += 1
        if identical is not None:
            self.checked += 1
        if identical is False:
            self.broken = True


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
    max_seeds: int,
    batch_size: int,
    first_seed: int = 0,
    ladder: Sequence[int] = (),
    determinism: DeterminismSample | None = None,
    first_render: Image.Image | None = None,
) -> SearchResult:
    """The cheapest render of a proven (steps, seed): the record a reader will render.

    First the image is proven at the trained schedule (`base.steps`), exactly as before there was a
    ladder: seeds first_seed, first_seed+1, ... in batches, the first alone (a memorizing model passes
    there nearly always), later ones `batch_size` a call, up to `max_seeds`. Only a seed that passes
    there goes down the ladder: `ladder`'s step counts cheaper than the schedule (a model's manifest
    names them; `RenderSettings.ladder`) render that seed alone, cheapest first, and the first whose
    render passes the whole gate is the record; else the trained render is. So the ladder never adds
    an attempt a distractor could pass by luck: every accepted image passed the trained schedule's
    search too, and the record's render passed the gate on its own.

    A render whose PSNR is under the gate's floor, and no nearer than the best refusal so far, is
    refused without the rest of the gate (the report kept for a refusal is the best one judged in
    full). Candidates are judged on their encoded bytes decoded again (what a reader will get),
    against `siblings(render)`: the images of the group nearest that render. The bytes a record
    promises come from a solo render (a winner found in a batch is rendered alone and judged again
    when its bytes differ); `determinism` says which records are rendered a second time (None: all).
    `first_render`: `first_seed` at the trained schedule, already rendered in a batch with other
    images' prompts (`GroupProver.prove_many`): the same attempt, so it is judged in place of
    rendering that seed alone, and, being a batch's, never becomes a record's bytes itself.
    """
    if max_seeds < 1 or batch_size < 1:
        raise ValueError("max_seeds and batch_size must be at least 1")
    cheaper = sorted(steps for steps in set(ladder) if steps < base.steps)
    best: tuple[float, RenderSpec, GateReport] | None = None
    tried = steps_rendered = 0
    floor = gate.thresholds.psnr_min
    for seeds in _seed_batches(first_seed, max_seeds, batch_size):
        if first_render is not None and seeds == [first_seed]:
            images, solo = [first_render], False  # rendered in a batch: never a record's bytes
        else:
            images, solo = render_images(loaded, base, seeds), len(seeds) == 1  # one seed: a reader's call
        tried += len(seeds)
        steps_rendered += base.steps * len(seeds)
        for seed, image in zip(seeds, images, strict=True):
            spec = replace(base, seed=seed)
            candidate = encode(image, profile)
            seen = _decoded(candidate)
            quick = psnr(original, seen) if seen.size == original.size else None
            if quick is not None and quick < floor and best is not None and quick <= best[0]:
                continue  # refused by PSNR alone, and no nearer than the best refusal: no LPIPS,
                # colour or siblings for it (the report kept is the best one, judged in full)
            report = gate.evaluate(original, seen, siblings(seen), rerender_identical=None)
            if report.passed:  # proven: now the cheapest render of this seed the gate accepts
                for steps in cheaper:
                    rung = replace(spec, steps=steps)
                    pixels, data = render_and_encode(loaded, rung, profile)  # alone: the record's call
                    tried += 1
                    steps_rendered += steps
                    shown = _decoded(data)
                    judged = gate.evaluate(original, shown, siblings(shown), rerender_identical=None)
                    if not judged.passed:
                        continue
                    found = _accept(
                        loaded, rung, profile, original, siblings, gate, determinism, (pixels, data, judged)
                    )
                    steps_rendered += found.steps_rendered
                    if found.passed:
                        return replace(found, seeds_tried=tried, steps_rendered=steps_rendered)
                found = _accept(
                    loaded, spec, profile, original, siblings, gate, determinism,
                    (image, candidate, report) if solo else None,
                )  # fmt: skip
                steps_rendered += found.steps_rendered
                if found.passed:
                    return replace(found, seeds_tried=tried, steps_rendered=steps_rendered)
                report = found.report
            score = float(report.metrics.get("psnr") or 0.0)
            if best is None or score > best[0]:
                best = (score, spec, report)
    assert best is not None
    return SearchResult(False, best[1], best[2], None, tried, None, steps_rendered)


def _accept(
    loaded: LoadedModel,
    spec: RenderSpec,
    profile: EncodingProfile,
    original: Image.Image,
    siblings: Callable[[Image.Image], Sequence[Image.Image | Sibling]],
    gate: Gate,
    determinism: DeterminismSample | None,
    solo: tuple[Image.Image, bytes, GateReport] | None,
) -> SearchResult:
    """A passing candidate made into the bytes a record promises: its solo render (already made when
    `solo` is given), judged again if its bytes differ from the candidate's, and rendered a second
    time when the determinism sample asks."""
    steps = 0
    if solo is not None:
        pixels, data, report = solo
    else:  # found in a batch, whose float order differs: the record's bytes come from a solo call
        pixels, data = render_and_encode(loaded, spec, profile)
        steps += spec.steps
        seen = _decoded(data)
        report = gate.evaluate(original, seen, siblings(seen), rerender_identical=None)
    identical: bool | None = None
    if report.passed and (determinism is None or determinism.due()):
        identical = rehydrate(loaded, spec, profile) == data
        steps += spec.steps
    report = with_determinism(report, identical)
    if determinism is not None and (report.passed or identical is False):
        determinism.observe(identical)
    return SearchResult(report.passed, spec, report, data if report.passed else None, 0, pixels, steps)


def prove_one(
    key: str,
    data: bytes,
    prompt: str,
    loaded: LoadedModel,
    gate: Gate,
    limits: SearchLimits,
    index: SiblingIndex,
    determinism: DeterminismSample | None = None,
    render: RenderSettings | None = None,
) -> Proof:
    """Prove one original against the siblings the index finds nearest each render (never itself),
    at the cheapest rung of the model's step ladder that passes. `determinism`: the prover's sample
    (None: every record is rendered twice); `render`: the model's render settings (None: read from
    its manifest)."""
    opened = _open_original(key, data)
    if isinstance(opened, Proof):
        return opened
    original, profile = opened
    render = render or read_render_settings(Path(loaded.row.path))
    base = trained_spec(loaded, render, prompt, original.width, original.height)
    return _prove_opened(
        key, original, profile, base, render.ladder, loaded, gate, limits, index, determinism
    )


def _open_original(key: str, data: bytes) -> tuple[Image.Image, EncodingProfile] | Proof:
    """The original's pixels and how it was encoded, or the refusal of an image archiver cannot
    write back (an odd JPEG subsampling, say)."""
    try:
        return decode_rgb(data, key), capture_profile(data, key)
    except UnsupportedImage as bad:
        return Proof(key, False, bad.reason, str(bad))


def _prove_opened(
    key: str,
    original: Image.Image,
    profile: EncodingProfile,
    base: RenderSpec,
    ladder: Sequence[int],
    loaded: LoadedModel,
    gate: Gate,
    limits: SearchLimits,
    index: SiblingIndex,
    determinism: DeterminismSample | None,
    first_render: Image.Image | None = None,
) -> Proof:
    """`prove_one` for an original already opened, its trained-schedule spec made (`base`)."""
    found: SearchResult = search_seed(
        loaded,
        base,
        profile,
        original,
        lambda rendered: index.nearest(rendered, exclude=key),
        gate,
        max_seeds=limits.max_seeds,
        batch_size=limits.batch_size,
        ladder=ladder,
        determinism=determinism,
        first_render=first_render,
    )
    reason = None if found.passed else found.report.failures[0]
    detail = None if found.passed else ", ".join(found.report.failures)
    made = render_sketch.sketch(found.image) if found.passed and found.image is not None else None
    return Proof(
        key,
        found.passed,
        reason,
        detail,
        found.spec,
        profile,
        found.report,
        found.data,
        made,
        found.seeds_tried,
        found.steps_rendered,
    )
