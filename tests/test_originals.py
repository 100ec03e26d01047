"""archiver.engine.originals: every kind of bad original is rejected with its reason, never a crash."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from archiver.engine.originals import decode_rgb, inspect_original, png_ihdr
from archiver.errors import ArchiverError, ExitCode, UnsupportedImage
from archiver.example import rumba


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _rgb(size: tuple[int, int] = (16, 12)) -> Image.Image:
    image = Image.new("RGB", size, (200, 40, 40))
    image.putpixel((1, 1), (0, 0, 255))
    return image


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int, depth: int = 1, colour_type: int = 0) -> bytes:
    """A tiny PNG that declares a (possibly huge) size; Pillow checks the size before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


def _reason(data: bytes, tmp_path: Path, name: str) -> str:
    # Files are written and read back so each case is a real file in a directory, as a source holds them.
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnsupportedImage) as info:
        inspect_original(path.read_bytes(), name)
    err = info.value
    assert err.key == name and err.detail and "\n" not in str(err)
    assert str(err).startswith(f"{name}: {err.reason}: ")
    return err.reason


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> list[rumba.CatalogueEntry]:
    return rumba.write_catalogue(tmp_path_factory.mktemp("rumba"))


def test_accepts_catalogue_jpeg_and_png(catalogue: list[rumba.CatalogueEntry]) -> None:
    for fmt in ("JPEG", "PNG"):
        entry = next(e for e in catalogue if e.format == fmt)
        original = inspect_original(entry.path.read_bytes(), entry.key)
        assert (original.format, original.width, original.height, original.mode) == (fmt, 64, 64, "RGB")
        assert original.bit_depth == 8 and not original.has_alpha
        assert original.icc_profile == rumba.srgb_icc()
        assert original.exif is not None and original.exif_orientation == 1


def test_accepts_webp_and_decodes_rgb() -> None:
    data = _save(_rgb(), "WEBP", lossless=True)
    original = inspect_original(data, "a.webp")
    assert original.format == "WEBP" and original.icc_profile is None and original.exif_orientation is None
    pixels = decode_rgb(data, "a.webp")
    assert pixels.mode == "RGB" and pixels.size == (16, 12) and pixels.getpixel((1, 1)) == (0, 0, 255)


def test_error_is_an_archiver_error_with_usage_exit_code() -> None:
    with pytest.raises(ArchiverError) as info:
        inspect_original(b"", "x.png")
    assert info.value.exit_code == ExitCode.USAGE


def test_empty_file(tmp_path: Path) -> None:
    assert _reason(b"", tmp_path, "empty.png") == "empty"


def test_text_with_an_image_name(tmp_path: Path) -> None:
    assert _reason(b"key,prompt\nnot,an image\n", tmp_path, "notes.jpg") == "not-an-image"


def _noisy(size: int = 64) -> Image.Image:
    # Noise does not compress, so the image data is most of the file and a cut lands inside it.
    return Image.frombytes("RGB", (size, size), bytes((i * 7919) % 251 for i in range(size * size * 3)))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_in_image_data(tmp_path: Path, fmt: str) -> None:
    data = _save(_noisy(), fmt, icc_profile=rumba.srgb_icc())
    assert _reason(data[: len(data) * 3 // 4], tmp_path, f"cut.{fmt.lower()}") == "truncated"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_in_headers(tmp_path: Path, fmt: str) -> None:
    data = _save(_noisy(), fmt, icc_profile=rumba.srgb_icc())
    assert _reason(data[:300], tmp_path, f"stub.{fmt.lower()}") == "truncated"


def test_png_missing_only_its_end_is_truncated(tmp_path: Path) -> None:
    # Pillow's load() accepts this one; the chunk walk in verify() does not.
    data = _save(_rgb(), "PNG")
    assert _reason(data[:-12], tmp_path, "no-iend.png") == "truncated"


def test_corrupt_png_data(tmp_path: Path) -> None:
    data = bytearray(_save(_rgb((64, 64)), "PNG"))
    at = data.index(b"IDAT") + 10
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    assert _reason(bytes(data), tmp_path, "flipped.png") == "corrupt"


def test_corrupt_jpeg_tables(tmp_path: Path) -> None:
    data = bytearray(_save(_rgb((64, 64)), "JPEG"))
    at = data.index(b"\xff\xdb")  # the quantization table segment
    data[at : at + 4] = b"\xff\xd9\x00\x00"
    assert _reason(bytes(data), tmp_path, "damaged.jpg") == "corrupt"


def test_corrupt_header_of_a_known_format(tmp_path: Path) -> None:
    data = bytearray(_save(_rgb(), "PNG"))
    data[18] ^= 0xFF  # inside IHDR: its CRC no longer matches
    assert _reason(bytes(data), tmp_path, "bad-ihdr.png") == "corrupt"


def test_decompression_bomb_error(tmp_path: Path) -> None:
    # 20000×20000 = 400 Mpx: over twice Pillow's default MAX_IMAGE_PIXELS, so Pillow itself errors.
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    assert _reason(_png_header_only(20_000, 20_000), tmp_path, "bomb.png") == "decompression-bomb"


def test_decompression_bomb_warning_is_an_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Between the limit and twice the limit Pillow only warns; we refuse all the same.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = _save(_rgb((12, 12)), "PNG")  # 144 px: over 100, under 200
    assert _reason(data, tmp_path, "warn.png") == "decompression-bomb"


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("GIF", "anim.gif"), ("TIFF", "scan.tif"), ("BMP", "old.bmp")],
)
def test_unsupported_format(tmp_path: Path, fmt: str, name: str) -> None:
    path = tmp_path / name
    assert _reason(_save(_rgb(), fmt), tmp_path, name) == "unsupported-format"
    with pytest.raises(UnsupportedImage, match=fmt):
        inspect_original(path.read_bytes(), name)


