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
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from archiver.captionkeys import SAME_KEYS, CaptionKeys
from archiver.engine.encoding import EncodingProfile, capture_profile, encode
from archiver.engine.manifests import read_captions, read_render_settings
from archiver.engine.originals import decode_rgb
from archiver.engine.registry import LoadedModel
from archiver.engine.rehydrate import RenderSpec, base_spec, rehydrate, render_and_encode, render_images
from archiver.errors import AuthorizationError, NoSuchObject, UnsafeKey, UnsupportedImage
from archiver.gate import Gate, GateReport
from archiver.gate import sketch as render_sketch
from archiver.gate.siblings import Sibling, SiblingIndex
from archiver.settings import default_of


@dataclass(frozen=True)
class SearchLimits:
    """How hard to look for a record; defaults are the settings' (seed_search_*, gate_siblings_k)."""

    max_seeds: int = default_of("seed_search_max")
    batch_size: int = default_of("seed_search_batch")
    siblings: int = default_of("gate_siblings_k")  # nearest siblings judged in full per render


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
    seeds_tried: int = 0


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
        try:
            data = self.read(key)
        except NoSuchObject:
            return Proof(
                key, False, "vanished", f"{key} was removed from the source before it was verified"
            ), None
        if key in self.undecodable:
            return self.undecodable[key], data
        prompt = self.prompts.get(key)
        if prompt is None:
            try:
                decode_rgb(data, key)
            except UnsupportedImage as bad:
                return Proof(key, False, bad.reason, str(bad)), data
            return Proof(
                key, False, "no-caption", f"model {self.loaded.row.name!r} has no prompt for {key}"
            ), data
        return prove_one(key, data, prompt, self.loaded, self.gate, self.limits, self.index), data


@dataclass
class SearchResult:
    passed: bool
    spec: RenderSpec  # with the seed found (or the best one tried, when none passed)
    report: GateReport  # the winning report, or the best failing one
    data: bytes | None  # the rehydrated bytes the record will promise (None if nothing passed)
    seeds_tried: int
    image: Image.Image | None = None  # their render's pixels, before encoding (for the render sketch)


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
                pixels, data = (image, candidate) if solo else render_and_encode(loaded, spec, profile)
                again = rehydrate(loaded, spec, profile)
                if not (solo and data == again):
                    seen = _decoded(data)
                    report = gate.evaluate(original, seen, siblings(seen), rerender_identical=data == again)
                if report.passed:
                    return SearchResult(True, spec, report, data, tried, pixels)
            score = float(report.metrics.get("psnr") or 0.0)
            if best is None or score > best[0]:
                best = (score, spec, report)
    assert best is not None
    return SearchResult(False, best[1], best[2], None, tried)


def prove_one(
    key: str,
    data: bytes,
    prompt: str,
    loaded: LoadedModel,
    gate: Gate,
    limits: SearchLimits,
    index: SiblingIndex,
) -> Proof:
    """Prove one original against the siblings the index finds nearest each render (never itself)."""
    try:
        original = decode_rgb(data, key)
        profile = capture_profile(data, key)
    except UnsupportedImage as bad:  # an encoding archiver cannot write back, e.g. odd JPEG subsampling
        return Proof(key, False, bad.reason, str(bad))
    render = read_render_settings(Path(loaded.row.path))
    base = base_spec(
        loaded,
        prompt=prompt,
        width=original.width,
        height=original.height,
        steps=render.steps,
        guidance_scale=render.guidance_scale,
        eta=render.eta,
    )
    found: SearchResult = search_seed(
        loaded,
        base,
        profile,
        original,
        lambda rendered: index.nearest(rendered, exclude=key),
        gate,
        max_seeds=limits.max_seeds,
        batch_size=limits.batch_size,
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
    )
