"""Encoding profiles: how an original was encoded, so a regenerated image is written back the same way.

Owns `capture_profile` (read the encoding of an original), the canonical, content-addressed form
of a profile (`to_json`, `profile_id`, `from_json`), and `encode` (write pixels with a profile).
A profile holds only what many assets can share: format parameters plus the ICC and EXIF
templates, never per-asset text, so a catalogue of near-identical images stores one profile and
each record names it by `profile_id` (SHA-256 of the canonical JSON). It decides nothing about
whether an image may be regenerated (that is `originals`) and never renders.

What is captured, per format, and the honest limits:

- JPEG: quantization tables (`im.quantization`), chroma subsampling, progressive flag, JFIF dpi
  (when the unit is inches), and (version 2, `jpeg_optimize`) whether a baseline original's
  Huffman tables are other than the standard ones (read from its DHT segments; Pillow does not
  expose them): then the render's tables are optimized too, which changes bytes, never pixels.
  Version 1 always wrote the standard tables. Not captured: restart intervals, arithmetic
  coding, Adobe/APP14 colour transforms, COM comments, and a JFIF aspect ratio without a unit.
  Pillow always writes a JFIF APP0 segment.
- PNG: mode and bit depth (8-bit RGB, or a palette of 1-8 bits), the colour chunks that change
  how pixels look (gAMA, cHRM, sRGB, cICP, copied verbatim), and pHYs dpi (metre unit). Text
  chunks (tEXt/zTXt/iTXt, e.g. A1111 "parameters") are NOT copied: they are per-asset and would
  stop profiles being shared. Version 2 adds how the pixels were compressed:
  - `png_colours`: an original with at most 256 distinct colours (a palette PNG, or flat artwork
    saved as RGB) holds that many; a render holds thousands (its noise), which made the served
    PNG about 3.5x the original. Such a render is smoothed where neighbours differ by at most
    `_SMOOTH_LEVELS` (flat areas, not edges), reduced to the original's count of colours and
    written as a palette PNG, which decodes to those RGB values (what optipng and oxipng do to
    such files). That is lossy, so it happens before the gate: the gate judges these bytes decoded.
    An image that already has no more colours than that is written losslessly.
  - `png_compress_level`: the zlib level class the original's IDAT stream declares (FLEVEL:
    fastest, fast, default, maximum), written as 1, 5, 6 or 9. Version 1 wrote level 6.
  Pillow chooses the row filters itself, and cannot write Adam7 interlacing: an interlaced
  original is served without it (`size_notes`), usually smaller.
- WebP: lossless or lossy, read from the RIFF chunks (VP8L vs VP8). libwebp does not record the
  quality of a lossy file, so `webp_quality` is a GUESS: the quality at which re-encoding the
  decoded original comes closest in size to the original. Method (effort) is not recorded either;
  we write method 4, Pillow's default.
- All: the ICC profile and the EXIF block, byte for byte, as templates.
- `size_notes`: why the served bytes may be larger than the original's, as stable codes
  (`SIZE_NOTES`), so a record can say why it does not match; `archiver show` prints them.

Versions: a profile is written at the lowest version that holds its fields, so a profile without
version-2 fields is byte for byte (and id for id) what version 1 wrote, and a version-1 profile
encodes exactly as it always did: records store the SHA-256 of their served bytes.

`encode` is deterministic for one build of Pillow and its bundled libjpeg/zlib/libwebp: records
therefore store the expected SHA-256 of rehydrated bytes, and software versions, beside the profile.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

from archiver.engine.originals import open_original, png_chunks
from archiver.errors import UnsupportedImage

PROFILE_VERSION = 2
# Fields a version-1 reader knew nothing of; a profile with none of them is written as version 1.
_V2_FIELDS = ("png_colours", "png_compress_level", "jpeg_optimize", "size_notes")
SIZE_NOTES = {
    "png-many-colours": "the original has more than 256 colours: the render's noise is kept, "
    "and its PNG may be larger than the original's",
    "png-interlace-dropped": "the original is Adam7-interlaced; Pillow writes PNGs without interlacing",
    "webp-settings-guessed": "libwebp records neither quality nor effort; both are guessed",
}
_SMOOTH_LEVELS = 10  # neighbours within this many levels (every channel) are flat-area noise
_SMOOTH_RADIUS = 2  # 5x5 neighbourhood
_SMOOTH_PASSES = 3  # each pass flattens what the last left; 3 took a palette original's 1.32x to 1.10x
_ZLIB_LEVELS = {0: 1, 1: 5, 2: 6, 3: 9}  # a zlib stream's FLEVEL class -> the level written
_PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB", b"cICP")
_PNG_COMPRESS_LEVEL = 6
_WEBP_METHOD = 4
_WEBP_LOSSLESS_QUALITY = 80  # for lossless WebP, "quality" is compression effort, not fidelity
_SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
_PNG_KINDS = {("RGB", 8), ("P", 1), ("P", 2), ("P", 4), ("P", 8)}


@dataclass(frozen=True)
class EncodingProfile:
    """Everything needed to write a regenerated image the way its original was written.

    Fields that do not apply to `format` stay None. Binary fields are raw bytes here and base64 in JSON.
    """

    format: str  # "JPEG" | "PNG" | "WEBP"
    icc_profile: bytes | None = None
    exif: bytes | None = None  # the original's EXIF block, as Pillow reads and writes it
    dpi: tuple[float, float] | None = None
    jpeg_qtables: tuple[tuple[int, ...], ...] | None = None  # in Pillow's order (`im.quantization`)
    jpeg_subsampling: int | None = None  # Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    jpeg_progressive: bool | None = None
    png_mode: str | None = None
    png_bit_depth: int | None = None
    png_chunks: tuple[tuple[str, bytes], ...] | None = None  # colour chunks, in file order
    webp_lossless: bool | None = None
    webp_quality: int | None = None  # lossy only; a guess (see the module docstring)
    # version 2 (None: as version 1 wrote it)
    png_colours: int | None = None  # the original's distinct colours, when 256 or fewer
    png_compress_level: int | None = None  # None: 6
    jpeg_optimize: bool | None = None  # None: the standard Huffman tables
    size_notes: tuple[str, ...] | None = None  # codes of SIZE_NOTES, sorted

    def to_json(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, ASCII, None fields left out, bytes as base64."""
        version = 2 if any(getattr(self, name) is not None for name in _V2_FIELDS) else 1
        doc: dict[str, Any] = {"v": version}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                doc[f.name] = _TO_JSON.get(f.name, _plain)(value)
        return json.dumps(
            doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode()

    @property
    def profile_id(self) -> str:
        """SHA-256 (hex) of `to_json()`: equal encodings share one id and one stored profile."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes) -> EncodingProfile:
        """Read what `to_json` wrote; raise ValueError naming the field that is wrong."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"encoding profile is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError("encoding profile must be a JSON object")
        version = doc.pop("v", None)
        if version not in (1, PROFILE_VERSION) or isinstance(version, bool):
            raise ValueError(f"encoding profile version {version!r} is not 1 or {PROFILE_VERSION}")
        known = {f.name for f in fields(cls)} - (set(_V2_FIELDS) if version == 1 else set())
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"encoding profile has unknown field(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in doc.items():
            try:
                kwargs[name] = _FROM_JSON.get(name, _plain)(value)
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"encoding profile field {name!r} is malformed: {e}") from None
        if "format" not in kwargs:
            raise ValueError("encoding profile has no 'format'")
        profile = cls(**kwargs)
        _check(profile)
        return profile


