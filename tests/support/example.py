"""The shipped example swept once per session (`example_home`), for every test that asks what the
gate and the sweep make of it: tests/test_example_model.py, tests/test_gate_distractors.py and
tests/test_records_travel_example.py.

The hot source is the 48 images of `archiver example rumba` with the gate's trained-key
distractors (`archiver.example.rumba.trained_key_distractors`) in place of 8 of them, swept by
`archiver sweep` in process on the CPU with default settings: the default seed search (a distractor
refused after it is stronger than after a short one) and the default GLACIER vault, where no
original can stand in for a render.

Those 8 keys' genuine images are not in that sweep, and the 'sibling-image' distractor (green-red's
picture under blue-red's key) makes green-red a twin the gate refuses. `displaced` proves those 9
genuine images afterwards, the way `archiver verify` does (`GroupProver` with the default gate and
search), among all 48 genuine images as their siblings: with the 39 the sweep archived, every
example image is proven.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.catalog.database import open_catalog
from archiver.catalog.queries import get_model
from archiver.engine.registry import load_model
from archiver.engine.rendering import enable_determinism
from archiver.example.rumba import (
    CatalogueEntry,
    Distractor,
    encode_like_key,
    key_for,
    trained_key_distractors,
    write_catalogue,
)
from archiver.gate import Gate
from archiver.prove import GroupProver, Proof, SearchLimits
from archiver.settings import load_settings
from archiver.storage import open_hot_store
from support.homes import SweptHome, only_settings, sweep_once

MODEL = Path(__file__).resolve().parents[2] / "examples" / "rumba" / "model"
TWIN = key_for("green", "red")  # its picture is also under the 'sibling-image' distractor's key


@dataclass(frozen=True)
class ExampleHome:
    swept: SweptHome  # the sweep of the example with the distractors in place
    entries: list[CatalogueEntry]  # the 48 genuine images, as `write_catalogue` lists them
    distractors: dict[str, Distractor]  # by the trained key each one sits under
    displaced: dict[str, Proof]  # the genuine images the sweep did not archive, proven


@pytest.fixture(scope="session")
def example_home(tmp_path_factory: pytest.TempPathFactory) -> ExampleHome:
    root = tmp_path_factory.mktemp("example-home")
    distractors = {d.key: d for d in trained_key_distractors()}

    def fill(hot: Path) -> None:
        write_catalogue(hot)
        for key, distractor in distractors.items():
            (hot / key).write_bytes(encode_like_key(distractor.image, key))

    swept = sweep_once(root, fill, MODEL, "rumba", {})
    genuine = root / "genuine"
    entries = write_catalogue(genuine)
    return ExampleHome(swept, entries, distractors, prove(swept, genuine, sorted([*distractors, TWIN])))


def prove(swept: SweptHome, genuine: Path, keys: list[str]) -> dict[str, Proof]:
    """Prove `keys` of the genuine catalogue at `genuine`, all of its images their siblings, with the
    model the sweep registered and the default gate and search (as `archiver verify` does)."""
    enable_determinism()
    with only_settings(swept.home, {}):
        settings = load_settings()
        catalog = open_catalog(settings.catalog_url)
        with catalog.begin() as session:
            loaded = load_model(get_model(session, "rumba"))
        catalog.close()
        store = open_hot_store(str(genuine))
        images = sorted(o.key for o in store.list() if o.key.startswith("shoes/"))
        prover = GroupProver.for_source(
            images, store.get, loaded, Gate.from_settings(settings), SearchLimits()
        )
        return {key: prover.prove(key)[0] for key in keys}
