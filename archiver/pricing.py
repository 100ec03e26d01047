"""The cost model priced for this installation: the prices and assumptions in the settings, and,
for a named model, what the catalog knows of it (its files' bytes, its records, the render time its
device check measured here). What the sweep's summary, its dry run and the survey show; the
arithmetic itself is `archiver.sweep.cost`'s (pure, no I/O). Opens the catalog only when a model is
named; writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from archiver.catalog.database import Catalog
from archiver.settings import Settings
from archiver.sweep.cost import (
    GB,
    ClassEstimate,
    Compute,
    ComputePrices,
    NetSaving,
    Prices,
    estimate,
    net_saving,
)


class Pricing:
    """Prices and costs from `settings`; `catalog` opens the catalog when a model's figures are asked."""

    def __init__(self, settings: Settings, catalog: Callable[[], Catalog]) -> None:
        self.settings, self._catalog = settings, catalog

    def prices(self) -> Prices:
        s = self.settings
        return Prices(
            standard=s.price_standard,
            glacier_ir=s.price_glacier_ir,
            glacier=s.price_glacier,
            deep_archive=s.price_deep_archive,
        )

    def compute(self, model_name: str | None) -> Compute:
        """What one render costs here: `model_name`'s render time as its device check measured it on
        the configured device, else the `cost_render_seconds` assumption (said so in its `source`)."""
        s = self.settings
        prices = ComputePrices(cpu_core_hour=s.price_cpu_core_hour, gpu_hour=s.price_gpu_hour)
        hint = (
            f"`archiver model check {model_name}` measures it"
            if model_name
            else "`--model NAME` for a model's"
        )
        fallback = Compute(
            seconds=s.cost_render_seconds,
            cores=s.cost_render_cores,
            price_per_hour=prices.cpu_core_hour,
            source=f"assumed (cost_render_seconds: the example model's 1-step render on 2 CPU cores); {hint}",
        )
        if model_name is None:
            return fallback
        from archiver.modelcheck import measured_compute

        return measured_compute(self._catalog(), model_name, s.resolved_device(), prices, fallback)

    def model_bytes(self, model_name: str) -> int:
        """The bytes of a registered model's files (what the vault keeps of it)."""
        from archiver.catalog.queries import get_model
        from archiver.engine.registry import model_files

        with self._catalog().begin() as session:
            path = Path(get_model(session, model_name).path)
        return sum(file.stat().st_size for file in model_files(path))

    def records_of(self, model_name: str) -> int:
        from archiver.catalog.queries import model_record_count

        with self._catalog().begin() as session:
            return model_record_count(session, model_name)

    def estimate(self, sizes: list[int]) -> list[ClassEstimate]:
        """Archiving originals of `sizes`, priced in every vault class."""
        s = self.settings
        return estimate(sizes, self.prices(), pack_threshold=s.pack_threshold, pack_target=s.pack_target)

    def storage_row(self, sizes: list[int]) -> ClassEstimate:
        """The storage estimate for originals of `sizes` in the configured vault class."""
        (row,) = [r for r in self.estimate(sizes) if r.vault_class == self.settings.vault_storage_class]
        return row

    def net(self, storage: ClassEstimate, model_name: str, *, images_of_model: int) -> NetSaving:
        """The net saving of what `storage` prices, rehydrated by `model_name`, which would then render
        `images_of_model` records in all (this set's share of its model is storage.originals /
        images_of_model). A sweep has no request counts: `cost_misses_per_image` CDN misses per image
        a month, each a render that sends the original."""
        s = self.settings
        misses = storage.originals * s.cost_misses_per_image
        sent = storage.original_bytes * s.cost_misses_per_image
        return net_saving(
            storage=storage,
            egress_avoided=sent / GB * s.price_egress,
            renders_monthly=misses,
            compute=self.compute(model_name),
            model_bytes=self.model_bytes(model_name),
            model_share=storage.originals / images_of_model if images_of_model else 0.0,
            prices=self.prices(),
            journal_class=s.vault_journal_storage_class,
            vault_read_share=s.cost_vault_read_share,
        )
