"""How a source's keys meet a model's caption keys, and the hint when they do not.

A model's `captions.json` names each trained image by its key in the source it was trained on:
the object's own name (a full S3 key, or a path relative to the directory trained). A source swept
at another root holds the same images under other names: `CaptionKeys` maps a source key to the
model's (strip one prefix, then add one), as `sweep` and `verify` are told with
`--caption-strip-prefix` and `--caption-add-prefix`. `caption_hint` finds the mapping that would
give uncaptioned keys a caption and says so in one line. Pure functions: no I/O, no catalog.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import islice

HINT_KEYS_LOOKED_AT = 10_000  # uncaptioned keys the hint looks at, at most
AMBIGUOUS_TAIL = 32  # a key tail that ends this many caption keys (`main.jpg`) casts no vote


@dataclass(frozen=True)
class CaptionKeys:
    """Source key -> the model's caption key: `strip` taken off the front (keys without it have no
    caption), then `add` put in front. Both empty: the keys are the same."""

    strip: str = ""
    add: str = ""

    def lookup(self, key: str) -> str | None:
        if not key.startswith(self.strip):
            return None
        return self.add + key[len(self.strip) :]

    def flags(self) -> str:
        """The command-line options that give this mapping."""
        parts = [f"--caption-strip-prefix {self.strip}"] if self.strip else []
        parts += [f"--caption-add-prefix {self.add}"] if self.add else []
        return " ".join(parts) or "no --caption-* option"


SAME_KEYS = CaptionKeys()  # the source's keys are the model's caption keys


def _splits(key: str) -> Iterable[tuple[str, str]]:
    """(prefix, rest) at every '/' of `key`, the whole key as rest first."""
    yield "", key
    for at, char in enumerate(key):
        if char == "/":
            yield key[: at + 1], key[at + 1 :]


def suggest(missing: Iterable[str], captions: Collection[str]) -> tuple[CaptionKeys, int] | None:
    """The mapping (strip one key prefix, add another, at '/' boundaries) under which the most of
    `missing` have a caption, and how many; None when no mapping gives any of them one."""
    by_rest: dict[str, list[str]] = defaultdict(list)  # the tail of a caption key -> its heads
    for caption in captions:
        for head, rest in _splits(caption):
            by_rest[rest].append(head)
    votes: Counter[CaptionKeys] = Counter()
    for key in islice(missing, HINT_KEYS_LOOKED_AT):
        found = {
            CaptionKeys(strip, add)
            for strip, rest in _splits(key)
            if len(heads := by_rest.get(rest, ())) <= AMBIGUOUS_TAIL
            for add in heads
        }
        votes.update(found)
    if not votes:
        return None
    # Most keys matched first; then the shortest change (a file name shared by chance loses).
    best = max(votes, key=lambda m: (votes[m], -len(m.strip) - len(m.add), m.strip, m.add))
    return best, votes[best]


def caption_hint(
    missing: Collection[str], captions: Collection[str], current: CaptionKeys, model: str
) -> str | None:
    """One line for a sweep or verify whose keys `missing` got no caption from `model`: which
    mapping would match them, with the options to pass; None when none would."""
    found = suggest(missing, captions)
    if found is None:
        return None
    mapping, matched = found
    example = next(k for k in missing if mapping.lookup(k) in captions)
    looked_at = min(len(missing), HINT_KEYS_LOOKED_AT)
    if mapping == current:  # cannot happen for keys that missed under `current`; kept honest
        return None
    return (
        f"{len(missing)} keys have no caption in model {model!r}, but {matched} of {looked_at} would "
        f"match its captions as {mapping.lookup(example)} for {example}: the model was trained at "
        f"another root; run again with {mapping.flags()}"
    )
