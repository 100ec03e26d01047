"""A palette PNG is grouped with the RGB images it looks like: both decode to RGB pixels and are
regenerated as RGB (how a file stores its pixels is the encoding profile's business)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from archiver.example.rumba import write_catalogue
from archiver.storage import LocalHotStore
from archiver.survey.run import SurveyConfig, run_survey
from archiver.survey.savings import PriceTerms
from archiver.sweep.cost import Prices


def test_palette_and_rgb_pngs_of_one_product_form_one_group(tmp_path: Path) -> None:
    entries = write_catalogue(tmp_path / "rumba")
    pngs = [e for e in entries if e.format == "PNG"]
    for entry in pngs[::2]:  # half of the PNGs saved again as palette PNGs, as an optimiser would
        with Image.open(entry.path) as image:
            image.convert("RGB").quantize(256).save(entry.path, "PNG")
        with Image.open(entry.path) as check:
            assert check.mode == "P"
    terms = PriceTerms(Prices(), "GLACIER", pack_threshold=1 << 20, pack_target=64 << 20)
    with run_survey(LocalHotStore(tmp_path / "rumba"), SurveyConfig(terms=terms)) as survey:
        assert survey.images == 48 and not survey.bad
        groups = [g for g in survey.groups if g.template.startswith("shoes/")]
        assert len(groups) == 1 and groups[0].images == 48 and groups[0].mode == "RGB"
