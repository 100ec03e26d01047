"""One candidate group, streamed: its near-identical core, its outliers, and what it adds up to.

Members arrive one at a time in key order. The first `REFERENCE_SAMPLE` are held; from them the
reference is chosen: the member with the most others within tolerance (ties: the smaller summed
distance), a medoid that outliers cannot drag. Then every member, held or later, is judged
against the exemplars (the reference and the held members within tolerance of it): *core* if, for
some exemplar, its pHash is within `HASH_TOLERANCE` bits and its dense descriptor within
`DENSE_TOLERANCE` (cosine distance), else an *outlier*. Both measures are needed:
pure noise images hash far apart but pool to near-identical dense features, and colour variants of
one product move the dense features more than their hash.

Tolerances, measured on the rumba catalogue (48 colourways of one shoe, 64 x 64) against noise and
random shapes: every colourway lies within 16 bits and 0.20 of the catalogue's medoid (pairs of
colourways up to 22 bits and 0.22 apart); noise is 20-40 bits from anything, random shapes 24-48
bits, and the shoe's dense distance to either is >= 0.44.

Memory per candidate is bounded: the held sample, `MAX_NAMED_OUTLIERS` outlier names, the key
positions (`keys.Positions`) and counters. Each judged member is handed to `on_member`, which spools
it to disk (`run`), so nothing here grows with the number of members.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from archiver.survey.describe import Descriptor
from archiver.survey.keys import Positions, Shape

REFERENCE_SAMPLE = 32
HASH_TOLERANCE = 16  # bits of 64
DENSE_TOLERANCE = 0.30  # cosine distance of the unit dense descriptors
MAX_NAMED_OUTLIERS = 50
MAX_LABELS = 8  # distinct formats / metadata labels counted per candidate; the rest count as "other"


@dataclass(frozen=True)
class CandidateKey:
    shape: Shape
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class Judged:
    """One member after judgment; what `on_member` receives."""

    candidate: int
    key: str
    size: int
    core: bool
    hash_bits: int
    dense: float | None


OnMember = Callable[[Judged], None]


@dataclass
class Candidate:
    """The running state of one candidate group (see the module docstring)."""

    id: int
    key: CandidateKey
    on_member: OnMember
    held: list[tuple[Descriptor, list[str]]] = field(default_factory=list)
    reference: Descriptor | None = None
    images: int = 0
    bytes: int = 0
    core: int = 0
    core_bytes: int = 0
    hash_sum: int = 0
    dense_sum: float = 0.0
    outliers: int = 0
    named_outliers: list[tuple[str, int, float | None]] = field(default_factory=list)
    _exemplar_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    _exemplar_dense: np.ndarray | None = None
    positions: Positions = field(default_factory=Positions)
    formats: Counter[str] = field(default_factory=Counter)
    metadata: Counter[str] = field(default_factory=Counter)
    sample_keys: list[str] = field(default_factory=list)  # the reference and core members, for thumbnails

    def add(self, descriptor: Descriptor, words: list[str], fmt: str, metadata: str) -> None:
        self.images += 1
        self.bytes += descriptor.size
        self.positions.add(words)
        _count(self.formats, fmt)
        _count(self.metadata, metadata)
        if self.reference is None:
            self.held.append((descriptor, words))
            if len(self.held) >= REFERENCE_SAMPLE:
                self._choose_reference()
        else:
            self._judge(descriptor, words)

    def close(self) -> None:
        """Judge what is still held (a candidate smaller than the sample)."""
        if self.reference is None and self.held:
            self._choose_reference()

    def _choose_reference(self) -> None:
        members = [d for d, _ in self.held]
        hashes = np.array([d.phash for d in members], dtype=np.uint64)
        bits = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.int64)
        within = bits <= HASH_TOLERANCE
        spread = bits / 64.0
        dense: np.ndarray | None = None
        if members[0].dense is not None:
            dense = np.stack([d.dense for d in members if d.dense is not None]).astype(np.float32)
            distance = 1.0 - dense @ dense.T
            within &= distance <= DENSE_TOLERANCE
            spread = spread + distance
        neighbours = within.sum(axis=1)
        best = max(range(len(members)), key=lambda i: (int(neighbours[i]), -float(spread[i].sum()), -i))
        self.reference = members[best]
        # The exemplars: the reference and the held members within tolerance of it. A later member
        # is judged against the nearest of them, so a group's reach is its core's, not one image's.
        near = [i for i in range(len(members)) if within[best, i]]
        self._exemplar_hashes = hashes[near]
        self._exemplar_dense = dense[near] if dense is not None else None
        held, self.held = self.held, []
        for descriptor, words in held:
            self._judge(descriptor, words)

    def _judge(self, descriptor: Descriptor, words: list[str]) -> None:
        assert self.reference is not None
        bits_all = np.bitwise_count(self._exemplar_hashes ^ np.uint64(descriptor.phash)).astype(np.int64)
        within = bits_all <= HASH_TOLERANCE
        dense: float | None = None
        if descriptor.dense is not None and self._exemplar_dense is not None:
            dense_all = np.maximum(0.0, 1.0 - self._exemplar_dense @ descriptor.dense.astype(np.float32))
            within &= dense_all <= DENSE_TOLERANCE
            # the nearest exemplar within tolerance if there is one, else the nearest by hash
            nearest = int(np.argmax(within)) if within.any() else int(np.argmin(bits_all))
            dense = float(dense_all[nearest])
        else:
            nearest = int(np.argmax(within)) if within.any() else int(np.argmin(bits_all))
        bits = int(bits_all[nearest])
        core = bool(within.any())
        if core:
            self.core += 1
            self.core_bytes += descriptor.size
            self.hash_sum += bits
            self.dense_sum += dense or 0.0
            if len(self.sample_keys) < 64:
                self.sample_keys.append(descriptor.key)
        else:
            self.outliers += 1
            if len(self.named_outliers) < MAX_NAMED_OUTLIERS:
                self.named_outliers.append((descriptor.key, bits, dense))
        self.on_member(Judged(self.id, descriptor.key, descriptor.size, core, bits, dense))

    def similarity(self) -> float:
        """How alike the core is, 0..1: 1 - the mean of each member's distance to the reference as
        a fraction of the tolerance (the larger of the hash and dense fractions)."""
        if not self.core:
            return 0.0
        hash_part = self.hash_sum / self.core / HASH_TOLERANCE
        dense_part = self.dense_sum / self.core / DENSE_TOLERANCE
        return max(0.0, 1.0 - max(hash_part, dense_part))

    def template(self) -> str:
        return self.positions.template(self.key.shape)

    def variables(self) -> list[tuple[int, str, list[str], bool]]:
        return self.positions.variables(self.key.shape)


def _count(counter: Counter[str], label: str) -> None:
    if label in counter or len(counter) < MAX_LABELS:
        counter[label] += 1
    else:
        counter["other"] += 1
