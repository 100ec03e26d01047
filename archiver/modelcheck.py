"""Does this machine render a model's records as the records promise? A sample, rendered and judged.

Owns `check_model`: render a sample of a model's archived records here (through the reader, which
knows how to render and judge one), classify each as exact, within the sketch's tolerance, or
refused (another image, or other bytes and no sketch to tell), with the estimated PSNR, and record
the result against this device's fingerprint (`archiver.stack.device_fingerprint`) in the catalog,
where `archiver status` lists it. Records without a sketch get one from an exact render here (the
backfill). `archiver model check` runs it before a mount or an origin moves to new hardware; the
mount and the origin run it on a few records the first time a device renders a model
(`check_first_use`, hooked to the reader's `on_model_loaded`).

It serves nothing and changes no asset's state: a refused render is reported, never stored.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import DeviceCheck, Model
from archiver.errors import IntegrityError
from archiver.sweep.cost import Compute, ComputePrices

if TYPE_CHECKING:
    from archiver.read.reader import ArchivedAsset, AssetReader

log = logging.getLogger(__name__)

Outcome = Literal["exact", "within-tolerance", "refused"]
RENDER_WAIT_SECONDS = 300  # how long closing waits for a check's render in progress
FIRST_USE_SAMPLE = 3  # records a device renders, the first time it renders a model, to fingerprint itself
CHECK_PAGE = 500  # records read from the catalog at a time by a check of every record


@dataclass(frozen=True)
class CheckedRecord:
    key: str
    outcome: Outcome
    psnr: float | None  # estimated, against the accepted render; None when the bytes were exact
    detail: str = ""  # why it was refused
    backfilled: bool = False  # its sketch was made here, from this exact render


@dataclass
class CheckResult:
    model: str
    fingerprint: str
    device: dict[str, str]
    records: list[CheckedRecord] = field(default_factory=list)
    render_seconds: list[float] = field(default_factory=list)  # each render's wall time, alone
    render_steps: list[int] = field(default_factory=list)
    render_cores: int | None = None  # CPU threads a render held; None on a GPU

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.render_seconds) if self.render_seconds else None

    @property
    def median_steps(self) -> int | None:
        return int(statistics.median_low(self.render_steps)) if self.render_steps else None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.records if r.outcome == outcome)

    @property
    def lowest_psnr(self) -> float | None:
        values = [r.psnr for r in self.records if r.psnr is not None]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fingerprint": self.fingerprint,
            "device": self.device,
            "sampled": len(self.records),
            "exact": self.count("exact"),
            "within_tolerance": self.count("within-tolerance"),
            "refused": self.count("refused"),
            "backfilled": sum(r.backfilled for r in self.records),
            "lowest_psnr": self.lowest_psnr,
            "render_seconds": self.median_seconds,
            "render_steps": self.median_steps,
            "render_cores": self.render_cores,
            "records": [
                {
                    "key": r.key,
                    "outcome": r.outcome,
                    "psnr": r.psnr,
                    "detail": r.detail,
                    "backfilled": r.backfilled,
                }
                for r in self.records
            ],
        }


def device_check_report(row: DeviceCheck) -> dict[str, Any]:
    """A stored device check as `archiver status` and `archiver show` print it (JSON)."""
    return {
        "model": row.model.name,
        "fingerprint": row.fingerprint,
        "device": dict(row.device),
        "checked_at": row.checked_at.isoformat(),
        "sampled": row.sampled,
        "exact": row.exact,
        "within_tolerance": row.within,
        "refused": row.refused,
        "lowest_psnr": row.lowest_psnr,
        "render_seconds": row.render_seconds,
        "render_steps": row.render_steps,
        "render_cores": row.render_cores,
    }


def describe_device(doc: Mapping[str, str]) -> str:
    """A fingerprint in a few words: "AMD EPYC (cpu, float32, AVX512)"."""
    return f"{doc.get('device_name')} ({doc.get('device')}, {doc.get('dtype')}, {doc.get('cpu_capability')})"


def this_device(reader: AssetReader) -> tuple[str, dict[str, str]]:
    """(fingerprint id, document) of the device the reader renders on, with the dtype it loads."""
    from archiver.stack import device_fingerprint, fingerprint_id

    # registry.load_model: float16 on CUDA, float32 on the CPU.
    doc = device_fingerprint(reader.device, "float16" if reader.device.startswith("cuda") else "float32")
    return fingerprint_id(doc), doc


def check_model(
    catalog: Catalog,
    reader: AssetReader,
    model_name: str,
    *,
    sample: int | None,
    backfill: bool = False,
    progress: Callable[[CheckedRecord], None] | None = None,
    stop: threading.Event | None = None,
) -> CheckResult:
    """Render `sample` records of the model (all with None; with `backfill`, every record that has
    no sketch yet) here, judge each, store the result for this device, and return it."""
    from archiver.gate import sketch as render_sketch
    from archiver.read.reader import judge_render

    with catalog.begin() as session:
        model_id = queries.get_model(session, model_name).id
    fingerprint, device = this_device(reader)
    result = CheckResult(model_name, fingerprint, device, render_cores=_render_cores(reader.device))
    for asset in _records(catalog, model_id, sample=sample, unsketched=backfill):
        if stop is not None and stop.is_set():
            return result  # stopped between renders: a partial sample is not recorded
        pixels, data, timed = reader.timed_render(asset)
        result.render_seconds.append(timed.seconds)
        result.render_steps.append(timed.steps)
        try:
            how = judge_render(
                data, pixels, asset.rendered_sha256 or "", asset.render_sketch, reader.min_psnr
            )
            checked = CheckedRecord(asset.key, how.mode, how.psnr)  # type: ignore[arg-type]
            if how.mode == "exact" and asset.render_sketch is None and asset.has_record:
                reader.backfill_sketch(asset.asset_id, pixels)
                checked = CheckedRecord(asset.key, "exact", None, backfilled=True)
        except IntegrityError as refused:
            psnr = None
            if asset.render_sketch is not None:
                psnr = render_sketch.estimated_psnr(asset.render_sketch, pixels)
            checked = CheckedRecord(asset.key, "refused", psnr, str(refused))
        result.records.append(checked)
        if progress is not None:
            progress(checked)
    if result.records:
        with catalog.begin() as session:
            row = session.get(Model, model_id)
            assert row is not None
            queries.save_device_check(
                session,
                row,
                fingerprint,
                device,
                sampled=len(result.records),
                exact=result.count("exact"),
                within=result.count("within-tolerance"),
                refused=result.count("refused"),
                lowest_psnr=result.lowest_psnr,
                render_seconds=result.median_seconds,
                render_steps=result.median_steps,
                render_cores=result.render_cores,
            )
    return result


def _render_cores(device: str) -> int | None:
    """The CPU threads a render holds here (each holds a core: `cpuslots`); None on a GPU."""
    if device.startswith("cuda"):
        return None
    import torch

    return torch.get_num_threads()


def measured_compute(
    catalog: Catalog, model_name: str, device: str, prices: ComputePrices, fallback: Compute
) -> Compute:
    """What one render of `model_name`'s records costs on `device`: the render time its last device
    check measured here, priced per core-hour (CPU) or GPU-hour; `fallback` where none was."""
    from archiver.stack import device_fingerprint, fingerprint_id

    doc = device_fingerprint(device, "float16" if device.startswith("cuda") else "float32")
    with catalog.begin() as session:
        model = queries.get_model(session, model_name)
        row = queries.device_check(session, model.id, fingerprint_id(doc))
        if row is None or row.render_seconds is None:
            return fallback
        gpu = device.startswith("cuda")
        return Compute(
            seconds=row.render_seconds,
            cores=None if gpu else row.render_cores,
            price_per_hour=prices.gpu_hour if gpu else prices.cpu_core_hour,
            source=f"measured by `model check` here, {row.checked_at:%Y-%m-%d}, "
            f"{row.sampled} renders, median",
            steps=row.render_steps,
        )


def _records(
    catalog: Catalog, model_id: int, *, sample: int | None, unsketched: bool
) -> Iterator[ArchivedAsset]:
    """The records a check renders, read a page at a time: a check of every record of a large model
    never holds them all (a sample is `sample` rows)."""
    from archiver.read.reader import snapshot

    if sample is not None:
        with catalog.begin() as session:
            model = session.get(Model, model_id)
            assert model is not None
            picked = [
                snapshot(a)
                for a in queries.sample_records_to_check(session, model, sample=sample, unsketched=unsketched)
            ]
        yield from picked
        return
    after = 0
    while True:
        with catalog.begin() as session:
            model = session.get(Model, model_id)
            assert model is not None
            page = [
                snapshot(a)
                for a in queries.records_to_check_after(
                    session, model, unsketched=unsketched, after_id=after, limit=CHECK_PAGE
                )
            ]
        if not page:
            return
        yield from page
        after = page[-1].asset_id


def first_use_check(
    catalog: Catalog, reader: AssetReader, model: Model, stop: threading.Event | None = None
) -> CheckResult | None:
    """The check on FIRST_USE_SAMPLE records, if this device has never been checked with `model`."""
    fingerprint, _ = this_device(reader)
    with catalog.begin() as session:
        if queries.device_check(session, model.id, fingerprint) is not None:
            return None
    result = check_model(catalog, reader, model.name, sample=FIRST_USE_SAMPLE, stop=stop)
    if stop is not None and stop.is_set():
        return None
    level = logging.WARNING if result.count("refused") else logging.INFO
    log.log(
        level,
        "model %s on this device (%s…): %d exact, %d within tolerance, %d refused of %d sampled%s",
        model.name,
        fingerprint[:12],
        result.count("exact"),
        result.count("within-tolerance"),
        result.count("refused"),
        len(result.records),
        f", lowest {result.lowest_psnr:.1f} dB" if result.lowest_psnr is not None else "",
    )
    return result


def check_first_use(catalog: Catalog, reader: AssetReader) -> None:
    """Hook `first_use_check` to `reader`: each model it loads is checked in a background thread,
    whose renders take the reader's render lock in turn with reads (a read never waits for the
    whole check, only for the render in progress). `reader.close()` stops the checks between two
    renders and waits for the one in progress."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def check(model: Model) -> None:
        try:
            first_use_check(catalog, reader, model, stop)
        except Exception as exc:  # a check that cannot run changes nothing served
            log.warning("the first-use check of model %s on this device failed: %s", model.name, exc)

    def start(model: Model) -> None:
        thread = threading.Thread(target=check, args=(model,), name=f"device-check-{model.name}", daemon=True)
        threads.append(thread)
        thread.start()

    def close() -> None:
        stop.set()
        for thread in threads:
            thread.join(RENDER_WAIT_SECONDS)

    reader.on_model_loaded, reader.on_close = start, close
