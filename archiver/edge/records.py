"""Compact record values: the canonical JSON an edge keeps per asset, and its zstd compression.

A value holds what a record is alone, and names what it shares by content id:

    p  prompt                          r  render profile (`p/<id>`)
    n  negative prompt (left out       e  encoding profile (`e/<id>`)
       when empty)                     m  model: the SHA-256 of its files (`m/<id>`)
    s  seed                            h  SHA-256 of the rehydrated bytes (hex)
    t  last modified (Unix seconds:    z  their size in bytes
       the original's, as HTTP's)      k  the render sketch (base64; left out when the record
                                          has none): how an edge on other hardware verifies a
                                          render whose bytes differ (archiver.read.reader.judge_render)

Canonical: keys sorted, no whitespace, UTF-8 as is (no `\\u` escapes), integers as integers, so
one record has one spelling and the same catalog exports the same bytes.

Each value is one zstd frame (level 19; no checksum: the record's `h` checks what matters), made
with a dictionary trained on the export's own values (`train`) when there are at least
MIN_SAMPLES of them. The frame header names its dictionary id and the dictionary is an entry of its
own (`z/<id>`), so values made with different dictionaries (a full export, later deltas) live side
by side, and a reader picks the dictionary each value names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zstandard

from archiver.errors import IntegrityError

LEVEL = 19
DICT_SIZE = 16 * 1024  # bytes of dictionary asked for; zstd may return less for a small export
MIN_SAMPLES = 8  # fewer values than this: no dictionary (zstd's trainer needs a few to learn from)
TRAIN_SAMPLES = 20_000  # at most this many values (evenly spaced) are trained on
_FIRST_PRIVATE_ID = 32768  # zstd reserves dictionary ids below this for registered dictionaries


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class EdgeRecord:
    """One record as an edge holds it (see the module docstring for the one-letter names)."""

    prompt: str
    negative_prompt: str
    seed: int
    render_profile: str
    encoding_profile: str
    model: str
    sha256: str
    size: int
    last_modified: int  # Unix seconds
    render_sketch: bytes | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "p": self.prompt,
            "s": self.seed,
            "r": self.render_profile,
            "e": self.encoding_profile,
            "m": self.model,
            "h": self.sha256,
            "z": self.size,
            "t": self.last_modified,
        }
        if self.negative_prompt:
            doc["n"] = self.negative_prompt
        if self.render_sketch:
            doc["k"] = base64.b64encode(self.render_sketch).decode("ascii")
        return canonical(doc)

    @classmethod
    def decode(cls, data: bytes) -> EdgeRecord:
        try:
            doc = json.loads(data)
            return cls(
                prompt=doc["p"],
                negative_prompt=doc.get("n", ""),
                seed=int(doc["s"]),
                render_profile=doc["r"],
                encoding_profile=doc["e"],
                model=doc["m"],
                sha256=doc["h"],
                size=int(doc["z"]),
                last_modified=int(doc["t"]),
                render_sketch=base64.b64decode(doc["k"], validate=True) if "k" in doc else None,
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise IntegrityError(
                f"an edge record value is not readable ({exc}): re-export the bundle"
            ) from None


@dataclass(frozen=True)
class Dictionary:
    """A zstd dictionary trained on an export's values, stored as the entry `z/<dict_id>`."""

    dict_id: int
    data: bytes
    trained_on: int  # values

    def zstd(self) -> zstandard.ZstdCompressionDict:
        return zstandard.ZstdCompressionDict(self.data)


def train(values: Sequence[bytes]) -> tuple[Dictionary | None, str]:
    """A dictionary for these values, or None and why not (said to the user: values are then plain
    zstd, which works, only larger). Deterministic: the same values give the same dictionary."""
    if len(values) < MIN_SAMPLES:
        return None, (
            f"no dictionary: {len(values)} record(s) are too few to train one on (at least "
            f"{MIN_SAMPLES}); values are plain zstd"
        )
    step = max(1, len(values) // TRAIN_SAMPLES)
    samples: list[Any] = list(values[::step])
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(len(sample).to_bytes(4, "big") + sample)
    dict_id = _FIRST_PRIVATE_ID + int.from_bytes(digest.digest()[:4], "big") % (2**31 - _FIRST_PRIVATE_ID)
    size = min(DICT_SIZE, max(1024, sum(map(len, samples)) // 2))
    try:
        trained = zstandard.train_dictionary(size, samples, dict_id=dict_id, level=LEVEL)
    except zstandard.ZstdError as exc:
        return None, f"no dictionary: zstd could not train one on {len(samples)} records ({exc}); plain zstd"
    return Dictionary(dict_id, trained.as_bytes(), len(samples)), (
        f"dictionary {dict_id}: {len(trained.as_bytes())} bytes, trained on {len(samples)} records"
    )


class Compressor:
    """Compresses values, with `dictionary` if there is one. Not thread-safe (zstd's compressor)."""

    def __init__(self, dictionary: Dictionary | None) -> None:
        self._compressor = zstandard.ZstdCompressor(
            level=LEVEL,
            dict_data=dictionary.zstd() if dictionary is not None else None,
            write_checksum=False,
            write_content_size=True,
            write_dict_id=True,
        )

    def compress(self, value: bytes) -> bytes:
        return self._compressor.compress(value)


def frame_dictionary(frame: bytes) -> int:
    """The dictionary id a value's zstd frame names (0: none)."""
    try:
        return int(zstandard.get_frame_parameters(frame).dict_id)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"an edge value is not a zstd frame ({exc}): re-export the bundle") from None


class Decompressor:
    """Decompresses values, each with the dictionary its frame names (`dictionary(id)` gives its
    bytes, once). Thread-safe; a dictionary is prepared once, not per value."""

    def __init__(self, dictionary: Callable[[int], bytes | None]) -> None:
        self._dictionary = dictionary
        self._by_id: dict[int, zstandard.ZstdDecompressor] = {}
        self._lock = threading.Lock()

    def _for(self, dict_id: int) -> zstandard.ZstdDecompressor:
        if dict_id not in self._by_id:
            data = self._dictionary(dict_id) if dict_id else None
            if dict_id and data is None:
                raise IntegrityError(f"an edge value needs dictionary {dict_id}, which the export lacks")
            prepared = zstandard.ZstdCompressionDict(data) if data else None
            self._by_id[dict_id] = zstandard.ZstdDecompressor(dict_data=prepared)
        return self._by_id[dict_id]

    def decompress(self, frame: bytes) -> bytes:
        with self._lock:
            try:
                return self._for(frame_dictionary(frame)).decompress(frame)
            except zstandard.ZstdError as exc:
                raise IntegrityError(
                    f"an edge value does not decompress ({exc}): re-export the bundle"
                ) from None
