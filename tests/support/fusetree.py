"""Catalog rows for the tree and read-policy tests, written through the catalog queries: an
archived asset with a record (`add`), one whose original sits in a real local vault
(`archived_with_vault_copy`), and a real `AssetReader` whose render step is scripted."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime

from PIL import Image

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import AssetState
from archiver.read.reader import ArchivedAsset, AssetReader
from archiver.storage import Vault
from fusefs.tree import FileEntry, Tree

WHEN = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)


def add(
    catalog: Catalog,
    url: str,
    key: str,
    *,
    size: int = 1000,
    state: AssetState = AssetState.ARCHIVED,
    when: datetime = WHEN,
) -> int:
    """One asset in `state` with a record, inserted through the catalog queries."""
    with catalog.begin() as session:
        source = queries.get_or_add_source(session, url)
        model = queries.add_model(session, name="tiny", sha256="ab" * 32, path="/m", pipeline_class="P")
        profile = queries.get_or_add_profile(session, "cd" * 32, "PNG", b"{}")
        asset = queries.add_asset(session, source, key=key, size=size + 1, etag=None, last_modified=when)
        asset.sha256 = hashlib.sha256(key.encode()).hexdigest()
        queries.save_record(
            session,
            asset,
            model_id=model.id,
            encoding_profile_id=profile.id,
            pipeline_class="P",
            scheduler_class="S",
            scheduler_config={},
            prompt=f"a photo of {key}",
            seed=7,
            steps=2,
            guidance_scale=1.0,
            width=64,
            height=64,
            dtype="float32",
            rendered_sha256="ef" * 32,
            rendered_size=size,
            gate_report={"metrics": {"lpips": 0.0125}},
            software={},
        )
        queries.set_state(session, asset, state)
        return asset.id


class ScriptedReader(AssetReader):
    """A real AssetReader (vault reads, verification of renders) whose render step is scripted."""

    def __init__(self, catalog: Catalog, vault: Vault, render: Callable[[ArchivedAsset], bytes]) -> None:
        super().__init__(catalog, vault)
        self.scripted = render

    def render(self, asset: ArchivedAsset) -> tuple[Image.Image | None, bytes]:  # type: ignore[override]
        data = self.scripted(asset)
        try:  # the pixels of a scripted PNG are the render's; other scripted bytes have none
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB"), data
        except OSError:
            return None, data


def archived_with_vault_copy(catalog: Catalog, vault: Vault, original: bytes) -> FileEntry:
    """An archived asset whose original sits in the (GLACIER) vault; the record promises b"rendered"."""
    asset_id = add(catalog, "file:///hot", "shoes/red.png")
    copy = vault.put("originals/red.png", original)
    with catalog.begin() as session:
        asset = queries.archived_asset(session, asset_id)
        assert asset is not None and asset.record is not None
        row = queries.add_vault_object(session, **asdict(copy), is_pack=False, confirmed_at=WHEN)
        asset.vault_object_id, asset.sha256, asset.size = row.id, copy.sha256, copy.size
        asset.record.rendered_sha256 = hashlib.sha256(b"rendered").hexdigest()
    return Tree(catalog).file("/shoes/red.png")