def capture_profile(data: bytes, key: str = "<original>") -> EncodingProfile:
    """Read the encoding of an original. Raises `UnsupportedImage` for anything `originals` rejects."""
    original, image = open_original(data, key)
    with image:
        if original.format == "JPEG":
            return _capture_jpeg(image, original.icc_profile, original.exif, data, key)
        if original.format == "PNG":
            return _capture_png(image, original.icc_profile, original.exif, original.bit_depth, data)
        lossless = _webp_is_lossless(data)
        return EncodingProfile(
            format="WEBP",
            icc_profile=original.icc_profile,
            exif=original.exif,
            webp_lossless=lossless,
            webp_quality=None
            if lossless
            else _guess_webp_quality(image, original.icc_profile, original.exif, len(data)),
            size_notes=("webp-settings-guessed",),
        )


def encode(image: Image.Image, profile: EncodingProfile) -> bytes:
    """Write `image` (RGB) with `profile`. Same pixels and profile give the same bytes.

    The image's own metadata (`image.info`) is ignored: only the profile decides what is written.
    """
    if image.mode != "RGB":
        raise ValueError(f"encode() takes an RGB image, not mode {image.mode!r}")
    _check(profile)
    clean = image.copy()
    clean.info = {}  # Pillow falls back to im.info for some keys (PNG's ICC); keep it out
    params: dict[str, Any] = {}
    if profile.icc_profile:
        params["icc_profile"] = profile.icc_profile
    if profile.exif:
        params["exif"] = profile.exif
    if profile.dpi:
        params["dpi"] = profile.dpi
    if profile.format == "JPEG":
        assert profile.jpeg_qtables is not None  # _check
        params.update(
            qtables=[list(table) for table in profile.jpeg_qtables],
            subsampling=profile.jpeg_subsampling,
            progressive=bool(profile.jpeg_progressive),
            optimize=bool(profile.jpeg_optimize),
        )
    elif profile.format == "PNG":
        info = PngImagePlugin.PngInfo()
        for kind, body in profile.png_chunks or ():
            info.add(kind.encode("ascii"), body)
        level = profile.png_compress_level
        params.update(
            pnginfo=info,
            optimize=False,
            compress_level=_PNG_COMPRESS_LEVEL if level is None else level,
        )
        if profile.png_colours is not None:
            clean = _palette(_reduce(clean, profile.png_colours))
            if profile.png_mode == "P":
                params["bits"] = profile.png_bit_depth
    else:
        params.update(
            lossless=bool(profile.webp_lossless),
            quality=_WEBP_LOSSLESS_QUALITY if profile.webp_lossless else profile.webp_quality,
            method=_WEBP_METHOD,
        )
    buf = io.BytesIO()
    clean.save(buf, profile.format, **params)
    return buf.getvalue()


