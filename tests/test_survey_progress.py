"""The survey says how far it got from its first images (issue 28, item 19: it said "surveying 0
images" until the end, because the example's 48 images were one batch of 64)."""

from __future__ import annotations

from pathlib import Path

from archiver.example.rumba import write_catalogue
from archiver.storage import LocalHotStore
from archiver.survey.run import FIRST_BATCH, SurveyConfig, _batches, run_survey
from archiver.survey.savings import PriceTerms
from archiver.sweep.cost import Prices


def test_batches_ramp_up_to_the_configured_size() -> None:
    sizes = [len(b) for b in _batches((str(i) for i in range(200)), 64)]
    assert sizes == [FIRST_BATCH, 16, 32, 64, 64, 200 - 8 - 16 - 32 - 64 - 64]
    assert [len(b) for b in _batches("abc", 2)] == [2, 1]  # never above the configured size


class Recorded:
    def __init__(self) -> None:
        self.advances: list[tuple[int, str]] = []

    def advance(self, key: str, *, n: int) -> None:
        self.advances.append((n, key))


def test_the_example_reports_progress_after_its_first_images(tmp_path: Path) -> None:
    entries = write_catalogue(tmp_path / "rumba")
    progress = Recorded()
    terms = PriceTerms(Prices(), "GLACIER", pack_threshold=1 << 20, pack_target=64 << 20)
    store = LocalHotStore(tmp_path / "rumba")
    with run_survey(store, SurveyConfig(terms=terms), progress=progress) as survey:
        assert survey.images == len(entries) == 48
    assert [n for n, _ in progress.advances] == [8, 16, 24]  # not one report of 48 at the end
    assert all(key.startswith("shoes/rumba-") for _, key in progress.advances)
