"""Proving that each image of a group can be rehydrated: the per-image work of `verify` and `sweep`.

Owns one step: given how to read a group's originals (`read(key) -> bytes`), their prompts and a
loaded model, find for each image the record that regenerates it and the gate report that proves
it, or the reason it cannot be archived. The group is streamed once into a sibling index (never
held in memory); each original is read again when it is proved. It opens no storage and writes no
catalog: callers hand in `read` and store what comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from archiver.engine.encoding import EncodingProfile, capture_profile
from archiver.engine.manifests import read_captions, read_render_settings
from archiver.engine.originals import decode_rgb
from archiver.engine.registry import LoadedModel
from archiver.engine.rehydrate import RenderSpec, SearchResult, base_spec, search_seed
from archiver.errors import NoSuchObject, UnsupportedImage
from archiver.gate import Gate, GateReport
from archiver.gate.siblings import DEFAULT_K, SiblingIndex


@dataclass(frozen=True)
class SearchLimits:
    max_seeds: int = 8
    batch_size: int = 4
    siblings: int = DEFAULT_K  # nearest siblings judged in full per render


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
    seeds_tried: int = 0


def index_group(
    keys: Iterable[str], read: Callable[[str], bytes], *, k: int = DEFAULT_K
) -> tuple[SiblingIndex, dict[str, Proof]]:
    """Stream a group once into a sibling index; a rejecting Proof for each image that cannot be
    decoded. Pixels are not kept: the index loads the few siblings it needs again through `read`.
    A key that vanished from the store meanwhile is simply not a sibling."""

    def load(key: str) -> Image.Image | None:
        try:
            return decode_rgb(read(key), key)
        except (NoSuchObject, UnsupportedImage):
            return None  # gone or changed into something unreadable since it was indexed

    index = SiblingIndex(load, k=k)
    undecodable: dict[str, Proof] = {}
    for key in keys:
        try:
            index.add(key, decode_rgb(read(key), key))
        except NoSuchObject:
            continue
        except UnsupportedImage as bad:
            undecodable[key] = Proof(key, False, bad.reason, str(bad))
    return index, undecodable


@dataclass
class GroupProver:
    """Proves keys of one source against one model, with the siblings `verify` and `sweep` share:
    every image of the source the model has a caption for (coldness filters do not change them)."""

    read: Callable[[str], bytes]
    prompts: Mapping[str, str]
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
    ) -> GroupProver:
        prompts = read_captions(Path(loaded.row.path))
        index, undecodable = index_group(
            [key for key in image_keys if key in prompts], read, k=limits.siblings
        )
        return cls(read, prompts, loaded, gate, limits, index, undecodable)

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
    return Proof(
        key, found.passed, reason, detail, found.spec, profile, found.report, found.data, found.seeds_tried
    )