def _capture_jpeg(
    image: Image.Image, icc: bytes | None, exif: bytes | None, data: bytes, key: str
) -> EncodingProfile:
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    subsampling = JpegImagePlugin.get_sampling(image)
    if subsampling not in _SUBSAMPLING_NAMES:
        raise UnsupportedImage(
            key, "unsupported-encoding", "JPEG chroma subsampling other than 4:4:4, 4:2:2 or 4:2:0"
        )
    qtables = tuple(tuple(int(v) for v in image.quantization[i]) for i in sorted(image.quantization))
    dpi = image.info.get("jfif_density") if image.info.get("jfif_unit") == 1 else None
    progressive = bool(image.info.get("progressive", False))
    # libjpeg always optimizes a progressive file's tables, so only a baseline file can say.
    optimized = not progressive and _huffman_tables(data) - _standard_huffman_tables() != set()
    return EncodingProfile(
        format="JPEG",
        icc_profile=icc,
        exif=exif,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
        jpeg_qtables=qtables,
        jpeg_subsampling=subsampling,
        jpeg_progressive=progressive,
        jpeg_optimize=True if optimized else None,
    )


def _huffman_tables(data: bytes) -> set[bytes]:
    """Each Huffman table a JPEG defines before its first scan (class, code counts, values; not its
    id), from the DHT segments: Pillow skips them."""
    tables: set[bytes] = set()
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker == 0xDA:  # start of scan: the tables that matter are defined by now
            break
        if marker == 0xC4:
            body, pos = data[at + 4 : at + 2 + length], 0
            while pos + 17 <= len(body):
                count = sum(body[pos + 1 : pos + 17])
                tables.add(bytes([body[pos] >> 4]) + body[pos + 1 : pos + 17 + count])
                pos += 17 + count
        at += 2 + length
    return tables


