"""What a training run learns from: the captioned images of a hot source, chosen and decoded.

Owns choosing the keys (every image, or a key list from `archiver survey --write-group`), giving
each its caption (a captions file or a template), and decoding them to RGB. Problems a user should
hear about but that do not stop the run (a listed key the source lacks, an image that cannot be
decoded) come back as warnings for the caller to print; no captioned image at all is then a
ConfigError (`require_examples`).
Trains nothing and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from archiver.engine.originals import decode_rgb
from archiver.errors import ConfigError, UnsupportedImage
from archiver.imagetypes import is_image_key
from archiver.storage import HotStore
from archiver.training.captions import KeyList, load_captions, template_captions
from archiver.training.common import Example


@dataclass
class TrainingInput:
    source: str
    examples: list[Example]
    warnings: list[str] = field(default_factory=list)

    def require_examples(self) -> list[Example]:
        """The examples; a ConfigError when there are none (after the caller printed the warnings,
        which usually say why)."""
        if not self.examples:
            raise ConfigError(
                f"no captioned images in {self.source}: check that caption keys are relative to it"
            )
        return self.examples


def gather_examples(
    store: HotStore,
    source: str,
    *,
    captions_file: str | None,
    caption_template: str | None,
    wanted: KeyList | None = None,
    keys_file: Path | None = None,
) -> TrainingInput:
    """The (key, prompt, RGB image) of each captioned image in `store` (named `source` in messages),
    limited to `wanted`'s keys when given. Exactly one of `captions_file` and `caption_template`."""
    found = TrainingInput(source, [])
    keys = [o.key for o in store.list() if is_image_key(o.key)]
    if wanted is not None:
        listed = set(keys)
        absent = [key for key in wanted.keys if key not in listed]
        if absent:
            found.warnings.append(
                f"{len(absent)} keys of {keys_file} are not in {source} (first: {absent[0]})"
            )
        chosen = set(wanted.keys)
        keys = [key for key in keys if key in chosen]
    captions = (
        load_captions(captions_file) if captions_file else template_captions(keys, caption_template or "")
    )
    for key in keys:
        if key not in captions:
            continue
        try:
            found.examples.append((key, captions[key], decode_rgb(store.get(key), key)))
        except UnsupportedImage as bad:
            found.warnings.append(f"skipping {key}: {bad}")
    missing = sorted(set(captions) - set(keys))
    if missing:
        found.warnings.append(f"{len(missing)} captioned keys are not in {source} (first: {missing[0]})")
    return found
