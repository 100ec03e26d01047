"""archiver.engine.encoding: capture an original's encoding, store it canonically, write it back."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin

from archiver.engine.encoding import EncodingProfile, capture_profile, encode
from archiver.engine.originals import decode_rgb, png_chunks, png_ihdr
from archiver.errors import UnsupportedImage
from archiver.example import rumba


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> list[rumba.CatalogueEntry]:
    return rumba.write_catalogue(tmp_path_factory.mktemp("rumba"))


def _entries(catalogue: list[rumba.CatalogueEntry], fmt: str) -> list[rumba.CatalogueEntry]:
    return [e for e in catalogue if e.format == fmt]


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _photo(size: int = 64) -> Image.Image:
    # A smooth gradient with some detail: a lossy encoder has something to do.
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    return Image.merge(
        "RGB", (image.getchannel(0), image.getchannel(0).rotate(90), Image.new("L", image.size, 90))
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_reencoded_original_keeps_its_encoding(catalogue: list[rumba.CatalogueEntry], fmt: str) -> None:
    entry = _entries(catalogue, fmt)[0]
    data = entry.path.read_bytes()
    profile = capture_profile(data, entry.key)
    out = encode(decode_rgb(data, entry.key), profile)

    with Image.open(io.BytesIO(data)) as before, Image.open(io.BytesIO(out)) as after:
        assert (after.format, after.size) == (before.format, before.size)
        assert after.info["icc_profile"] == before.info["icc_profile"] == rumba.srgb_icc()
        assert after.info["exif"] == before.info["exif"]
        assert after.getexif() == before.getexif()
        if fmt == "JPEG":
            assert isinstance(before, JpegImagePlugin.JpegImageFile)
            assert isinstance(after, JpegImagePlugin.JpegImageFile)
            assert after.quantization == before.quantization
            assert JpegImagePlugin.get_sampling(after) == JpegImagePlugin.get_sampling(before) == 0
            assert profile.jpeg_subsampling == rumba.JPEG_SUBSAMPLING and profile.jpeg_progressive is False
        else:
            # 149 colours saved as RGB: written as a palette of exactly those colours (smaller), the
            # very same pixels decoded
            assert after.convert("RGB").tobytes() == before.tobytes()
            assert (before.mode, after.mode) == ("RGB", "P")
            assert (profile.png_mode, profile.png_bit_depth, profile.png_compress_level) == ("RGB", 8, 9)
            assert profile.png_colours == len(before.getcolors(256) or ()) <= 256
            assert len(out) <= len(data)


def test_catalogue_shares_one_profile_per_format(catalogue: list[rumba.CatalogueEntry]) -> None:
    for fmt in ("JPEG", "PNG"):
        ids = {capture_profile(e.path.read_bytes(), e.key).profile_id for e in _entries(catalogue, fmt)[:6]}
        assert len(ids) == 1, fmt
    jpeg, png = (capture_profile(_entries(catalogue, f)[0].path.read_bytes()) for f in ("JPEG", "PNG"))
    assert jpeg.profile_id != png.profile_id


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_profile_json_is_canonical_small_and_round_trips(
    catalogue: list[rumba.CatalogueEntry], fmt: str
) -> None:
    profile = capture_profile(_entries(catalogue, fmt)[0].path.read_bytes())
    text = profile.to_json()
    assert EncodingProfile.from_json(text) == profile
    assert EncodingProfile.from_json(text).to_json() == text
    doc = json.loads(text)
    assert text == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert len(profile.profile_id) == 64
    bare = dataclasses.replace(profile, icc_profile=None, exif=None).to_json()
    assert len(bare) < 2048, len(bare)
    assert len(text) < 2048, len(text)  # with the 588-byte sRGB ICC and the EXIF template


def test_encode_is_deterministic_and_ignores_image_metadata(catalogue: list[rumba.CatalogueEntry]) -> None:
    for fmt in ("JPEG", "PNG"):
        entry = _entries(catalogue, fmt)[0]
        data = entry.path.read_bytes()
        profile = capture_profile(data)
        pixels = decode_rgb(data, entry.key)
        first = encode(pixels, profile)
        noisy = pixels.copy()
        noisy.info.update(icc_profile=b"junk", exif=b"Exif\x00\x00junk", parameters="a prompt", dpi=(1, 1))
        assert encode(pixels, profile) == first
        assert encode(noisy, profile) == first


def test_png_text_chunks_are_not_copied_but_colour_chunks_are() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 64x64")
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    data = _save(_photo(), "PNG", pnginfo=info, dpi=(300, 300))
    profile = capture_profile(data)
    assert profile.png_chunks == (("gAMA", (45455).to_bytes(4, "big")),)
    out = encode(decode_rgb(data, "a.png"), profile)
    kinds = [kind for kind, _ in png_chunks(out)]
    assert b"tEXt" not in kinds and b"iTXt" not in kinds and b"gAMA" in kinds and b"pHYs" in kinds
    with Image.open(io.BytesIO(out)) as image:
        assert "parameters" not in image.info and image.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_jpeg_progressive_420_and_dpi_round_trip() -> None:
    data = _save(_photo(), "JPEG", quality=70, subsampling=2, progressive=True, dpi=(300, 300))
    profile = capture_profile(data)
    assert (profile.jpeg_subsampling, profile.jpeg_progressive, profile.dpi) == (2, True, (300.0, 300.0))
    out = encode(decode_rgb(data, "a.jpg"), profile)
    with Image.open(io.BytesIO(data)) as before, Image.open(io.BytesIO(out)) as after:
        assert isinstance(before, JpegImagePlugin.JpegImageFile)
        assert isinstance(after, JpegImagePlugin.JpegImageFile)
        assert after.quantization == before.quantization
        assert JpegImagePlugin.get_sampling(after) == 2 and after.info.get("progressive")
        assert after.info["dpi"] == (300, 300)


@pytest.mark.parametrize("quality", [40, 80])
def test_webp_lossy_quality_is_a_close_guess(quality: int) -> None:
    data = _save(_photo(128), "WEBP", quality=quality)
    profile = capture_profile(data)
    assert profile.webp_lossless is False and profile.webp_quality is not None
    assert abs(profile.webp_quality - quality) <= 15  # a guess from sizes; see the module docstring
    out = encode(decode_rgb(data, "a.webp"), profile)
    assert out == encode(decode_rgb(data, "a.webp"), profile)
    assert Image.open(io.BytesIO(out)).format == "WEBP"


def test_webp_lossless_is_detected_and_kept() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    data = _save(_photo(), "WEBP", lossless=True, exif=exif.tobytes(), icc_profile=rumba.srgb_icc())
    profile = capture_profile(data)
    assert profile.webp_lossless is True and profile.webp_quality is None
    out = encode(decode_rgb(data, "a.webp"), profile)
    with Image.open(io.BytesIO(out)) as after, Image.open(io.BytesIO(data)) as before:
        assert after.tobytes() == before.tobytes()
        assert after.info["icc_profile"] == rumba.srgb_icc() and after.getexif()[0x010F] == "Maker"


def test_capture_refuses_what_originals_refuse() -> None:
    with pytest.raises(UnsupportedImage) as info:
        capture_profile(_save(Image.new("RGBA", (4, 4)), "PNG"), "a.png")
    assert info.value.reason == "alpha"


def test_encode_refuses_non_rgb_and_bad_profiles() -> None:
    with pytest.raises(ValueError, match="RGB"):
        encode(Image.new("RGBA", (4, 4)), EncodingProfile(format="PNG", png_mode="RGB", png_bit_depth=8))
    with pytest.raises(ValueError, match="quantization"):
        encode(Image.new("RGB", (4, 4)), EncodingProfile(format="JPEG", jpeg_subsampling=0))
    with pytest.raises(ValueError, match="GIF"):
        encode(Image.new("RGB", (4, 4)), EncodingProfile(format="GIF"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"format":"PNG","png_bit_depth":8,"png_mode":"RGB"}', "version"),
        (b'{"format":"PNG","png_bit_depth":8,"png_mode":"RGB","v":1,"colour":1}', "unknown field"),
        (b'{"format":"PNG","png_bit_depth":true,"png_mode":"RGB","v":1}', "png_bit_depth"),
        (b'{"exif":"***","format":"PNG","png_bit_depth":8,"png_mode":"RGB","v":1}', "exif"),
        (b'{"format":"PNG","png_bit_depth":16,"png_mode":"RGB","v":1}', "8-bit RGB"),
        (b'{"v":1}', "format"),
        (b'{"format":"PNG","png_bit_depth":8,"png_colours":9,"png_mode":"RGB","v":1}', "unknown field"),
        (b'{"format":"PNG","png_bit_depth":8,"png_mode":"RGB","v":3}', "version"),
        (b'{"format":"PNG","png_bit_depth":8,"png_colours":300,"png_mode":"RGB","v":2}', "png_colours"),
        (b'{"format":"PNG","png_bit_depth":4,"png_mode":"P","v":2}', "needs png_colours"),
        (b'{"format":"PNG","png_bit_depth":8,"png_mode":"RGB","size_notes":["smaller"],"v":2}', "size note"),
    ],
)
def test_from_json_names_what_is_wrong(text: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EncodingProfile.from_json(text)


def _render_like(image: Image.Image, seed: int = 0) -> Image.Image:
    """`image` with a render's noise: every level moved by up to 4, seeded (a render of a memorized
    flat image holds thousands of colours where the original held a hundred)."""
    rng = np.random.default_rng(seed)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-4, 5, (image.height, image.width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse)


def test_version_1_profiles_read_and_encode_as_before(catalogue: list[rumba.CatalogueEntry]) -> None:
    # A record promises the SHA-256 of its served bytes: a version-1 profile must keep its JSON, its
    # id and its bytes (level 6, standard Huffman tables, RGB as rendered).
    png, jpeg = (_entries(catalogue, f)[0] for f in ("PNG", "JPEG"))
    for entry in (png, jpeg):
        data = entry.path.read_bytes()
        old = dataclasses.replace(capture_profile(data), png_colours=None, png_compress_level=None)
        assert old.jpeg_optimize is None and old.size_notes is None
        text = old.to_json()
        assert json.loads(text)["v"] == 1 and EncodingProfile.from_json(text) == old
        render = _render_like(decode_rgb(data, entry.key))
        if entry.format == "PNG":
            info = PngImagePlugin.PngInfo()
            expected = _save(
                render, "PNG", icc_profile=rumba.srgb_icc(), exif=old.exif, pnginfo=info,
                optimize=False, compress_level=6,
            )  # fmt: skip
        else:
            expected = _save(
                render, "JPEG", icc_profile=rumba.srgb_icc(), exif=old.exif,
                qtables=[list(t) for t in old.jpeg_qtables or ()], subsampling=0, progressive=False,
                optimize=False,
            )  # fmt: skip
        assert encode(render, EncodingProfile.from_json(text)) == expected


def test_a_few_colour_png_is_served_no_larger_than_the_original(
    catalogue: list[rumba.CatalogueEntry],
) -> None:
    for i, entry in enumerate(_entries(catalogue, "PNG")[:4]):
        data = entry.path.read_bytes()
        profile = capture_profile(data, entry.key)
        original = decode_rgb(data, entry.key)
        render = _render_like(original, seed=i)
        assert len(encode(render, dataclasses.replace(profile, png_colours=None))) > 2 * len(data)
        out = encode(render, profile)
        assert out == encode(render, profile)  # deterministic: a record stores its SHA-256
        assert len(out) <= 1.1 * len(data), (entry.key, len(out), len(data))
        served = decode_rgb(out, entry.key)
        assert len(served.getcolors(256) or ()) <= (profile.png_colours or 0)
        # flat areas smoothed toward what the original holds: no further from it than the render
        assert _psnr(original, served) >= _psnr(original, render) - 0.5


@pytest.mark.parametrize("colours", [256, 16])
def test_palette_png_round_trips_with_its_bit_depth(colours: int) -> None:
    source = _photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=colours)
    data = _save(source, "PNG", optimize=True)
    profile = capture_profile(data, "p.png")
    assert profile.png_mode == "P" and profile.png_bit_depth == (8 if colours == 256 else 4)
    assert profile.png_colours == len(source.convert("RGB").getcolors(256) or ())
    original = decode_rgb(data, "p.png")
    out = encode(original, profile)
    with Image.open(io.BytesIO(out)) as written:
        assert written.mode == "P" and written.convert("RGB").tobytes() == original.tobytes()
    assert png_ihdr(out)[2:] == (profile.png_bit_depth, 3)  # type: ignore[index]
    served = decode_rgb(encode(_render_like(original), profile), "p.png")
    assert len(served.getcolors(256) or ()) <= (profile.png_colours or 0)


def test_png_zlib_level_and_many_colours_are_captured() -> None:
    photo = _render_like(_photo())  # thousands of colours
    for level, expected in ((1, 1), (6, None), (9, 9)):
        profile = capture_profile(_save(photo, "PNG", compress_level=level))
        assert profile.png_compress_level == expected
        assert profile.png_colours is None and profile.size_notes == ("png-many-colours",)


def test_jpeg_optimized_huffman_tables_are_detected_and_written() -> None:
    photo = _photo()
    plain = capture_profile(_save(photo, "JPEG", quality=85))
    assert plain.jpeg_optimize is None and json.loads(plain.to_json())["v"] == 1
    data = _save(photo, "JPEG", quality=85, optimize=True)
    profile = capture_profile(data)
    assert profile.jpeg_optimize is True
    out = encode(decode_rgb(data, "o.jpg"), profile)
    assert len(out) < len(encode(decode_rgb(data, "o.jpg"), plain)) and len(out) <= 1.05 * len(data)
    progressive = capture_profile(_save(photo, "JPEG", quality=85, progressive=True))
    assert progressive.jpeg_progressive is True and progressive.jpeg_optimize is None


def test_an_interlaced_png_says_why_its_bytes_differ() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # 1x1 Adam7: the only pixel is in the first pass, the other six passes are empty
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 1)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x10\x20\x30"))
    data += chunk(b"IEND", b"")
    profile = capture_profile(data, "adam7.png")
    assert profile.size_notes == ("png-interlace-dropped",) and profile.png_colours == 1
    out = encode(decode_rgb(data, "adam7.png"), profile)
    assert out[28] == 0  # IHDR: not interlaced
    assert decode_rgb(out, "x.png").getpixel((0, 0)) == (0x10, 0x20, 0x30)