@functools.cache
def _standard_huffman_tables() -> frozenset[bytes]:
    """The tables libjpeg writes when not optimizing (JPEG Annex K), as this build writes them."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", optimize=False)
    return frozenset(_huffman_tables(buf.getvalue()))


def _capture_png(
    image: Image.Image, icc: bytes | None, exif: bytes | None, bit_depth: int, data: bytes
) -> EncodingProfile:
    chunks = png_chunks(data)
    colour = tuple((kind.decode("ascii"), body) for kind, body in chunks if kind in _PNG_COLOUR_CHUNKS)
    dpi = image.info.get("dpi")
    idat = next((body for kind, body in chunks if kind == b"IDAT"), b"")
    level = _ZLIB_LEVELS[idat[1] >> 6] if len(idat) >= 2 else _PNG_COMPRESS_LEVEL
    counted = image.convert("RGB").getcolors(256)
    notes = []
    if counted is None:
        notes.append("png-many-colours")
    if image.info.get("interlace"):
        notes.append("png-interlace-dropped")
    return EncodingProfile(
        format="PNG",
        icc_profile=icc,
        exif=exif,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
        png_mode="P" if image.mode == "P" else "RGB",
        png_bit_depth=bit_depth,
        png_chunks=colour or None,
        png_colours=None if counted is None else len(counted),
        png_compress_level=None if level == _PNG_COMPRESS_LEVEL else level,
        size_notes=tuple(sorted(notes)) or None,
    )


def _reduce(image: Image.Image, colours: int) -> Image.Image:
    """`image` with at most `colours` colours: as it is when it has no more, else its flat areas
    smoothed (each pixel the rounded mean of its 5x5 neighbours within `_SMOOTH_LEVELS` in every
    channel, so edges and thin lines stay; `_SMOOTH_PASSES` times) and reduced by Pillow's octree,
    without dithering.
    Integer arithmetic and Pillow's integer octree: the same pixels give the same colours for one
    build of Pillow and numpy (both in the software stack a record keeps)."""
    if image.getcolors(colours) is not None:
        return image
    a = np.asarray(image, dtype=np.int32)
    h, w, _ = a.shape
    r = _SMOOTH_RADIUS
    for _ in range(_SMOOTH_PASSES):
        padded = np.pad(a, ((r, r), (r, r), (0, 0)), mode="edge")
        total = np.zeros_like(a)
        count = np.zeros((h, w, 1), dtype=np.int32)
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                near = padded[dy : dy + h, dx : dx + w]
                flat = np.abs(near - a).max(axis=2, keepdims=True) <= _SMOOTH_LEVELS
                total += near * flat
                count += flat
        a = (2 * total + count) // (2 * count)  # the rounded mean (count >= 1: a pixel is its own neighbour)
    smooth = Image.fromarray(a.astype(np.uint8), "RGB")
    return smooth.quantize(colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).convert("RGB")


def _palette(image: Image.Image) -> Image.Image:
    """An RGB image of at most 256 colours as a palette image of exactly those colours, in RGB order."""
    a = np.asarray(image, dtype=np.uint8).reshape(-1, 3)
    colours, index = np.unique(a, axis=0, return_inverse=True)
    out = Image.fromarray(index.reshape(image.height, image.width).astype(np.uint8), "P")
    out.putpalette(colours.astype(np.uint8).tobytes())
    return out


def _webp_is_lossless(data: bytes) -> bool:
    """Walk the RIFF chunks: a VP8L bitstream is lossless, VP8 is lossy."""
    at = 12
    while at + 8 <= len(data):
        kind = data[at : at + 4]
        (size,) = struct.unpack("<I", data[at + 4 : at + 8])
        if kind == b"VP8L":
            return True
        if kind == b"VP8 ":
            return False
        at += 8 + size + (size & 1)  # chunks are padded to an even length
    raise ValueError("WebP without a VP8 or VP8L bitstream chunk")  # open_original would have failed first


def _guess_webp_quality(image: Image.Image, icc: bytes | None, exif: bytes | None, target: int) -> int:
    """The quality whose re-encode comes closest to `target` bytes (size grows with quality)."""
    rgb = image.convert("RGB")

    def size_at(quality: int) -> int:
        profile = EncodingProfile(
            format="WEBP", icc_profile=icc, exif=exif, webp_lossless=False, webp_quality=quality
        )
        return len(encode(rgb, profile))

    lo, hi = 0, 100
    while lo < hi:  # about seven encodes
        mid = (lo + hi) // 2
        if size_at(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    if lo > 0 and abs(size_at(lo - 1) - target) < abs(size_at(lo) - target):
        return lo - 1
    return lo


def _check(profile: EncodingProfile) -> None:
    """Refuse profiles that cannot be written, naming the field; `encode` must never guess."""
    fmt = profile.format
    if fmt == "JPEG":
        tables = profile.jpeg_qtables
        if (
            not tables
            or len(tables) > 4
            or any(len(t) != 64 or not all(0 < v < 65536 for v in t) for t in tables)
        ):
            raise ValueError("JPEG profile needs 1 to 4 quantization tables of 64 values in 1..65535")
        if profile.jpeg_subsampling not in _SUBSAMPLING_NAMES:
            raise ValueError(f"JPEG profile has an unknown subsampling {profile.jpeg_subsampling!r}")
    elif fmt == "PNG":
        if (profile.png_mode, profile.png_bit_depth) not in _PNG_KINDS:
            raise ValueError(
                f"PNG profile must be 8-bit RGB or a 1-8 bit palette, not {profile.png_mode}"
                f" at {profile.png_bit_depth} bits"
            )
        if not (profile.png_colours is None or 1 <= profile.png_colours <= 256):
            raise ValueError(f"PNG profile's png_colours must be 1..256, not {profile.png_colours!r}")
        if profile.png_mode == "P" and profile.png_colours is None:
            raise ValueError("a palette PNG profile needs png_colours")
        if profile.png_compress_level not in (None, *range(10)):
            raise ValueError(
                f"PNG profile's png_compress_level must be 0..9, not {profile.png_compress_level!r}"
            )
        for kind, _ in profile.png_chunks or ():
            if kind.encode("ascii", "replace") not in _PNG_COLOUR_CHUNKS:
                raise ValueError(f"PNG profile may carry only colour chunks, not {kind!r}")
    elif fmt == "WEBP":
        if profile.webp_lossless is None:
            raise ValueError("WebP profile must say whether it is lossless")
        if not profile.webp_lossless and not (
            isinstance(profile.webp_quality, int) and 0 <= profile.webp_quality <= 100
        ):
            raise ValueError(f"lossy WebP profile needs a quality in 0..100, not {profile.webp_quality!r}")
    else:
        raise ValueError(f"encoding profile format {fmt!r} is not JPEG, PNG or WEBP")
    unknown = sorted(set(profile.size_notes or ()) - set(SIZE_NOTES))
    if unknown:
        raise ValueError(f"encoding profile has unknown size note(s): {', '.join(unknown)}")


def _plain(value: Any) -> Any:
    return value


def _typed(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        # bool is an int in Python; JSON keeps them apart, so do we.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return value

    return check


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected a base64 string")
    return base64.b64decode(value, validate=True)


def _pair(value: Any) -> tuple[float, float]:
    x, y = value
    return float(x), float(y)


_TO_JSON: dict[str, Callable[[Any], Any]] = {
    "icc_profile": _b64,
    "exif": _b64,
    "dpi": list,
    "jpeg_qtables": lambda tables: [list(t) for t in tables],
    "size_notes": list,
    "png_chunks": lambda chunks: [[kind, _b64(body)] for kind, body in chunks],
}
_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "format": _typed(str),
    "jpeg_subsampling": _typed(int),
    "jpeg_progressive": _typed(bool),
    "png_mode": _typed(str),
    "png_bit_depth": _typed(int),
    "webp_lossless": _typed(bool),
    "webp_quality": _typed(int),
    "png_colours": _typed(int),
    "png_compress_level": _typed(int),
    "jpeg_optimize": _typed(bool),
    "size_notes": lambda notes: tuple(_typed(str)(n) for n in notes),
    "icc_profile": _unb64,
    "exif": _unb64,
    "dpi": _pair,
    "jpeg_qtables": lambda tables: tuple(tuple(int(v) for v in t) for t in tables),
    "png_chunks": lambda chunks: tuple((str(kind), _unb64(body)) for kind, body in chunks),
}
