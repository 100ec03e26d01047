"""What archiving costs and saves: every term, priced in one place for the dry run, the sweep's
summary, the survey and the docs.

Owns the price tables, the per-class billing terms and the arithmetic; it does no I/O and knows
nothing of stores or the catalog (callers hand in sizes, traffic, the model's bytes and a measured
render time). Two layers:

- `estimate`: storage alone, per vault class (the originals hot now against archived).
- `net_saving`: every term a month of rehydration brings (section "The net saving" below).

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

The net saving (`net_saving`), per month, for a set of originals rehydrated by one model:

    + storage saved      hot minus archived, as `estimate` bills it
    + egress avoided     bytes the origin sends on CDN misses, at the egress price (an edge that
                         rehydrates from records sends none)
    - model storage      the model's bytes in the vault at the journal's class (STANDARD), times
                         this set's share of the model's records
    - render compute     a render per CDN miss, times the render's wall time measured on the
                         configured device (`archiver model check`, the first-use check), times
                         the cores it holds, times the core-hour price (CPU), or times the
                         GPU-hour price (GPU)
    - requests           the archive objects' and journal entries' PUTs, spread over the class's
                         minimum duration; and the reads that fall back to the vault original
                         (`vault_read_share` of the misses): a restore request and its retrieval
                         per GB (GLACIER, DEEP_ARCHIVE: Standard tier) or a GET (GLACIER_IR)

The break-even render time is the render wall time at which the net saving is zero: renders must
take less to save money. Request prices (USD per 1,000 requests, AWS us-east-1 list prices, the
S3 pricing page as known here; check them): PUT STANDARD 0.005, GLACIER_IR 0.02, GLACIER 0.03,
DEEP_ARCHIVE 0.05; GET GLACIER_IR 0.01 plus 0.03 per GB retrieved; restore (Standard tier) GLACIER
0.05 plus 0.01 per GB, DEEP_ARCHIVE 0.10 plus 0.02 per GB.
"""

from __future__ import annotations

import dataclasses
import math
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
    put_per_1000: float = 0.005  # USD per 1,000 PUTs
    read_per_1000: float = 0.0  # USD per 1,000 reads of an original: a GET, or a restore request
    retrieval_per_gb: float = 0.0  # USD per GB a read retrieves