def test_animated_png(tmp_path: Path) -> None:
    frames = [_rgb(), Image.new("RGB", (16, 12), (0, 200, 0))]
    data = _save(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert _reason(data, tmp_path, "anim.png") == "animated"


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("gray.png", lambda: _save(Image.new("L", (8, 8), 128), "PNG"), "grayscale"),
        ("gray.jpg", lambda: _save(Image.new("L", (8, 8), 128), "JPEG"), "grayscale"),
        ("bilevel.png", lambda: _save(Image.new("1", (8, 8), 1), "PNG"), "grayscale"),
        ("cmyk.jpg", lambda: _save(Image.new("CMYK", (8, 8), (0, 50, 100, 0)), "JPEG"), "cmyk"),
        ("gray16.png", lambda: _save(Image.new("I;16", (8, 8), 4000), "PNG"), "high-bit-depth"),
        ("rgba.png", lambda: _save(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "PNG"), "alpha"),
        ("rgba.webp", lambda: _save(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "WEBP"), "alpha"),
        ("la.png", lambda: _save(Image.new("LA", (8, 8), (1, 4)), "PNG"), "alpha"),
        ("ptrans.png", lambda: _save(_rgb().convert("P"), "PNG", transparency=0), "alpha"),
        ("rgbtrns.png", lambda: _save(_rgb(), "PNG", transparency=(200, 40, 40)), "alpha"),
    ],
)
def test_modes_the_engine_does_not_regenerate(tmp_path: Path, name: str, make: object, reason: str) -> None:
    assert callable(make)
    assert _reason(make(), tmp_path, name) == reason


@pytest.mark.parametrize("colours", [256, 16])
def test_an_opaque_palette_png_is_accepted_with_its_bit_depth(colours: int) -> None:
    # Its colours are 8-bit RGB: the engine renders RGB and the encoding profile writes a palette back.
    image = Image.new("RGB", (16, 16))
    image.putdata([(17 * (i % 12), 40, 255 - i) for i in range(256)])  # 12 reds x 256 blues
    data = _save(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=colours), "PNG")
    original = inspect_original(data, "palette.png")
    assert (original.format, original.mode) == ("PNG", "P")
    assert original.bit_depth == png_ihdr(data)[2] == (8 if colours == 256 else 4)  # type: ignore[index]
    assert decode_rgb(data, "palette.png").mode == "RGB"


def test_16_bit_rgb_png_is_caught_from_ihdr(tmp_path: Path) -> None:
    # Pillow opens 16-bit RGB PNGs as 8-bit "RGB", so the mode alone would let this through.
    width = height = 4
    raw = b"".join(b"\x00" + b"\x12\x34" * 3 * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    assert png_ihdr(data) == (4, 4, 16, 2)
    assert _reason(data, tmp_path, "deep.png") == "high-bit-depth"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_other_than_1(tmp_path: Path, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = _save(_rgb(), fmt, exif=exif.tobytes())
    assert _reason(data, tmp_path, f"rotated.{fmt.lower()}") == "exif-orientation"


def test_refuses_to_run_when_truncated_images_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        inspect_original(_save(_rgb(), "PNG"), "a.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_damaged_bytes_never_escape_as_anything_but_unsupported_image(fmt: str) -> None:
    # Seeded cuts and byte flips all over a real file: each one is accepted or rejected, never a crash.
    data = _save(_noisy(32), fmt, icc_profile=rumba.srgb_icc(), exif=rumba.exif_bytes())
    rng = random.Random(fmt)
    cases = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 60))]
    for _ in range(150):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        cases.append(bytes(damaged))
    reasons = set()
    for case in cases:
        try:
            inspect_original(case, f"fuzz.{fmt.lower()}")
        except UnsupportedImage as e:
            reasons.add(e.reason)
    assert reasons <= {
        "empty",
        "not-an-image",
        "truncated",
        "corrupt",
        "unsupported-format",
        "exif-orientation",
    }
    assert "truncated" in reasons


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_damaged_exif_is_corrupt(tmp_path: Path, fmt: str) -> None:
    # Pillow only warns and skips tags it cannot read; one of them could be the orientation.
    exif = rumba.exif_bytes()
    data = _save(_rgb(), fmt, exif=exif[: len(exif) - 30])
    assert _reason(data, tmp_path, f"bad-exif.{fmt.lower()}") == "corrupt"
