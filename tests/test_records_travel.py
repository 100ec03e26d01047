"""Records that read on other hardware (issue 17): a render whose bytes differ from the record's is
served when its sketch is within the tolerance, under its own hash; another image never is.

Synthetic renders here (a smooth image, a copy with a few pixel values moved by a level or two as
another CPU's kernels move them, and other images); tests/test_records_travel_example.py runs the
shipped example under other CPU code paths through a real mount, a restore and `model check`.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.fusetree import ScriptedReader, archived_with_vault_copy

from archiver.cache import DiskCache
from archiver.catalog import queries
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.models import Record
from archiver.errors import IntegrityError
from archiver.gate import sketch
from archiver.http.origin.metrics import Metrics
from archiver.read.policy import ReadPolicy, Remote
from archiver.read.reader import ArchivedAsset, judge_render
from archiver.storage import open_vault


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def accepted_pixels() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    return np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).clip(0, 255).astype(np.int16)


def drifted_pixels(levels: int = 2, count: int = 300) -> np.ndarray:
    """The accepted render as other kernels give it: `count` values moved by up to `levels`."""
    pixels = accepted_pixels().copy()
    rng = np.random.default_rng(1)
    flat = pixels.reshape(-1)
    where = rng.choice(flat.size, count, replace=False)
    flat[where] = (flat[where] + rng.integers(-levels, levels + 1, count)).clip(0, 255)
    return pixels


ACCEPTED = png(accepted_pixels())
DRIFTED = png(drifted_pixels())
SHA = hashlib.sha256(ACCEPTED).hexdigest()
SKETCH = sketch.sketch(Image.fromarray(accepted_pixels().astype(np.uint8), "RGB"))


def test_exact_bytes_are_exact() -> None:
    how = judge_render(ACCEPTED, None, SHA, SKETCH, sketch.DEFAULT_MIN_PSNR)
    assert (how.mode, how.sha256, how.size, how.psnr) == ("exact", SHA, len(ACCEPTED), None)


def test_drift_of_a_few_levels_is_the_same_image_under_its_own_hash() -> None:
    assert DRIFTED != ACCEPTED
    how = judge_render(DRIFTED, decoded(DRIFTED), SHA, SKETCH, sketch.DEFAULT_MIN_PSNR)
    assert how.mode == "within-tolerance" and how.sha256 == hashlib.sha256(DRIFTED).hexdigest()
    assert how.psnr is not None and how.psnr >= sketch.DEFAULT_MIN_PSNR
    assert how.describe() == f"within-tolerance {how.psnr:.1f} dB"


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda p: p[:, :, [1, 0, 2]], id="colours-swapped"),
        pytest.param(lambda p: np.roll(p, 3, axis=1), id="shifted-3px"),
        pytest.param(lambda p: (p + 6).clip(0, 255), id="brighter-by-6"),
        pytest.param(
            lambda p: np.where(np.arange(64)[None, :, None] < 16, p[:, :, ::-1], p), id="a-band-recoloured"
        ),
        pytest.param(lambda p: np.full_like(p, 128), id="flat-grey"),
    ],
)
def test_another_image_is_refused_with_its_distance(other: object) -> None:
    data = png(other(accepted_pixels()))  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=r"not the record's image: estimated [\d.]+ dB"):
        judge_render(data, decoded(data), SHA, SKETCH, sketch.DEFAULT_MIN_PSNR)


def test_other_bytes_without_a_sketch_are_refused_and_say_what_to_run() -> None:
    with pytest.raises(IntegrityError, match=r"no sketch.*model check NAME --backfill"):
        judge_render(DRIFTED, decoded(DRIFTED), SHA, None, sketch.DEFAULT_MIN_PSNR)


def test_a_sketch_fits_in_128_bytes() -> None:
    assert len(SKETCH) <= 128


# --- through the read policy: a real catalog, local GLACIER vault and disk cache; renders scripted ---


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")


def promise(catalog: Catalog, asset_id: int, rendered: bytes, render_sketch: bytes | None) -> None:
    with catalog.begin() as session:
        asset = queries.archived_asset(session, asset_id)
        assert asset is not None and asset.record is not None
        asset.record.rendered_sha256 = hashlib.sha256(rendered).hexdigest()
        asset.record.rendered_size = len(rendered)
        asset.record.render_sketch = render_sketch


def test_a_drifted_render_is_served_cached_under_its_own_hash_and_rechecked_from_disk(
    catalog: Catalog, tmp_path: Path
) -> None:
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")  # no original can stand in
    entry = archived_with_vault_copy(catalog, vault, b"the original")
    promise(catalog, entry.asset_id, ACCEPTED, SKETCH)
    entry = type(entry)(entry.asset_id, entry.key, len(ACCEPTED), entry.mtime_ns, SHA)
    cache = DiskCache(tmp_path / "cache", 10**6)
    metrics = Metrics()
    policy = ReadPolicy(catalog, ScriptedReader(catalog, vault, lambda a: DRIFTED), cache, observer=metrics)
    served = policy.read(entry)
    drifted_sha = hashlib.sha256(DRIFTED).hexdigest()
    assert served.data == DRIFTED and served.served_from == "rehydrated"
    assert served.verified.mode == "within-tolerance" and served.verified.sha256 == drifted_sha
    assert policy.served_size(entry) == len(DRIFTED)
    assert cache.get(SHA) is None and cache.get(drifted_sha) == DRIFTED  # never under the record's hash
    exposition = metrics.exposition().decode()  # what the origin's /metrics would say
    assert 'archiver_origin_reads_verified_total{mode="within-tolerance"} 1.0' in exposition
    assert "archiver_origin_within_tolerance_psnr_db_count 1.0" in exposition
    policy.shutdown()

    # Another process on this machine: the disk cache answers through the link, the sketch checked again.
    def must_not_render(asset: ArchivedAsset) -> bytes:
        raise AssertionError("rendered although the cache holds the verified render")

    again = ReadPolicy(
        catalog, ScriptedReader(catalog, vault, must_not_render), DiskCache(tmp_path / "cache", 10**6)
    )
    served = again.read(entry)
    assert served.data == DRIFTED and served.verified.mode == "within-tolerance"
    again.shutdown()

    # The record changes its sketch (re-verified elsewhere): the cached render is no longer trusted.
    promise(catalog, entry.asset_id, ACCEPTED, sketch.sketch(Image.new("RGB", (64, 64), "red")))
    third = ReadPolicy(
        catalog, ScriptedReader(catalog, vault, must_not_render), DiskCache(tmp_path / "cache", 10**6)
    )
    with pytest.raises(Remote, match="render failed"):
        third.read(entry)
    third.shutdown()


def test_another_image_is_never_served_and_the_read_falls_back(catalog: Catalog, tmp_path: Path) -> None:
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")
    entry = archived_with_vault_copy(catalog, vault, b"the original")
    promise(catalog, entry.asset_id, ACCEPTED, SKETCH)
    entry = type(entry)(entry.asset_id, entry.key, len(ACCEPTED), entry.mtime_ns, SHA)
    sibling = png(accepted_pixels()[:, :, [2, 1, 0]])
    cache = DiskCache(tmp_path / "cache", 10**6)
    policy = ReadPolicy(catalog, ScriptedReader(catalog, vault, lambda a: sibling), cache)
    with pytest.raises(Remote, match=r"not the record's image: estimated [\d.]+ dB"):
        policy.read(entry)
    assert cache.get(hashlib.sha256(sibling).hexdigest()) is None and cache.get_linked(SHA) is None
    policy.shutdown()


def test_the_first_exact_render_backfills_a_record_without_a_sketch(catalog: Catalog, tmp_path: Path) -> None:
    vault = open_vault(str(tmp_path / "vault"), "GLACIER")
    entry = archived_with_vault_copy(catalog, vault, b"the original")
    promise(catalog, entry.asset_id, ACCEPTED, None)  # a record made before sketches
    entry = type(entry)(entry.asset_id, entry.key, len(ACCEPTED), entry.mtime_ns, SHA)
    policy = ReadPolicy(
        catalog, ScriptedReader(catalog, vault, lambda a: ACCEPTED), DiskCache(tmp_path / "c", 10**6)
    )
    assert policy.read(entry).verified.mode == "exact"
    policy.shutdown()
    with catalog.begin() as session:
        record = session.query(Record).one()
        assert record.render_sketch == SKETCH
    # From now on a drifted render of it is verified.
    later = ReadPolicy(
        catalog, ScriptedReader(catalog, vault, lambda a: DRIFTED), DiskCache(tmp_path / "d", 10**6)
    )
    assert later.read(entry).verified.mode == "within-tolerance"
    later.shutdown()
