"""The survey's HTML report opens in a real browser (Debian's chromium, driven by Playwright) and
shows each group's contact sheet with the outliers marked and how many of how many it shows, the
net saving against recall as a plot (a group that pays above zero, the ones that lose below), and
each group's cost terms as a bar."""

from __future__ import annotations

from pathlib import Path

from support.servers import chromium
from support.survey_source import OUTLIERS, build_source

from archiver.storage import LocalHotStore
from archiver.survey.report import write_html
from archiver.survey.run import SurveyConfig, run_survey
from archiver.survey.savings import PriceTerms
from archiver.survey.traffic import load_traffic
from archiver.sweep.cost import Prices


def shoe_keys(source: Path) -> list[str]:
    return [p.relative_to(source).as_posix() for p in (source / "shoes").glob("rumba-*.*")]


def test_report_shows_each_groups_contact_sheet_in_chromium(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_source(source)
    store = LocalHotStore(source)
    terms = PriceTerms(Prices(), "GLACIER", pack_threshold=1 << 20, pack_target=64 << 20)
    log = tmp_path / "traffic.csv"  # the shoes are requested a lot: they pay; noise and shapes do not
    log.write_text("key,requests,bytes\n" + "".join(f"{k},1000,{10**9}\n" for k in sorted(shoe_keys(source))))
    with run_survey(store, SurveyConfig(terms=terms), traffic=load_traffic(log)) as survey:
        index = write_html(survey, 10, tmp_path / "report", store.get)
        ids = [g.id for g in survey.groups]
        loses = [g.loses_money for g in survey.groups]
    assert loses == [False] + [True] * (len(ids) - 1)
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
        # the sheet says how many of how many it shows; similarity and recall explained once each
        assert top.locator("p.shown").inner_text() == (
            "24 of 48 near-identical images shown, and 2 of 2 outliers."
        )
        assert page.locator("#explain-similarity").inner_text().startswith("Similarity (0-1): ")
        assert page.locator("#explain-recall").inner_text().startswith("Recall (0-1): ")
        rows = page.locator("#hitlist tr")
        assert [rows.nth(i).get_attribute("class") for i in range(1, rows.count())] == [
            "loses" if lost else "saves" for lost in loses
        ]
        assert "loses money" in rows.nth(2).inner_text() and "loses money" not in rows.nth(1).inner_text()
        # the plot: one point per group, laid out inside it; the one that pays sits above zero
        plot = page.locator("svg#net-vs-recall")
        box = plot.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 200
        points = page.locator("svg#net-vs-recall circle.group")
        assert [points.nth(i).get_attribute("data-group") for i in range(points.count())] == ids
        centres = [points.nth(i).bounding_box() for i in range(points.count())]
        assert all(
            c and box["y"] <= c["y"] and c["y"] + c["height"] <= box["y"] + box["height"] for c in centres
        )
        zero = page.locator("svg#net-vs-recall line").first.bounding_box()
        assert zero and centres[0] and all(c for c in centres)
        assert centres[0]["y"] < zero["y"] < min(c["y"] for c in centres[1:])  # type: ignore[index]
        # the bars: one per group, every term it has a visible segment with its amount as a tooltip
        bars = page.locator("svg#cost-terms g.bar")
        assert bars.count() == len(ids)
        terms = bars.first.locator("rect.term")
        assert {terms.nth(i).get_attribute("data-term") for i in range(terms.count())} >= {
            "storage saved",
            "egress avoided",
            "model storage",
        }
        assert all((terms.nth(i).bounding_box() or {"width": 0})["width"] > 0 for i in range(terms.count()))
