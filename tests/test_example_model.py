"""The shipped example model (examples/rumba/model) against the example catalogue.

The product's promise on real parts: every image of the catalogue passes the gate (proven by the
session's one sweep of the example, `example_home` in tests/support/example.py), and images the
model was not trained on (a lace colour outside the catalogue; a shoe with one detail changed)
are rejected on their merits, when they claim the nearest prompt the model knows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.example import MODEL, ExampleHome

from archiver.catalog.database import open_catalog
from archiver.catalog.models import AssetState
from archiver.engine.pipeline import PICKLE_SUFFIXES, check_model_dir
from archiver.engine.registry import load_model, register_model
from archiver.engine.rendering import enable_determinism
from archiver.example.rumba import LACE_COLOURS, distractors, prompt_for, write_catalogue
from archiver.gate import Gate
from archiver.prove import SearchLimits, index_group, prove_one
from archiver.storage import open_hot_store


def test_the_shipped_model_is_small_safetensors_with_captions() -> None:
    check_model_dir(MODEL)
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 1024 * 1024
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    captions = json.loads((MODEL / "captions.json").read_text())
    assert len(captions) == 48 and all(key.startswith("shoes/rumba-") for key in captions)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first test to ask pays for the session's sweep of the example
def test_every_example_image_passes_the_gate(example_home: ExampleHome) -> None:
    """All 48: the 39 the session's sweep of the example archived (by their stored gate reports),
    and the 9 its distractors displaced, proven among all 48 genuine images (tests/support/example.py)."""
    metrics: dict[str, dict[str, float]] = {}
    for key, asset in example_home.swept.assets.items():
        if asset.state == AssetState.ARCHIVED:
            assert asset.record is not None and key not in example_home.distractors
            report = asset.record.gate_report
            assert report["passed"] is True and report["backbone"]["backbone"] == "pretrained"
            metrics[key] = report["metrics"]
    for key, proof in example_home.displaced.items():
        assert proof.passed and proof.report is not None, (key, proof.reason, proof.detail)
        metrics[key] = proof.report.metrics
    assert sorted(metrics) == sorted(e.key for e in example_home.entries) and len(metrics) == 48
    for key, row in metrics.items():  # the metrics per image
        assert row["lpips"] is not None and row["worst_tile"] is not None and row["psnr"] >= 30, key
        assert row["sibling_margin_db"] >= 3, key


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_images_the_model_was_not_trained_on_are_rejected(tmp_path: Path) -> None:
    """Uncaptioned distractors claiming the nearest prompt the model knows (or one it never saw)."""
    enable_determinism()
    write_catalogue(tmp_path)
    gold, striped = distractors(tmp_path)
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.begin() as session:
        loaded = load_model(register_model(session, MODEL, "rumba"))
    catalog.close()
    store = open_hot_store(str(tmp_path))
    keys = sorted(o.key for o in store.list() if o.key.startswith("shoes/"))
    limits = SearchLimits(max_seeds=4, batch_size=4)
    index, _ = index_group(keys, store.get, k=limits.siblings)
    gate = Gate()
    nearest_lace = "yellow" if "yellow" in LACE_COLOURS else next(iter(LACE_COLOURS))
    claims = {
        gold: [prompt_for("gold", "white"), prompt_for(nearest_lace, "white")],
        striped: [prompt_for("red", "white")],
    }
    for path, prompts in claims.items():
        for prompt in prompts:
            proof = prove_one(path.name, path.read_bytes(), prompt, loaded, gate, limits, index)
            assert not proof.passed, (path.name, prompt, proof.report.metrics if proof.report else None)
            assert proof.reason is not None and proof.reason.startswith("gate-")
