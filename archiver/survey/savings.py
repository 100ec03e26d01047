"""What a group would save per month, and how likely a model is to recall it: the hitlist's two factors.

**Net saving** (`archiver.sweep.cost.net_saving`): storage saved plus egress avoided, minus the
group's model in the vault (each group is trained its own model: `model_bytes`, the size of
`--model` or of the example's), minus the renders its CDN misses cause (a render's wall time
measured on this device for `--model`, else `cost_render_seconds`), minus the vault's requests.
A group that loses money says so; the rank puts every group that pays before every one that loses.

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

from archiver.sweep.cost import GB, Compute, NetSaving, Prices, estimate, net_saving

FULL_VARIANTS_LOG2 = 5  # 32 variants
# The shipped example model's warm 1-step render on 2 CPU cores (docs/architecture.md, "What a
# render costs"): the settings' `cost_render_seconds` default, for callers that pass no measurement.
EXAMPLE_RENDER = Compute(0.0389, 2, 0.04, "assumed: the example model's 1-step render on 2 CPU cores", 1)


@dataclass(frozen=True)
class PriceTerms:
    prices: Prices
    vault_class: str
    pack_threshold: int
    pack_target: int
    egress_price: float = 0.09  # USD per GB the origin sends (AWS's first internet egress tier)
    cdn_offload: float = 0.9  # share of requests the CDN answers from its cache
    # What rehydrating a group costs: one render per CDN miss, and its own model in the vault.
    compute: Compute = EXAMPLE_RENDER
    model_bytes: int = 6_175_196  # the shipped example model
    journal_class: str = "STANDARD"
    vault_read_share: float = 0.01


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
    net: NetSaving

    @property
    def monthly(self) -> float:
        """The gross saving: storage and traffic, before what rehydration costs (`net`)."""
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
    misses = 1.0 - terms.cdn_offload
    traffic = sent * misses / GB * terms.egress_price
    net = net_saving(
        storage=row,
        egress_avoided=traffic,
        renders_monthly=requests * misses,
        compute=terms.compute,
        model_bytes=terms.model_bytes,
        model_share=1.0 if sizes else 0.0,  # a group is its own model's only user
        prices=terms.prices,
        journal_class=terms.journal_class,
        vault_read_share=terms.vault_read_share,
    )
    return Saving(
        storage_monthly=row.saving_monthly,
        hot_monthly=row.hot_monthly,
        archive_monthly=row.archive_monthly,
        minimum_commitment=row.minimum_commitment,
        archive_objects=row.objects,
        requests_monthly=requests,
        bytes_monthly=sent,
        traffic_monthly=traffic,
        net=net,
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
