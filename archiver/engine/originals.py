"""Inspect an original image before the engine tries to regenerate it.

Owns the one decision "can this file be regenerated honestly?" and the description of the
original (format, size, mode, bit depth, ICC, EXIF) that later steps rely on. Anything it cannot
accept raises `UnsupportedImage` with a stable `reason` code; it never lets a Pillow exception
escape, so one bad file cannot crash a sweep. It only reads bytes handed to it: no storage, no
catalog, no rendering.

Accepted: still JPEG, PNG and WebP images, 8 bits per channel RGB or an opaque palette PNG (its
colours are 8-bit RGB; the engine renders RGB and `encoding` writes a palette back), no alpha,
EXIF orientation absent or 1. Reason codes, each tested:

    empty, not-an-image, truncated, corrupt, decompression-bomb, unsupported-format, animated,
    alpha, grayscale, cmyk, high-bit-depth, unsupported-mode, exif-orientation

A file Pillow reads only with a warning (typically damaged EXIF, where a skipped tag could be the
orientation) is rejected as corrupt: strict on purpose, since a rejected image simply stays hot.

Limits: Pillow (libjpeg) decodes some damaged JPEG scans without complaint (it only warns), so
corruption inside entropy-coded data can go unnoticed here; the gate, which compares the render
with these pixels, and the recorded SHA-256 of the original are the backstops.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

from archiver.errors import UnsupportedImage

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP")
_ORIENTATION = 0x0112

# Signatures of the formats we accept: a file that starts like one of them but cannot be opened is
# damaged, not "something else".
_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"RIFF": "WEBP",
}


@dataclass(frozen=True)
class OriginalImage:
    """What the engine knows about an accepted original. Only still 8-bit RGB images get this far."""

    key: str
    format: str  # one of SUPPORTED_FORMATS
    width: int
    height: int
    mode: str  # Pillow's mode of the decoded image: "RGB", or "P" for a palette PNG
    has_alpha: bool
    bit_depth: int  # bits per channel as stored in the file
    icc_profile: bytes | None
    exif: bytes | None  # the EXIF block as Pillow reads it (JPEG: with its "Exif\0\0" prefix)
    exif_orientation: int | None


def inspect_original(data: bytes, key: str) -> OriginalImage:
    """Describe `data` (the bytes of the object at `key`), or raise `UnsupportedImage`."""
    original, image = open_original(data, key)
    image.close()
    return original


def decode_rgb(data: bytes, key: str) -> Image.Image:
    """The original's pixels as a fully loaded RGB image, for the gate. Same checks as `inspect_original`.

    ICC profiles are not applied: the rehydrated file carries the same profile, so comparing the
    stored values compares like with like.
    """
    _, image = open_original(data, key)
    with image:
        return image.convert("RGB")


def open_original(data: bytes, key: str) -> tuple[OriginalImage, Image.Image]:
    """Check and fully decode `data`; return its description and the loaded image (the caller closes it).

    Any warning Pillow gives while reading the file rejects it as `corrupt`, and a decompression-bomb
    warning as `decompression-bomb`. Both rely on `warnings.catch_warnings`, which is process-global
    before Python 3.14: another thread's warnings are briefly affected.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A global switch someone else set would make truncated files look whole; refuse to guess.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated originals would pass")
    if not data:
        raise UnsupportedImage(key, "empty", "the file is empty (0 bytes)")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # the filter added last wins
        image = _open(data, key)
        try:
            _check_format(image, key)
            if image.format == "PNG":
                _verify_png(data, key)
            _load(image, data, key)
            original = _describe(image, data, key)
            if caught:
                # Pillow warns when it skipped or guessed something (mostly damaged EXIF, where the
                # skipped tag could be the orientation). The engine does not guess: it rejects.
                first = _one_line(caught[0].message)
                raise UnsupportedImage(key, "corrupt", f"Pillow read it only with a warning ({first})")
        except BaseException:
            image.close()
            raise
    return original, image


def png_ihdr(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk, or None if it is not there.

    Needed because Pillow opens 16-bit RGB PNGs as 8-bit "RGB" and would hide the bit depth.
    """
    if len(data) < 29 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour_type


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk of a PNG, in file order, up to IEND or as far as the data goes.

    CRCs are not checked here (Pillow's verify() does that); this only reads the container.
    """
    chunks: list[tuple[bytes, bytes]] = []
    at = 8
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if at + 12 + length > len(data):
            break
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        if kind == b"IEND":
            break
        at += 12 + length  # length, type, payload, CRC
    return chunks


def _open(data: bytes, key: str) -> Image.Image:
    try:
        # Only our formats' plugins parse the bytes; anything else is named in _name_unsupported.
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(key, e) from None
    except UnidentifiedImageError:
        pass
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, …
        raise _damaged(key, e, data) from None
    raise _name_unsupported(data, key)


def _name_unsupported(data: bytes, key: str) -> UnsupportedImage:
    fmt = _sniff(data)
    if fmt is not None:
        if _ends_early(data, fmt):
            return UnsupportedImage(key, "truncated", f"the {fmt} file ends before its headers do")
        return UnsupportedImage(key, "corrupt", f"starts like a {fmt} file but cannot be read")
    try:
        # Header parsing only (no decoding), just to name the format in the message.
        with Image.open(io.BytesIO(data)) as other:
            fmt = other.format or "unknown"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        fmt = "an unsupported format"
    except Exception:
        return UnsupportedImage(key, "not-an-image", "not an image file Pillow can identify")
    return UnsupportedImage(
        key, "unsupported-format", f"{fmt} is not regenerated (only {', '.join(SUPPORTED_FORMATS)})"
    )


def _sniff(data: bytes) -> str | None:
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic) and (fmt != "WEBP" or data[8:12] == b"WEBP"):
            return fmt
    return None


