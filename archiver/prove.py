"""Proving that each image of a group can be rehydrated: the per-image work of `verify` and `sweep`.

Owns one step: given a group's originals (bytes by key), their prompts and a loaded model, find
for each image the record that regenerates it and the gate report that proves it, or the reason
it cannot be archived. It reads no storage and writes no catalog: callers do both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from archiver.engine.encoding import EncodingProfile, capture_profile
from archiver.engine.originals import decode_rgb
from archiver.engine.registry import LoadedModel
from archiver.engine.rehydrate import RenderSpec, SearchResult, base_spec, search_seed
from archiver.errors import UnsupportedImage
from archiver.gate import Gate, GateReport

DEFAULT_RENDER_STEPS = 20


@dataclass(frozen=True)
class SearchLimits:
    max_seeds: int = 8
    batch_size: int = 4


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


def render_defaults(model_dir: Path) -> dict[str, float]:
    """Steps, guidance and eta the model was trained to render with (training.json), else defaults."""
    defaults: dict[str, float] = {"steps": DEFAULT_RENDER_STEPS, "guidance_scale": 1.0, "eta": 0.0}
    manifest = model_dir / "training.json"
    if manifest.is_file():
        render = json.loads(manifest.read_text(encoding="utf-8")).get("render", {})
        defaults.update({k: render[k] for k in defaults if k in render})
    return defaults


def decode_group(originals: Mapping[str, bytes]) -> tuple[dict[str, Image.Image], dict[str, Proof]]:
    """Decoded originals by key, and a rejecting Proof for each one that cannot be decoded."""
    decoded: dict[str, Image.Image] = {}
    rejected: dict[str, Proof] = {}
    for key, data in originals.items():
        try:
            decoded[key] = decode_rgb(data, key)
        except UnsupportedImage as bad:
            rejected[key] = Proof(key, False, bad.reason, str(bad))
    return decoded, rejected


def prove_group(
    originals: Mapping[str, bytes],
    prompts: Mapping[str, str],
    loaded: LoadedModel,
    gate: Gate,
    limits: SearchLimits,
) -> Iterator[Proof]:
    """One Proof per original, in key order. Siblings are the group's other decodable originals."""
    decoded, rejected = decode_group(originals)
    for key in sorted(originals):
        yield rejected.get(key) or prove_one(
            key, originals[key], decoded, prompts.get(key), loaded, gate, limits
        )


def prove_one(
    key: str,
    data: bytes,
    group: Mapping[str, Image.Image],
    prompt: str | None,
    loaded: LoadedModel,
    gate: Gate,
    limits: SearchLimits,
) -> Proof:
    """Prove one decodable original (`group[key]`) against its siblings (the rest of `group`)."""
    if prompt is None:
        return Proof(key, False, "no-caption", f"model {loaded.row.name!r} has no prompt for {key}")
    original = group[key]
    try:
        profile = capture_profile(data, key)
    except UnsupportedImage as bad:  # an encoding archiver cannot write back, e.g. odd JPEG subsampling
        return Proof(key, False, bad.reason, str(bad))
    render = render_defaults(Path(loaded.row.path))
    base = base_spec(
        loaded,
        prompt=prompt,
        width=original.width,
        height=original.height,
        steps=int(render["steps"]),
        guidance_scale=float(render["guidance_scale"]),
        eta=float(render["eta"]),
    )
    siblings = [image for other, image in group.items() if other != key]
    found: SearchResult = search_seed(
        loaded,
        base,
        profile,
        original,
        siblings,
        gate,
        max_seeds=limits.max_seeds,
        batch_size=limits.batch_size,
    )
    reason = None if found.passed else found.report.failures[0]
    detail = None if found.passed else ", ".join(found.report.failures)
    return Proof(
        key, found.passed, reason, detail, found.spec, profile, found.report, found.data, found.seeds_tried
    )
