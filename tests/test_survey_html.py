"""The survey's HTML report opens in a real browser (Debian's chromium, driven by Playwright) and
shows each group's contact sheet, with the outliers marked."""

from __future__ import annotations

from pathlib import Path

from support.servers import chromium
from support.survey_source import OUTLIERS, build_source

from archiver.storage import LocalHotStore
from archiver.survey.report import write_html
from archiver.survey.run import SurveyConfig, run_survey
from archiver.survey.savings import PriceTerms
from archiver.sweep.cost import Prices


def test_report_shows_each_groups_contact_sheet_in_chromium(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_source(source)
    store = LocalHotStore(source)
    terms = PriceTerms(Prices(), "GLACIER", pack_threshold=1 << 20, pack_target=64 << 20)
    with run_survey(store, SurveyConfig(terms=terms)) as survey:
        index = write_html(survey, 10, tmp_path / "report", store.get)
        ids = [g.id for g in survey.groups]
    with chromium() as browser:
        page = browser.new_page()
        page.goto(index.as_uri())
        assert page.locator("#hitlist tr").count() == 1 + len(ids)
        sections = page.locator("section.group")
        assert [sections.nth(i).get_attribute("id") for i in range(sections.count())] == [
            f"g-{i}" for i in ids
        ]
        top = page.locator(f"#g-{ids[0]}")
        assert "shoes/rumba-{v1}-{v2}.{ext}" in top.locator("h2").inner_text()
        assert top.locator("figure.core").count() == 24
        outliers = top.locator("figure.outlier")
        assert {outliers.nth(i).get_attribute("title") for i in range(outliers.count())} == OUTLIERS
        assert all(t.startswith("outlier: ") for t in outliers.locator("figcaption").all_inner_texts())
        # every thumbnail decoded and was laid out at its size: the sheet is seen, not just written
        sizes = page.eval_on_selector_all(
            "figure img",
            "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.clientWidth])",
        )
        assert sizes and all(ok and natural == 96 and shown == 96 for ok, natural, shown in sizes)
        red = top.locator("figure.outlier img").first.evaluate("i => getComputedStyle(i).borderTopColor")
        assert red == "rgb(221, 34, 34)"
