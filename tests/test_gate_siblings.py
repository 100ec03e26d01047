"""The sibling index: nearest by colour thumbnail, bounded loads, gone siblings, and a gate that
judges a render against the k nearest only."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from archiver.example.rumba import LACE_COLOURS, SOLE_COLOURS, draw_shoe
from archiver.gate import Gate
from archiver.gate.siblings import SiblingIndex


def catalogue() -> dict[str, Image.Image]:
    return {
        f"{lace}-{sole}": draw_shoe(LACE_COLOURS[lace], SOLE_COLOURS[sole])
        for lace in LACE_COLOURS
        for sole in SOLE_COLOURS
    }


class Loader:
    """The caller's `load`: counts what the index asks for; keys in `gone` answer None."""

    def __init__(self, images: dict[str, Image.Image]) -> None:
        self.images, self.calls, self.gone = images, Counter[str](), set[str]()

    def __call__(self, key: str) -> Image.Image | None:
        self.calls[key] += 1
        return None if key in self.gone else self.images[key]


def indexed(images: dict[str, Image.Image], **kwargs: int) -> tuple[SiblingIndex, Loader]:
    loader = Loader(images)
    index = SiblingIndex(loader, **kwargs)
    index.extend(images.items())
    return index, loader


def test_the_nearest_siblings_are_the_colour_neighbours_and_never_the_key_itself() -> None:
    images = catalogue()
    index, _ = indexed(images, k=3)
    found = [s.key for s in index.nearest(images["red-white"], exclude="red-white")]
    assert len(found) == 3 and "red-white" not in found
    # Siblings that differ from red-white in one part only come first: another lace or another sole.
    assert all(key.endswith("-white") or key.startswith("red-") for key in found)
    # Without the exclusion the image itself is the nearest (distance 0).
    assert index.nearest(images["red-white"])[0].key == "red-white"


def test_a_render_of_the_wrong_variant_finds_that_variant() -> None:
    """The query is the render: a model that drew blue laces for the red record meets blue-white."""
    images = catalogue()
    index, _ = indexed(images, k=2)
    assert index.nearest(images["blue-white"], exclude="red-white")[0].key == "blue-white"


def test_pixels_are_loaded_only_for_the_k_nearest_and_kept_in_a_bounded_cache() -> None:
    images = catalogue()
    index, loader = indexed(images, k=4, cache_size=6)
    assert sum(loader.calls.values()) == 0  # indexing keeps descriptors, not pixels
    for key in list(images)[:10]:
        assert len(index.nearest(images[key], exclude=key)) == 4
    assert len(index._cache) <= 6
    assert sum(loader.calls.values()) <= 10 * 4


def test_only_siblings_of_the_render_size_are_offered() -> None:
    images = catalogue()
    images["big"] = draw_shoe(LACE_COLOURS["red"], SOLE_COLOURS["white"]).resize((128, 128))
    index, _ = indexed(images, k=50)
    assert "big" not in {s.key for s in index.nearest(images["red-white"], exclude="red-white")}
    assert [s.key for s in index.nearest(images["big"])] == ["big"]


def test_a_sibling_gone_from_the_store_is_skipped_and_not_asked_for_again() -> None:
    images = catalogue()
    index, loader = indexed(images, k=2)
    first = index.nearest(images["red-white"], exclude="red-white")[0].key
    index._cache.clear()
    loader.gone.add(first)
    again = [s.key for s in index.nearest(images["red-white"], exclude="red-white")]
    assert first not in again and len(again) == 1  # one of the two nearest is gone
    third = [s.key for s in index.nearest(images["red-white"], exclude="red-white")]
    assert first not in third and len(third) == 2 and loader.calls[first] == 2  # once found, once gone


def test_keys_are_unique_and_k_is_positive() -> None:
    index, _ = indexed({"a": draw_shoe(LACE_COLOURS["red"], SOLE_COLOURS["white"])})
    with pytest.raises(ValueError, match="already"):
        index.add("a", draw_shoe(LACE_COLOURS["red"], SOLE_COLOURS["white"]))
    with pytest.raises(ValueError, match="k must"):
        SiblingIndex(lambda key: None, k=0)


def test_the_gate_judging_the_k_nearest_reaches_the_verdict_of_judging_all() -> None:
    """The wrong variant is refused and a faithful render passes, whether the gate sees every
    sibling or only the index's 4 nearest: the ones that matter are the nearest."""
    gate = Gate()
    images = catalogue()
    index, _ = indexed(images, k=4)
    original = images["red-white"]
    everyone = [image for key, image in images.items() if key != "red-white"]
    for render, passes in ((images["blue-white"], False), (original.copy(), True)):
        near = gate.evaluate(original, render, index.nearest(render, exclude="red-white"), True)
        full = gate.evaluate(original, render, everyone, True)
        assert near.passed is full.passed is passes
        assert near.failures == full.failures
