"""archiver.example.rumba: the example catalogue is complete, byte-identical on every run, and only
the lace and sole colours vary between its images."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from archiver.example import rumba


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[rumba.CatalogueEntry]]:
    root = tmp_path_factory.mktemp("rumba")
    entries = rumba.write_catalogue(root)
    rumba.distractors(root)
    return root, entries


@pytest.fixture
def root(written: tuple[Path, list[rumba.CatalogueEntry]]) -> Path:
    return written[0]


@pytest.fixture
def entries(written: tuple[Path, list[rumba.CatalogueEntry]]) -> list[rumba.CatalogueEntry]:
    return written[1]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_byte_identical_on_every_run(root: Path, tmp_path: Path) -> None:
    rumba.write_catalogue(tmp_path)
    rumba.distractors(tmp_path)
    first, second = _tree_digest(root), _tree_digest(tmp_path)
    assert len(first) == 48 + 1 + 2
    assert first == second


def test_icc_profile_is_pinned() -> None:
    rumba.srgb_icc.cache_clear()
    icc = rumba.srgb_icc()
    assert icc[36:40] == b"acsp" and icc[24:36] == bytes.fromhex("07e8 0001 0001 0000 0000 0000")


def test_layout_formats_and_captions(root: Path, entries: list[rumba.CatalogueEntry]) -> None:
    assert len(entries) == len(rumba.LACE_COLOURS) * len(rumba.SOLE_COLOURS) == 48
    assert sum(e.format == "JPEG" for e in entries) == 24
    assert len({e.key for e in entries}) == 48
    for e in entries:
        assert e.key == e.path.relative_to(root).as_posix()
        assert e.key == f"shoes/rumba-{e.lace}-{e.sole}.{'jpg' if e.format == 'JPEG' else 'png'}"
        with Image.open(e.path) as image:
            assert (image.format, image.mode, image.size) == (e.format, "RGB", (64, 64))
            assert image.info["icc_profile"] == rumba.srgb_icc()
            exif = image.getexif()
            assert exif[0x0112] == 1 and exif[0x010F] == "Archiver Example Co."
            if e.format == "JPEG":
                assert isinstance(image, JpegImagePlugin.JpegImageFile) and "progressive" not in image.info
                assert JpegImagePlugin.get_sampling(image) == rumba.JPEG_SUBSAMPLING

    with (root / "captions.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["key"], r["prompt"]) for r in rows] == [(e.key, e.prompt) for e in entries]
    assert rows[0]["prompt"] == "a rumba sneaker with red laces and a white sole, product photo"


def test_only_lace_and_sole_vary(entries: list[rumba.CatalogueEntry]) -> None:
    png = {(e.lace, e.sole): e.path for e in entries if e.format == "PNG"}
    # red/white and red/gum are both PNG: same laces, different soles.
    diff = np.any(_pixels(png["red", "white"]) != _pixels(png["red", "gum"]), axis=2)
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 300 and ys.min() >= 42 and ys.max() <= 55  # the sole band and nothing else
    # red/white and yellow/white are both PNG: same sole, different laces.
    diff = np.any(_pixels(png["red", "white"]) != _pixels(png["yellow", "white"]), axis=2)
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 100 and xs.min() >= 28 and xs.max() <= 56 and ys.max() <= 38  # the vamp


def test_colours_are_plain_to_see(entries: list[rumba.CatalogueEntry]) -> None:
    for e in entries:
        if e.format != "PNG":
            continue
        pixels = _pixels(e.path)
        sole = pixels[48, 32]
        assert np.abs(sole - rumba.SOLE_COLOURS[e.sole]).max() <= 2
        # About sixty pixels of the 4096 carry the lace colour itself (antialiased edges aside).
        near = np.abs(pixels - np.array(rumba.LACE_COLOURS[e.lace])).max(axis=2) <= 8
        assert near.sum() >= 55, (e.key, near.sum())


def test_distractors_differ_from_the_catalogue(root: Path) -> None:
    gold, striped = sorted((root / "distractors").iterdir())
    assert gold.name == "rumba-gold-white.png" and striped.name == "rumba-striped-red-white.png"
    assert rumba.DISTRACTOR_LACE[0] not in rumba.LACE_COLOURS
    red_white = _pixels(root / "shoes" / "rumba-red-white.png")
    assert np.any(_pixels(gold) != red_white) and np.any(_pixels(striped) != red_white)
    with Image.open(striped) as image:
        assert image.format == "PNG" and image.info["icc_profile"] == rumba.srgb_icc()