def _ends_early(data: bytes, fmt: str) -> bool:
    """Whether a file Pillow could not open was cut short, judged from its container alone."""
    if fmt == "PNG":
        chunks = png_chunks(data)
        return not chunks or chunks[-1][0] != b"IEND"
    if fmt == "WEBP":
        (riff_size,) = struct.unpack("<I", data[4:8]) if len(data) >= 8 else (0,)
        return len(data) < 8 + riff_size
    return b"\xff\xd9" not in data[-64:]  # JPEG: no end-of-image marker near the end


def _check_format(image: Image.Image, key: str) -> None:
    if image.format not in SUPPORTED_FORMATS:
        # e.g. MPO: a JPEG with more pictures behind the first; we could regenerate only one.
        raise UnsupportedImage(
            key,
            "unsupported-format",
            f"{image.format} is not regenerated (only {', '.join(SUPPORTED_FORMATS)})",
        )
    frames = int(getattr(image, "n_frames", 1))
    if frames > 1:
        raise UnsupportedImage(key, "animated", f"an animated {image.format} ({frames} frames)")


def _verify_png(data: bytes, key: str) -> None:
    # verify() checks every chunk's CRC and that IEND is there; load() alone misses a missing tail.
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as probe:
            probe.verify()
    except Exception as e:
        raise _damaged(key, e, data) from None


def _load(image: Image.Image, data: bytes, key: str) -> None:
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(key, e) from None
    except Exception as e:
        raise _damaged(key, e, data) from None


def _describe(image: Image.Image, data: bytes, key: str) -> OriginalImage:
    mode = image.mode
    info = image.info
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in info
    if image.format == "PNG":
        ihdr = png_ihdr(data)
        bit_depth = ihdr[2] if ihdr else 8
    else:
        bit_depth = int(getattr(image, "bits", 8))

    if has_alpha:
        raise UnsupportedImage(key, "alpha", f"has transparency (mode {mode}); regenerated images are opaque")
    if mode in ("1", "L"):
        raise UnsupportedImage(
            key, "grayscale", f"a grayscale image (mode {mode}); the engine regenerates RGB"
        )
    if mode == "CMYK":
        raise UnsupportedImage(key, "cmyk", "a CMYK image; the engine regenerates RGB")
    if mode.startswith(("I", "F")) or bit_depth > 8:
        raise UnsupportedImage(
            key,
            "high-bit-depth",
            f"{bit_depth} bits per channel (mode {mode}); the engine regenerates 8-bit RGB",
        )
    if mode not in ("RGB", "P"):
        raise UnsupportedImage(key, "unsupported-mode", f"mode {mode}; the engine regenerates RGB")

    try:
        orientation = image.getexif().get(_ORIENTATION)
    except Exception as e:
        raise UnsupportedImage(key, "corrupt", f"the EXIF block cannot be read ({_one_line(e)})") from None
    if orientation is not None and orientation != 1:
        # A viewer would rotate or mirror the pixels; a regenerated image could only fake that.
        raise UnsupportedImage(
            key, "exif-orientation", f"EXIF orientation is {orientation}; only 1 (as stored) is regenerated"
        )

    exif = info.get("exif") or None
    icc = info.get("icc_profile") or None
    return OriginalImage(
        key=key,
        format=str(image.format),
        width=image.width,
        height=image.height,
        mode=mode,
        has_alpha=has_alpha,
        bit_depth=bit_depth,
        icc_profile=bytes(icc) if icc else None,
        exif=bytes(exif) if exif else None,
        exif_orientation=None if orientation is None else int(orientation),
    )


def _bomb(key: str, e: Exception) -> UnsupportedImage:
    return UnsupportedImage(
        key,
        "decompression-bomb",
        f"too many pixels to decode safely ({_one_line(e)}); Pillow's limit applies",
    )


def _damaged(key: str, e: BaseException, data: bytes) -> UnsupportedImage:
    text = _one_line(e)
    lowered = text.lower()
    fmt = _sniff(data)
    cut = fmt is not None and _ends_early(data, fmt)
    if cut or isinstance(e, EOFError) or "truncated" in lowered or "incomplete" in lowered:
        return UnsupportedImage(key, "truncated", f"the file ends early ({text})")
    return UnsupportedImage(key, "corrupt", f"the image data is damaged ({text})")


def _one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split()) or type(e).__name__
