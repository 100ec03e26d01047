"""What a group would save per month, and how likely a model is to recall it: the hitlist's two factors.

**Storage**: the core's originals at the hot class (STANDARD) minus the same originals in the vault
class, packed and billed as `archiver.sweep.cost.estimate` models a sweep (per-object overheads,
minimum billable sizes); the minimum-duration commitment is shown beside it. A local directory is
priced as if it were STANDARD.

**Traffic** (only with an access log): the core's bytes served per month, times the share that misses
the CDN's cache (1 - `cdn_offload`), times `egress_price` per GB: what the origin sends across the
middle mile today and what an edge that rehydrates the group from its records (`archiver edge`)
would not.

**Recall score**, 0..1: core fraction (members a single model can be trained on) x (0.5 + 0.5 x
similarity) x variants, where variants = min(1, log2(core members) / 5) (32 near-identical
variants or more count fully; one counts nothing). The rank is by saving x recall; both are shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from archiver.sweep.cost import GB, Prices, estimate

FULL_VARIANTS_LOG2 = 5  # 32 variants


@dataclass(frozen=True)
class PriceTerms:
    prices: Prices
    vault_class: str
    pack_threshold: int
    pack_target: int
    egress_price: float = 0.09  # USD per GB the origin sends (AWS's first internet egress tier)
    cdn_offload: float = 0.9  # share of requests the CDN answers from its cache


@dataclass(frozen=True)
class Saving:
    storage_monthly: float
    hot_monthly: float
    archive_monthly: float
    minimum_commitment: float
    archive_objects: int
    requests_monthly: float
    bytes_monthly: float
    traffic_monthly: float

    @property
    def monthly(self) -> float:
        return self.storage_monthly + self.traffic_monthly


def saving(sizes: Sequence[int], requests: float, sent: float, terms: PriceTerms) -> Saving:
    """The monthly saving of archiving originals of `sizes` that are requested `requests` times
    and send `sent` bytes a month."""
    (row,) = [
        r
        for r in estimate(
            sizes, terms.prices, pack_threshold=terms.pack_threshold, pack_target=terms.pack_target
        )
        if r.vault_class == terms.vault_class
    ]
    traffic = sent * (1.0 - terms.cdn_offload) / GB * terms.egress_price
    return Saving(
        storage_monthly=row.saving_monthly,
        hot_monthly=row.hot_monthly,
        archive_monthly=row.archive_monthly,
        minimum_commitment=row.minimum_commitment,
        archive_objects=row.objects,
        requests_monthly=requests,
        bytes_monthly=sent,
        traffic_monthly=traffic,
    )


@dataclass(frozen=True)
class Recall:
    core_fraction: float
    similarity: float
    variants: float

    @property
    def score(self) -> float:
        return self.core_fraction * (0.5 + 0.5 * self.similarity) * self.variants


def recall(images: int, core: int, similarity: float) -> Recall:
    variants = min(1.0, math.log2(core) / FULL_VARIANTS_LOG2) if core > 0 else 0.0
    return Recall(core / images if images else 0.0, similarity, variants)
