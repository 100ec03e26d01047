"""The dry-run saving estimate: what the candidates cost hot now, and archived in each vault class.

Owns the storage price table, the per-class billing terms and the arithmetic; it does no I/O and
knows nothing of stores or the catalog. Only storage is priced: request, transition and
retrieval fees are not part of the estimate.

Billing model (AWS S3, us-east-1 list prices; check them before relying on them):

=============  ==================  ==========================================  ===============
class          USD per GB-month    per archive object                          minimum storage
=============  ==================  ==========================================  ===============
STANDARD       0.023               —                                           —
GLACIER_IR     0.004               billed as at least 128 KiB                  90 days
GLACIER        0.0036              + 32 KiB at 0.0036 and + 8 KiB at STANDARD  90 days
DEEP_ARCHIVE   0.00099             + 32 KiB at 0.00099 and + 8 KiB at STANDARD 180 days
=============  ==================  ==========================================  ===============

A GB here is 2**30 bytes, as AWS bills it, and a month is 30 days. GLACIER and DEEP_ARCHIVE keep
40 KB of metadata per object (32 KB of index at the archive rate, 8 KB for the name at the
STANDARD rate), which is why small originals are packed (see `archiver.storage.vault_format`).

GLACIER_IR's 128 KiB: AWS's S3 pricing page says "S3 Glacier Instant Retrieval has a minimum
billable object size of 128 KB. Smaller objects may be stored but will be charged for 128 KB of
storage at the appropriate storage class rate." Checked against that text as quoted from the
pricing page (and the storage-class comparison in the S3 user guide, as cited on AWS re:Post),
not against aws.amazon.com itself, which could not be reached from here. The 32 KB + 8 KB
overhead is documented for GLACIER and DEEP_ARCHIVE only (the S3 user guide's page on archival
storage); GLACIER_IR objects are read with a plain GET like STANDARD ones and carry none.

Deleting an object before its minimum duration is billed as if it had stayed that long, so each
row states the minimum commitment: the archive's monthly cost times the minimum in months.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archiver.errors import ConfigError
from archiver.storage.vault_format import pack_groups, pack_size

GB = 2**30  # AWS bills storage in binary gigabytes
KIB = 1024
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Prices:
    """Storage prices in USD per GB-month. Override a rate with e.g. `Prices(deep_archive=0.0018)`."""

    standard: float = 0.023
    glacier_ir: float = 0.004
    glacier: float = 0.0036
    deep_archive: float = 0.00099

    def rate(self, storage_class: str) -> float:
        field_name = storage_class.lower()
        if storage_class != storage_class.upper() or field_name not in _PRICE_FIELDS:
            known = ", ".join(name.upper() for name in _PRICE_FIELDS)
            raise ConfigError(f"no price for storage class {storage_class!r}: use one of {known}")
        rate: float = getattr(self, field_name)
        return rate


_PRICE_FIELDS = frozenset(f.name for f in dataclasses.fields(Prices))
DEFAULT_PRICES = Prices()


@dataclass(frozen=True)
class ClassTerms:
    """How a vault class bills each object, besides its price per GB-month."""

    minimum_days: int  # early deletion is billed as if stored this long
    minimum_object_bytes: int = 0  # smaller objects are billed as this size
    archive_overhead_bytes: int = 0  # added to each object at the class's own rate
    standard_overhead_bytes: int = 0  # added to each object at the STANDARD rate


VAULT_TERMS: Mapping[str, ClassTerms] = {
    "GLACIER_IR": ClassTerms(minimum_days=90, minimum_object_bytes=128 * KIB),
    "GLACIER": ClassTerms(minimum_days=90, archive_overhead_bytes=32 * KIB, standard_overhead_bytes=8 * KIB),
    "DEEP_ARCHIVE": ClassTerms(
        minimum_days=180, archive_overhead_bytes=32 * KIB, standard_overhead_bytes=8 * KIB
    ),
}


@dataclass(frozen=True)
class ClassEstimate:
    """The estimate for one vault class. Amounts are USD; monthly means per 30 days."""

    vault_class: str
    originals: int  # images archived
    objects: int  # archive objects uploaded, after packing
    original_bytes: int  # what the originals occupy hot
    stored_bytes: int  # what the archive objects occupy (packs estimated, see vault_format.pack_size)
    billed_bytes: int  # billed at the class's rate: stored bytes, minimum sizes, 32 KiB overheads
    standard_overhead_bytes: int  # billed at the STANDARD rate: 8 KiB per GLACIER/DEEP_ARCHIVE object
    hot_monthly: float  # the originals at the hot class's rate, now
    archive_monthly: float
    saving_monthly: float  # hot - archive; negative when archiving costs more (not clamped)
    minimum_days: int
    minimum_commitment: float  # archive_monthly * minimum_days / 30: paid even if restored early
    # Months the originals must stay archived before the hot cost avoided pays for the minimum
    # commitment; None when archiving never saves (saving <= 0).
    break_even_months: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_objects(sizes: Sequence[int], pack_threshold: int, pack_target: int) -> list[int]:
    """The sizes of the archive objects a sweep of originals of these `sizes` uploads.

    Each original of at least `pack_threshold` bytes is its own object (in the given order,
    first); smaller ones are packed with `pack_groups` (cut before a pack's originals pass
    `pack_target` bytes), each pack's size estimated by `pack_size` from the uncompressed
    sizes: images barely compress, so this errs a little on the high side.
    """
    _check_plan_args(sizes, pack_threshold, pack_target)
    singles = [size for size in sizes if size >= pack_threshold]
    small = [size for size in sizes if size < pack_threshold]
    pack_sizes = [pack_size([small[index] for index in group]) for group in pack_groups(small, pack_target)]
    return singles + pack_sizes


def estimate(
    sizes: Sequence[int],
    prices: Prices = DEFAULT_PRICES,
    *,
    pack_threshold: int,
    pack_target: int,
    hot_class: str = "STANDARD",
) -> list[ClassEstimate]:
    """One row per vault class (GLACIER_IR, GLACIER, DEEP_ARCHIVE) for archiving originals of
    these `sizes` that now sit in `hot_class`."""
    objects = plan_objects(sizes, pack_threshold, pack_target)
    original_bytes = sum(sizes)
    hot_monthly = original_bytes / GB * prices.rate(hot_class)
    rows = []
    for vault_class, terms in VAULT_TERMS.items():
        billed = sum(max(size, terms.minimum_object_bytes) + terms.archive_overhead_bytes for size in objects)
        standard_overhead = len(objects) * terms.standard_overhead_bytes
        archive_monthly = billed / GB * prices.rate(vault_class) + standard_overhead / GB * prices.rate(
            "STANDARD"
        )
        saving = hot_monthly - archive_monthly
        commitment = archive_monthly * terms.minimum_days / DAYS_PER_MONTH
        rows.append(
            ClassEstimate(
                vault_class=vault_class,
                originals=len(sizes),
                objects=len(objects),
                original_bytes=original_bytes,
                stored_bytes=sum(objects),
                billed_bytes=billed,
                standard_overhead_bytes=standard_overhead,
                hot_monthly=hot_monthly,
                archive_monthly=archive_monthly,
                saving_monthly=saving,
                minimum_days=terms.minimum_days,
                minimum_commitment=commitment,
                # While archived for t months, t <= minimum, the sweep has paid the whole
                # commitment and avoided hot_monthly * t; the two meet at commitment / hot_monthly,
                # which falls inside the minimum exactly when the monthly saving is positive.
                break_even_months=commitment / hot_monthly if saving > 0 else None,
            )
        )
    return rows


def _check_plan_args(sizes: Sequence[int], pack_threshold: int, pack_target: int) -> None:
    if pack_threshold < 0:
        raise ConfigError(f"the pack threshold must not be negative, not {pack_threshold} bytes")
    if pack_target <= 0:
        raise ConfigError(f"the pack target must be a positive number of bytes, not {pack_target}")
    if any(size < 0 for size in sizes):
        raise ValueError("object sizes must not be negative")