VAULT_TERMS: Mapping[str, ClassTerms] = {
    "GLACIER_IR": ClassTerms(
        minimum_days=90,
        minimum_object_bytes=128 * KIB,
        put_per_1000=0.02,
        read_per_1000=0.01,
        retrieval_per_gb=0.03,
    ),
    "GLACIER": ClassTerms(
        minimum_days=90,
        archive_overhead_bytes=32 * KIB,
        standard_overhead_bytes=8 * KIB,
        put_per_1000=0.03,
        read_per_1000=0.05,
        retrieval_per_gb=0.01,
    ),
    "DEEP_ARCHIVE": ClassTerms(
        minimum_days=180,
        archive_overhead_bytes=32 * KIB,
        standard_overhead_bytes=8 * KIB,
        put_per_1000=0.05,
        read_per_1000=0.10,
        retrieval_per_gb=0.02,
    ),
}
# The journal and models' classes (`vault_journal_storage_class`): read with a plain GET.
JOURNAL_TERMS: Mapping[str, ClassTerms] = {
    "STANDARD": ClassTerms(minimum_days=0, put_per_1000=0.005),
    "GLACIER_IR": VAULT_TERMS["GLACIER_IR"],
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


@dataclass(frozen=True)
class ComputePrices:
    """USD per hour of compute that renders pay (on-demand list prices; settings override them)."""

    cpu_core_hour: float = 0.04  # a vCPU-hour, general-purpose on-demand instances
    gpu_hour: float = 0.70  # an NVIDIA L4 on demand


@dataclass(frozen=True)
class Compute:
    """What one render costs on a device: its wall time, the cores it holds, the price of an hour."""

    seconds: float  # wall time of one render
    cores: int | None  # CPU cores (torch threads) a render holds; None on a GPU
    price_per_hour: float  # USD per core-hour (CPU) or per GPU-hour (GPU)
    source: str  # where `seconds` comes from, in words ("measured by `model check` on ...")
    steps: int | None = None  # the denoising steps it was measured at, when known

    @property
    def per_second(self) -> float:
        """USD one second of a render costs here."""
        return self.price_per_hour / 3600 * (self.cores if self.cores is not None else 1)

    @property
    def per_render(self) -> float:
        return self.seconds * self.per_second


@dataclass(frozen=True)
class NetSaving:
    """Every monthly term of archiving a set of originals (USD, 30 days), and what it nets."""

    images: int
    original_bytes: int
    storage_saved: float
    egress_avoided: float
    model_storage: float  # this set's share of its model's bytes in the vault
    render_compute: float
    requests: float
    renders_monthly: float  # CDN misses: each is a render
    model_bytes: int
    model_share: float  # 0..1: this set's share of the model's records
    compute: Compute

    @property
    def net(self) -> float:
        return (
            self.storage_saved
            + self.egress_avoided
            - self.model_storage
            - self.render_compute
            - self.requests
        )

    @property
    def loses_money(self) -> bool:
        return self.net < 0

    @property
    def break_even_seconds(self) -> float | None:
        """The render wall time at which the net saving is zero on this device's price: renders
        must take less. 0.0 when the set loses money however fast it renders; None when no render
        is counted (no traffic), so render time does not matter."""
        if self.renders_monthly <= 0:
            return None
        before_compute = self.net + self.render_compute
        return max(before_compute, 0.0) / (self.renders_monthly * self.compute.per_second)

    @property
    def per_million_images(self) -> float:
        """The net saving scaled to 1,000,000 images like these, each set with its model as here."""
        return self.net / self.images * 1e6 if self.images else 0.0

    def terms(self) -> dict[str, float]:
        """The signed terms in the order they are shown: savings positive, costs negative."""
        return {
            "storage saved": self.storage_saved,
            "egress avoided": self.egress_avoided,
            "model storage": -self.model_storage,
            "render compute": -self.render_compute,
            "requests": -self.requests,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "original_bytes": self.original_bytes,
            "storage_saved_monthly": self.storage_saved,
            "egress_avoided_monthly": self.egress_avoided,
            "model_storage_monthly": self.model_storage,
            "render_compute_monthly": self.render_compute,
            "requests_monthly": self.requests,
            "net_monthly": self.net,
            "net_per_million_images_monthly": self.per_million_images,
            "loses_money": self.loses_money,
            "renders_monthly": self.renders_monthly,
            "render_seconds": self.compute.seconds,
            "render_cores": self.compute.cores,
            "render_steps": self.compute.steps,
            "render_price_per_hour": self.compute.price_per_hour,
            "render_source": self.compute.source,
            "break_even_render_seconds": self.break_even_seconds,
            "model_bytes": self.model_bytes,
            "model_share": self.model_share,
        }


def net_saving(
    *,
    storage: ClassEstimate,
    egress_avoided: float,
    renders_monthly: float,
    compute: Compute,
    model_bytes: int,
    model_share: float,
    prices: Prices = DEFAULT_PRICES,
    journal_class: str = "STANDARD",
    vault_read_share: float = 0.0,
) -> NetSaving:
    """The net monthly saving of archiving what `storage` (one `estimate` row) prices, whose CDN
    misses cause `renders_monthly` renders at `compute` each, rehydrated by a model of
    `model_bytes` of which this set bears `model_share`; `vault_read_share` of the misses read
    the original from the vault instead."""
    if not 0.0 <= model_share <= 1.0:
        raise ValueError(f"a model share is between 0 and 1, not {model_share}")
    if journal_class not in JOURNAL_TERMS:
        raise ConfigError(
            f"no request prices for journal class {journal_class!r}: use STANDARD or GLACIER_IR"
        )
    vault = VAULT_TERMS[storage.vault_class]
    journal = JOURNAL_TERMS[journal_class]
    model_storage = model_bytes / GB * prices.rate(journal_class) * model_share
    # One-time PUTs (each archive object, each record's journal entry), spread over the months the
    # class must be paid for anyway; a class without a minimum spreads them over one month.
    months = max(vault.minimum_days / DAYS_PER_MONTH, 1.0)
    puts = (storage.objects * vault.put_per_1000 + storage.originals * journal.put_per_1000) / 1000 / months
    mean_bytes = storage.original_bytes / storage.originals if storage.originals else 0.0
    vault_reads = renders_monthly * vault_read_share
    reads = vault_reads * (vault.read_per_1000 / 1000 + mean_bytes / GB * vault.retrieval_per_gb)
    return NetSaving(
        images=storage.originals,
        original_bytes=storage.original_bytes,
        storage_saved=storage.saving_monthly,
        egress_avoided=egress_avoided,
        model_storage=model_storage,
        render_compute=renders_monthly * compute.per_render,
        requests=puts + reads,
        renders_monthly=renders_monthly,
        model_bytes=model_bytes,
        model_share=model_share,
        compute=compute,
    )


def usd(amount: float) -> str:
    """An amount a person can read: cents for a dollar and up, else three significant digits
    ("$0.000139", not "$0.000000" or "1.39e-04"); a cost shows its minus sign."""
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value >= 1 or value == 0:
        return f"{sign}${value:,.2f}"
    digits = 2 - math.floor(math.log10(value))
    return f"{sign}${value:.{digits}f}"


def break_even(seconds: float | None, *, short: bool = False) -> str:
    """`NetSaving.break_even_seconds` in words (`short`: for a table cell)."""
    if seconds is None:
        return "any" if short else "any render time (no render counted: no traffic)"
    if seconds <= 0:
        return "never" if short else "none: it loses money however fast renders are"
    ms = f"{seconds * 1000:,.1f} ms"
    return f"< {ms}" if short else f"renders must take under {ms} on this device to save money"


def verdict_line(net: NetSaving) -> str:
    """One plain line: whether the set saves or loses money, and the break-even render time."""
    if net.images == 0:
        return "nothing archived, nothing saved or spent"
    if net.loses_money and not net.break_even_seconds:
        return (
            f"loses {usd(-net.net)} a month at any render speed: its model and requests cost more than "
            "the storage and egress it saves"
        )
    verdict = "loses" if net.loses_money else "saves"
    return f"{verdict} {usd(abs(net.net))} a month; {break_even(net.break_even_seconds)}"


def _check_plan_args(sizes: Sequence[int], pack_threshold: int, pack_target: int) -> None:
    if pack_threshold < 0:
        raise ConfigError(f"the pack threshold must not be negative, not {pack_threshold} bytes")
    if pack_target <= 0:
        raise ConfigError(f"the pack target must be a positive number of bytes, not {pack_target}")
    if any(size < 0 for size in sizes):
        raise ValueError("object sizes must not be negative")
