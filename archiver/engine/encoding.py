"""Encoding profiles: how an original was encoded, so a regenerated image is written back the same way.

Owns `capture_profile` (read the encoding of an original), the canonical, content-addressed form
of a profile (`to_json`, `profile_id`, `from_json`), and `encode` (write pixels with a profile).
A profile holds only what many assets can share: format parameters plus the ICC and EXIF
templates, never per-asset text, so a catalogue of near-identical images stores one profile and
each record names it by `profile_id` (SHA-256 of the canonical JSON). It decides nothing about
whether an image may be regenerated (that is `originals`) and never renders.

What is captured, per format, and the honest limits:

- JPEG: quantization tables (`im.quantization`), chroma subsampling, progressive flag, JFIF dpi
  (when the unit is inches). Not captured: whether the Huffman tables were optimized (Pillow does
  not expose them; it changes the bytes, never the pixels; we write libjpeg's standard tables,
  `optimize=False`), restart intervals, arithmetic coding, Adobe/APP14 colour transforms, COM
  comments, and a JFIF aspect ratio without a unit. Pillow always writes a JFIF APP0 segment.
- PNG: mode and bit depth (8-bit RGB: the only kind `originals` accepts), the colour chunks that
  change how pixels look (gAMA, cHRM, sRGB, cICP, copied verbatim), and pHYs dpi (metre unit).
  Text chunks (tEXt/zTXt/iTXt, e.g. A1111 "parameters") are NOT copied: they are per-asset and
  would stop profiles being shared. The zlib level of the original cannot be known; we write
  level 6. Adam7 interlacing is not reproduced (Pillow cannot write it); pixels are unaffected.
- WebP: lossless or lossy, read from the RIFF chunks (VP8L vs VP8). libwebp does not record the
  quality of a lossy file, so `webp_quality` is a GUESS: the quality at which re-encoding the
  decoded original comes closest in size to the original. Method (effort) is not recorded either;
  we write method 4, Pillow's default.
- All: the ICC profile and the EXIF block, byte for byte, as templates.

`encode` is deterministic for one build of Pillow and its bundled libjpeg/zlib/libwebp: records
therefore store the expected SHA-256 of rehydrated bytes, and software versions, beside the profile.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from PIL import Image, JpegImagePlugin, PngImagePlugin

from archiver.engine.originals import open_original, png_chunks
from archiver.errors import UnsupportedImage

PROFILE_VERSION = 1
_PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB", b"cICP")
_PNG_COMPRESS_LEVEL = 6
_WEBP_METHOD = 4
_WEBP_LOSSLESS_QUALITY = 80  # for lossless WebP, "quality" is compression effort, not fidelity
_SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


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

    def to_json(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, ASCII, None fields left out, bytes as base64."""
        doc: dict[str, Any] = {"v": PROFILE_VERSION}
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
        if version != PROFILE_VERSION:
            raise ValueError(f"encoding profile version {version!r} is not {PROFILE_VERSION}")
        known = {f.name for f in fields(cls)}
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
            return _capture_jpeg(image, original.icc_profile, original.exif, key)
        if original.format == "PNG":
            chunks = tuple(
                (kind.decode("ascii"), body) for kind, body in png_chunks(data) if kind in _PNG_COLOUR_CHUNKS
            )
            dpi = image.info.get("dpi")
            return EncodingProfile(
                format="PNG",
                icc_profile=original.icc_profile,
                exif=original.exif,
                dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
                png_mode=original.mode,
                png_bit_depth=original.bit_depth,
                png_chunks=chunks or None,
            )
        lossless = _webp_is_lossless(data)
        return EncodingProfile(
            format="WEBP",
            icc_profile=original.icc_profile,
            exif=original.exif,
            webp_lossless=lossless,
            webp_quality=None
            if lossless
            else _guess_webp_quality(image, original.icc_profile, original.exif, len(data)),
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
            optimize=False,
        )
    elif profile.format == "PNG":
        info = PngImagePlugin.PngInfo()
        for kind, body in profile.png_chunks or ():
            info.add(kind.encode("ascii"), body)
        params.update(pnginfo=info, optimize=False, compress_level=_PNG_COMPRESS_LEVEL)
    else:
        params.update(
            lossless=bool(profile.webp_lossless),
            quality=_WEBP_LOSSLESS_QUALITY if profile.webp_lossless else profile.webp_quality,
            method=_WEBP_METHOD,
        )
    buf = io.BytesIO()
    clean.save(buf, profile.format, **params)
    return buf.getvalue()


def _capture_jpeg(image: Image.Image, icc: bytes | None, exif: bytes | None, key: str) -> EncodingProfile:
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    subsampling = JpegImagePlugin.get_sampling(image)
    if subsampling not in _SUBSAMPLING_NAMES:
        raise UnsupportedImage(
            key, "unsupported-encoding", "JPEG chroma subsampling other than 4:4:4, 4:2:2 or 4:2:0"
        )
    qtables = tuple(tuple(int(v) for v in image.quantization[i]) for i in sorted(image.quantization))
    dpi = image.info.get("jfif_density") if image.info.get("jfif_unit") == 1 else None
    return EncodingProfile(
        format="JPEG",
        icc_profile=icc,
        exif=exif,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
        jpeg_qtables=qtables,
        jpeg_subsampling=subsampling,
        jpeg_progressive=bool(image.info.get("progressive", False)),
    )


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
        if (profile.png_mode, profile.png_bit_depth) != ("RGB", 8):
            raise ValueError(
                f"PNG profile must be 8-bit RGB, not {profile.png_mode} at {profile.png_bit_depth} bits"
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
    "icc_profile": _unb64,
    "exif": _unb64,
    "dpi": _pair,
    "jpeg_qtables": lambda tables: tuple(tuple(int(v) for v in t) for t in tables),
    "png_chunks": lambda chunks: tuple((str(kind), _unb64(body)) for kind, body in chunks),
}
