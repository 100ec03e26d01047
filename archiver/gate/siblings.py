"""The sibling index: which images of a group a render might be mistaken for, at a flat cost.

Owns a compact descriptor per image (a 16x16 CIELAB thumbnail: 768 numbers that keep a lace's or a
sole's colour, unlike a grey hash) and the nearest-neighbour query over them. The gate then runs its
full measures on the k nearest siblings only, so judging one render costs the same whether the
group holds 48 images or 4,800: the query is one vectorised distance over the descriptors, and
pixels are loaded on demand through the caller's `load` (a small LRU keeps recent ones), never for
the whole group at once.

It judges nothing (`verdict.Gate` does) and reads no storage itself: `load(key)` is the caller's,
and answers None for an image that is gone (it is then no longer anyone's sibling).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.color import rgb2lab

from archiver.settings import default_of

THUMBNAIL = 16  # descriptor side: 16x16 Lab cells
DEFAULT_CACHE = 64  # decoded siblings kept in memory


def descriptor(image: Image.Image) -> np.ndarray:
    """A 16x16 CIELAB thumbnail (area-averaged), flattened to float32."""
    thumb = image.convert("RGB").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return rgb2lab(np.asarray(thumb, dtype=np.float64) / 255.0).astype(np.float32).ravel()


@dataclass(frozen=True)
class Sibling:
    key: str
    image: Image.Image


class SiblingIndex:
    """Descriptors of a group's images, and their pixels on demand.

    Build it by streaming the group once (`add`), then ask `nearest(render, exclude=key)`.
    """

    def __init__(
        self,
        load: Callable[[str], Image.Image | None],
        *,
        k: int = default_of("gate_siblings_k"),
        cache_size: int = DEFAULT_CACHE,
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self._load = load
        self._cache: OrderedDict[str, Image.Image] = OrderedDict()
        self._cache_size = cache_size
        self._keys: list[str] = []
        self._position: dict[str, int] = {}
        self._gone: set[int] = set()  # indexed, but `load` found nothing there any more
        self._sizes: list[tuple[int, int]] = []
        self._rows: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None  # stacked lazily after the last add
        self._size_array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._position

    def add(self, key: str, image: Image.Image) -> None:
        """Index one image of the group (its pixels are not kept)."""
        if key in self._position:
            raise ValueError(f"{key} is already in the sibling index")
        self._position[key] = len(self._keys)
        self._keys.append(key)
        self._sizes.append(image.size)
        self._rows.append(descriptor(image))
        self._matrix = self._size_array = None

    def extend(self, items: Iterable[tuple[str, Image.Image]]) -> None:
        for key, image in items:
            self.add(key, image)

    def nearest(self, render: Image.Image, *, exclude: str | None = None) -> list[Sibling]:
        """The k siblings of the render's size nearest to it by descriptor, nearest first."""
        if not self._keys:
            return []
        if self._matrix is None or self._size_array is None:
            self._matrix = np.stack(self._rows)
            self._size_array = np.asarray(self._sizes)
        distances = np.linalg.norm(self._matrix - descriptor(render), axis=1)
        usable = np.all(self._size_array == np.asarray(render.size), axis=1)
        if exclude in self._position:
            usable[self._position[exclude]] = False
        usable[list(self._gone)] = False
        candidates = np.flatnonzero(usable)
        if candidates.size == 0:
            return []
        take = min(self.k, candidates.size)
        nearest = candidates[np.argpartition(distances[candidates], take - 1)[:take]]
        nearest = nearest[np.argsort(distances[nearest], kind="stable")]
        found = [(self._keys[i], self.image(self._keys[i])) for i in nearest]
        return [Sibling(key, image) for key, image in found if image is not None]

    def image(self, key: str) -> Image.Image | None:
        """A sibling's pixels, from the LRU or loaded again (None, and never asked again, if gone)."""
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        loaded = self._load(key)
        if loaded is None:
            self._gone.add(self._position[key])
            return None
        image = loaded.convert("RGB")
        self._cache[key] = image
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return image
