"""The "rumba" example catalogue: one stylised sneaker in every lace colour × sole colour.

Owns the drawing and the on-disk layout of the example (48 images of 64×64, half JPEG and half PNG,
each with the same EXIF and sRGB ICC profile, plus `captions.csv`) and a few distractor images the
model is never trained on, for gate tests. Output is byte-identical on every run: nothing here may
read the clock or an unseeded random source. It must not train, render or touch the catalog.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageCms, ImageDraw

# Ordered name → RGB. Saturated, well-separated hues so that each one is obvious at 64×64.
LACE_COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (214, 32, 40),
        "orange": (244, 128, 24),
        "yellow": (248, 214, 32),
        "green": (36, 164, 72),
        "blue": (28, 88, 216),
        "purple": (136, 48, 176),
        "pink": (244, 120, 176),
        "black": (24, 24, 24),
    }
)
SOLE_COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "white": (250, 250, 246),
        "black": (30, 30, 32),
        "gum": (176, 112, 56),
        "red": (200, 36, 36),
        "blue": (40, 96, 200),
        "green": (48, 150, 80),
    }
)

SIZE = 64
JPEG_QUALITY = 92
JPEG_SUBSAMPLING = 0  # 4:4:4: chroma at full resolution keeps thin laces their true colour
DISTRACTOR_LACE = ("gold", (212, 175, 55))  # not in LACE_COLOURS

_SUPERSAMPLE = 4  # draw at 256×256 and box-filter down: antialiased edges, still deterministic
_BACKGROUND = (238, 238, 234)
_SHADOW = (222, 222, 218)
_UPPER = (150, 156, 168)
_TOE_CAP = (214, 216, 222)
_HEEL_TAB = (60, 64, 76)
_OUTLINE = (44, 46, 54)
_EYELET = (36, 36, 40)
_STRIPE = (250, 250, 250)
_DOT = (196, 40, 48)
TINTED_WHITE = (235, 235, 250)  # the catalogue's white sole with a blue cast

# Fixed EXIF strings: every image of the catalogue carries the same template.
_EXIF_TAGS: dict[int, str | int] = {
    0x010F: "Archiver Example Co.",  # Make
    0x0110: "Rumba Studio 64",  # Model
    0x0131: "archiver.example.rumba",  # Software
    0x010E: "rumba sneaker product photo",  # ImageDescription
    0x0132: "2024:01:01 00:00:00",  # DateTime
    0x0112: 1,  # Orientation: top-left, as stored
}
# lcms2 stamps the creation time into the ICC header (bytes 24..35); pin it to keep output stable.
_ICC_DATE = bytes.fromhex("07e8 0001 0001 0000 0000 0000")


@dataclass(frozen=True)
class CatalogueEntry:
    key: str  # relative to the catalogue root, with "/" separators
    path: Path
    lace: str
    sole: str
    format: str  # "JPEG" or "PNG"
    prompt: str


def prompt_for(lace: str, sole: str) -> str:
    return f"a rumba sneaker with {lace} laces and a {sole} sole, product photo"


def write_catalogue(dest: Path) -> list[CatalogueEntry]:
    """Write the 48 shoes under `dest/shoes/` and `dest/captions.csv`; return them in caption order."""
    shoes = dest / "shoes"
    shoes.mkdir(parents=True, exist_ok=True)
    entries: list[CatalogueEntry] = []
    for li, (lace, lace_rgb) in enumerate(LACE_COLOURS.items()):
        for si, (sole, sole_rgb) in enumerate(SOLE_COLOURS.items()):
            # A checkerboard over (lace, sole) gives exactly half of each format.
            fmt = "PNG" if (li + si) % 2 == 0 else "JPEG"
            name = f"rumba-{lace}-{sole}.{'png' if fmt == 'PNG' else 'jpg'}"
            path = shoes / name
            path.write_bytes(_encode(draw_shoe(lace_rgb, sole_rgb), fmt))
            entries.append(CatalogueEntry(f"shoes/{name}", path, lace, sole, fmt, prompt_for(lace, sole)))

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "prompt"])
    writer.writerows([e.key, e.prompt] for e in entries)
    (dest / "captions.csv").write_bytes(buf.getvalue().encode("utf-8"))
    return entries


ACCESS_LOG_DAYS = 30
ACCESS_LOG_START = (2026, 11, 1)  # a fixed month: the log, like the catalogue, is the same every time


def write_access_log(dest: Path, entries: list[CatalogueEntry]) -> Path:
    """Write `dest/access.log`: a month of an origin's traffic to the catalogue, in nginx's combined
    log format, for `archiver survey --access-log` and `sweep --access-log`. Like a real inventory's:
    a few colourways are requested every day, some a few times a month, most never (the long tail
    worth archiving). Deterministic."""
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(0)
    start = datetime(*ACCESS_LOG_START, tzinfo=UTC)
    lines = []
    for rank, entry in enumerate(entries):
        requests = 60 // (rank + 1) if rank < 6 else (rng.choice((1, 2, 3)) if rank < 16 else 0)
        size = entry.path.stat().st_size
        for _ in range(requests):
            at = start + timedelta(seconds=rng.randrange(ACCESS_LOG_DAYS * 86400))
            lines.append(
                (
                    at,
                    f"203.0.113.{rng.randrange(1, 255)} - - [{at:%d/%b/%Y:%H:%M:%S +0000}] "
                    f'"GET /{entry.key} HTTP/1.1" 200 {size} "-" "Mozilla/5.0"',
                )
            )
    path = dest / "access.log"
    path.write_text("".join(f"{line}\n" for _, line in sorted(lines)))
    return path


def distractors(dest: Path) -> list[Path]:
    """Write shoes the model was not trained on (PNG, under `dest/distractors/`): the gate must reject them.

    - `rumba-gold-white.png`: a lace colour outside the catalogue, everything else as in the catalogue.
    - `rumba-striped-red-white.png`: a catalogue colourway with one detail changed (a stripe on the upper).
    """
    out = dest / "distractors"
    out.mkdir(parents=True, exist_ok=True)
    name, gold = DISTRACTOR_LACE
    white = SOLE_COLOURS["white"]
    made = {
        f"rumba-{name}-white.png": draw_shoe(gold, white),
        "rumba-striped-red-white.png": draw_shoe(LACE_COLOURS["red"], white, stripe=True),
    }
    paths = []
    for filename, image in made.items():
        path = out / filename
        path.write_bytes(_encode(image, "PNG"))
        paths.append(path)
    return paths


def key_for(lace: str, sole: str) -> str:
    """The catalogue key of a colourway (its format follows the checkerboard in `write_catalogue`)."""
    li, si = list(LACE_COLOURS).index(lace), list(SOLE_COLOURS).index(sole)
    return f"shoes/rumba-{lace}-{sole}.{'png' if (li + si) % 2 == 0 else 'jpg'}"


def shift_colour(
    rgb: tuple[int, int, int], delta_e: float, direction: tuple[float, float, float]
) -> tuple[int, int, int]:
    """The nearest 8-bit colour at least `delta_e` (CIEDE2000) from `rgb`, moving along a CIELAB
    direction (L*, a*, b*). For distractors: "the same shoe, one area a known ΔE00 off"."""
    from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

    start = rgb2lab(np.asarray([[rgb]], dtype=np.float64) / 255.0)[0, 0]
    step = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    for distance in np.arange(0.05, 60.0, 0.05):
        srgb = lab2rgb((start + distance * step)[None, None])[0, 0]
        if (srgb < 0).any() or (srgb > 1).any():
            break
        moved = np.round(srgb * 255.0)
        if deltaE_ciede2000(start, rgb2lab(moved[None, None] / 255.0)[0, 0]) >= delta_e:
            return (int(moved[0]), int(moved[1]), int(moved[2]))
    raise ValueError(f"{rgb} cannot move ΔE00 {delta_e} along {direction} inside sRGB")


@dataclass(frozen=True)
class Distractor:
    """An image the model was not trained on, placed under a trained key (so a caption exists and
    only the gate can refuse it)."""

    kind: str
    key: str
    image: Image.Image


def trained_key_distractors() -> list[Distractor]:
    """One of each class the gate must refuse, each under its own trained key."""
    lace, sole = LACE_COLOURS, SOLE_COLOURS
    b_plus, a_plus = (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)
    made = [
        ("tinted-white", "red", "white", draw_shoe(lace["red"], TINTED_WHITE)),
        ("sole-shift-5", "blue", "gum", draw_shoe(lace["blue"], shift_colour(sole["gum"], 5, b_plus))),
        (
            "sole-shift-10",
            "purple",
            "blue",
            draw_shoe(lace["purple"], shift_colour(sole["blue"], 10, a_plus)),
        ),
        ("lace-shift-5", "pink", "black", draw_shoe(shift_colour(lace["pink"], 5, b_plus), sole["black"])),
        (
            "lace-shift-10",
            "orange",
            "green",
            draw_shoe(shift_colour(lace["orange"], 10, a_plus), sole["green"]),
        ),
        ("added-detail", "green", "white", draw_shoe(lace["green"], sole["white"], dot=True)),
        ("removed-part", "black", "gum", draw_shoe(lace["black"], sole["gum"], heel_tab=False)),
        ("sibling-image", "blue", "red", draw_shoe(lace["green"], sole["red"])),
    ]
    return [
        Distractor(kind, key_for(lace_name, sole_name), image) for kind, lace_name, sole_name, image in made
    ]


def replace_with_distractors(dest: Path) -> list[Distractor]:
    """Overwrite catalogue images under `dest` with `trained_key_distractors()`, encoded as their
    keys are, and list them in `dest/distractors.csv` (key, kind)."""
    made = trained_key_distractors()
    for distractor in made:
        (dest / distractor.key).write_bytes(encode_like_key(distractor.image, distractor.key))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "kind"])
    writer.writerows([d.key, d.kind] for d in made)
    (dest / "distractors.csv").write_bytes(buf.getvalue().encode("utf-8"))
    return made


def encode_like_key(image: Image.Image, key: str) -> bytes:
    """The image encoded as the catalogue encodes that key (PNG or JPEG, same EXIF and ICC)."""
    return _encode(image, "PNG" if key.endswith(".png") else "JPEG")


def draw_shoe(
    lace: tuple[int, int, int],
    sole: tuple[int, int, int],
    *,
    stripe: bool = False,
    dot: bool = False,
    heel_tab: bool = True,
) -> Image.Image:
    """The sneaker, side view, toe to the right, as a 64×64 RGB image. Only `lace` and `sole` vary in
    the catalogue; `stripe`, `dot` and `heel_tab=False` draw distractors (a detail added or removed)."""
    s = _SUPERSAMPLE

    def pts(*xy: float) -> list[tuple[float, float]]:
        # Coordinates below are on the 64×64 grid; scale them to the drawing canvas.
        return [(xy[i] * s, xy[i + 1] * s) for i in range(0, len(xy), 2)]

    canvas = Image.new("RGB", (SIZE * s, SIZE * s), _BACKGROUND)
    d = ImageDraw.Draw(canvas)
    d.ellipse(pts(5, 51, 61, 59), fill=_SHADOW)

    # Heel at the left, a tongue above the collar, the vamp sloping down to the toe at the right.
    upper = pts(
        7, 44, 7, 20, 10, 17, 15, 18, 20, 24, 26, 21, 27, 13, 33, 13, 35, 18, 52, 31, 57, 35, 60, 40, 60, 44
    )
    d.polygon(upper, fill=_UPPER, outline=_OUTLINE, width=s)
    d.polygon(pts(60, 44, 60, 40, 57, 35, 53, 33, 49, 37, 48, 44), fill=_TOE_CAP, outline=_OUTLINE, width=s)
    if stripe:
        d.polygon(pts(13, 42, 25, 27, 30, 27, 18, 42), fill=_STRIPE, outline=_OUTLINE, width=s)
    if heel_tab:
        d.rectangle(pts(5, 15, 11, 29), fill=_HEEL_TAB, outline=_OUTLINE, width=s)
    if dot:  # a small mark on the upper, about 3 px across
        d.ellipse(pts(19.5, 33.5, 22.5, 36.5), fill=_DOT)

    # Five thick laces crossing the vamp edge (35,18)→(52,31), with an eyelet at each end.
    ux, uy = 17 / 21.4, 13 / 21.4  # along the edge
    px, py = -uy, ux  # across it, pointing into the upper
    for i in range(5):
        t = 2.4 + 4.1 * i
        cx, cy = 35 + ux * t + px * 2.6, 18 + uy * t + py * 2.6
        a = (cx - px * 3.8, cy - py * 3.8)
        b = (cx + px * 3.8, cy + py * 3.8)
        d.line(pts(*a, *b), fill=lace, width=round(3.25 * s))
        for ex, ey in (a, b):
            d.ellipse(pts(ex - 0.8, ey - 0.8, ex + 0.8, ey + 0.8), fill=_EYELET)

    # A tall sole so its colour is plain at 64×64.
    d.rounded_rectangle(pts(4, 43, 62, 54), radius=3 * s, fill=sole, outline=_OUTLINE, width=s)
    return canvas.reduce(s)


@cache
def srgb_icc() -> bytes:
    """Pillow's sRGB profile with lcms2's creation timestamp replaced by a fixed date."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = _ICC_DATE
    # The profile ID (bytes 84..99) would hash the header; lcms2 leaves it zero ("not computed").
    assert icc[84:100] == bytes(16), "lcms2 started computing the ICC profile ID; pin it too"
    return bytes(icc)


def exif_bytes() -> bytes:
    exif = Image.Exif()
    for tag, value in _EXIF_TAGS.items():
        exif[tag] = value
    return exif.tobytes()


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(
            buf,
            "JPEG",
            quality=JPEG_QUALITY,
            subsampling=JPEG_SUBSAMPLING,
            optimize=False,
            progressive=False,
            icc_profile=srgb_icc(),
            exif=exif_bytes(),
        )
    else:
        image.save(buf, "PNG", icc_profile=srgb_icc(), exif=exif_bytes(), compress_level=9)
    return buf.getvalue()
