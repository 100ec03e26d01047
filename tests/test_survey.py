"""`archiver survey`: key templates, access logs, savings, and the hitlist over a real directory and
moto's S3 server: the rumba shoes form the top group with their outliers named, unrelated images
(noise, random shapes) form no high-ranked group, bad input is counted, and a group's key list
trains a model (`archiver train --keys`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import cli
from support.survey_source import OUTLIERS, build_source

from archiver.storage import LocalHotStore, S3HotStore
from archiver.survey.keys import Positions, split_key
from archiver.survey.run import Survey, SurveyConfig, run_survey
from archiver.survey.savings import PriceTerms, recall, saving
from archiver.survey.traffic import load_traffic
from archiver.sweep.cost import Prices

TERMS = PriceTerms(Prices(), "GLACIER", pack_threshold=1 << 20, pack_target=64 << 20)
SHOES = "shoes/rumba-{v1}-{v2}.{ext}"


def test_key_templates_name_the_words_that_vary() -> None:
    positions = Positions()
    shapes = set()
    for key in ("shoes/rumba-red-white.png", "shoes/rumba-blue-gum.jpg", "shoes/rumba-red-gum.png"):
        shape, words = split_key(key)
        shapes.add(shape)
        positions.add(words)
    (shape,) = shapes
    assert positions.template(shape) == SHOES
    assert [(name, values) for _, name, values, _ in positions.variables(shape)] == [
        ("v1", ["red", "blue"]),
        ("v2", ["white", "gum"]),
        ("ext", ["png", "jpg"]),
    ]
    # digit runs in folders are templated; a different name shape is a different candidate
    assert split_key("p/123/main.jpg")[0] == split_key("p/4567/main.jpg")[0]
    assert split_key("shoes/rumba-red.png")[0] != shape


def test_access_logs_clf_scaled_to_a_month_and_csv(tmp_path: Path) -> None:
    clf = tmp_path / "access.log"
    clf.write_text(
        '1.2.3.4 - - [01/Mar/2025:00:00:00 +0000] "GET /img/shoes/a%20b.png?w=1 HTTP/1.1" 200 1000 "-" "ua"\n'
        '1.2.3.4 - - [02/Mar/2025:00:00:00 +0000] "GET /img/shoes/a%20b.png HTTP/1.1" 304 - \n'
        '1.2.3.4 - - [03/Mar/2025:00:00:00 +0000] "POST /img/shoes/a%20b.png HTTP/1.1" 200 5\n'
        '1.2.3.4 - - [03/Mar/2025:00:00:00 +0000] "GET /other/x.png HTTP/1.1" 200 5\n'
        "garbage line\n"
    )
    traffic = load_traffic(clf, "/img/")
    assert traffic.bad_lines == 1 and traffic.span_days == 2.0
    assert traffic.of("shoes/a b.png") == (2 * 15, 1000 * 15)  # 2 days scaled to 30
    table = tmp_path / "traffic.csv"
    table.write_text("key,requests,bytes\nshoes/a.png,10,5000\nshoes/a.png,1,1\nbad,row\n")
    traffic = load_traffic(table)
    assert traffic.of("shoes/a.png") == (11, 5001) and traffic.bad_lines == 1


def test_saving_reuses_the_sweep_cost_model_and_prices_origin_traffic() -> None:
    small = saving([10_000] * 100, requests=0, sent=0, terms=TERMS)
    assert small.archive_objects == 1 and small.storage_monthly > 0  # packed: one object's overhead
    alone = saving([10_000], requests=0, sent=0, terms=TERMS)
    assert alone.storage_monthly < 0  # one small original costs more archived (40 KiB overheads)
    busy = saving([10_000], requests=1000, sent=2**30, terms=TERMS)
    assert busy.traffic_monthly == pytest.approx(0.09 * 0.1)  # 1 GB, 10% misses the CDN, $0.09/GB
    assert recall(48, 48, 0.5).score == pytest.approx(0.75) and recall(16, 1, 1.0).score == 0


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("survey-source")
    build_source(root)
    return root


@pytest.fixture(scope="module")
def local_survey(source_dir: Path) -> Iterator[Survey]:
    with run_survey(LocalHotStore(source_dir), SurveyConfig(terms=TERMS)) as survey:
        yield survey


def _check_hitlist(survey: Survey) -> None:
    top = survey.groups[0]
    assert top.template == SHOES and (top.width, top.height) == (64, 64)
    assert top.images == 50 and top.core == 48
    assert {o["key"] for o in top.named_outliers} == OUTLIERS
    assert {k for k, core in survey.members(top) if not core} == OUTLIERS
    assert top.formats == {"PNG": 26, "JPEG": 24}
    assert top.recall.score > 0.5 and top.saving.storage_monthly > 0
    others = {g.template.split("/")[0]: g for g in survey.groups[1:]}
    assert set(others) == {"noise", "shapes"}
    for group in others.values():  # neither forms a core: no recall, no score worth ranking
        assert group.core <= 2 and group.recall.score < 0.1
    # No traffic: every group's own model outweighs the storage it saves, so every group loses money
    # and they rank by recall (tests/test_net_saving.py ranks payers above losers).
    assert all(g.loses_money for g in survey.groups)
    assert survey.bad == {"truncated": 1} and survey.skipped == {"unsafe-key": 1}
    assert survey.not_images == 1 and survey.images == 82


def test_shoes_top_the_hitlist_with_outliers_named(local_survey: Survey) -> None:
    _check_hitlist(local_survey)


@pytest.mark.s3
def test_survey_over_s3_pages_through_the_listing(s3_client: Any, bucket: str, source_dir: Path) -> None:
    for path in sorted(source_dir.rglob("*")):
        if path.is_file():
            key = "cat/" + path.relative_to(source_dir).as_posix()
            s3_client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    store = S3HotStore(bucket, "cat", s3_client, page_size=10)  # 85 objects: nine pages
    with run_survey(store, SurveyConfig(terms=TERMS)) as survey:
        top = survey.groups[0]
        # the store names keys as it does everywhere (with or without the prefix): compare the tails
        assert top.template.endswith(SHOES) and top.core == 48 and top.images == 50
        assert {o["key"].removeprefix("cat/") for o in top.named_outliers} == OUTLIERS
        assert survey.bad == {"truncated": 1} and survey.skipped == {"unsafe-key": 1}
        assert survey.listed == 84 and survey.images == 82


def test_cli_outputs_and_the_group_trains(
    archiver_env: Path, source_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "traffic.csv"
    log.write_text("key,requests,bytes\nshoes/rumba-red-white.png,100000,300000000000\n")
    keys = tmp_path / "group.txt"
    code, out, err = cli(
        capsys,
        "survey",
        str(source_dir),
        "--json",
        "--csv",
        str(tmp_path / "hitlist.csv"),
        "--access-log",
        str(log),
        "--top",
        "2",
        "--write-group",
        "1",
        str(keys),
    )
    assert code == 0, err
    report = json.loads(out)
    assert [g["rank"] for g in report["hitlist"]] == [1, 2]
    top = report["hitlist"][0]
    assert top["template"] == SHOES and top["core"] == 48
    assert top["saving"]["requests_monthly"] == 100000
    assert top["saving"]["traffic_monthly"] == pytest.approx(300e9 * 0.1 / 2**30 * 0.09)
    assert top["saving_monthly"] > top["saving"]["traffic_monthly"] > 0
    assert top["net"]["egress_avoided_monthly"] == top["saving"]["traffic_monthly"]
    assert top["net_monthly"] > 0 and not top["loses_money"]  # 10,000 misses a month pay for the model
    assert report["bad"] == {"truncated": 1} and report["access_log"]["counted"] == 1
    rows = list(csv.DictReader((tmp_path / "hitlist.csv").open()))
    assert rows[0]["template"] == SHOES and rows[0]["id"] == top["id"] and len(rows) == 2
    lines = keys.read_text().splitlines()
    assert lines[0].startswith(f"# archiver survey group {top['id']}")
    listed = [line for line in lines if not line.startswith("#")]
    assert len(listed) == 48 and not set(listed) & OUTLIERS
    assert "# caption-template: a product photo of {words}" in lines
    # The table names the outliers; an unknown group id is a clear error.
    code, out, err = cli(capsys, "survey", str(source_dir), "--top", "1", "--write-group", "zz", str(keys))
    assert code == 6 and "no group 'zz'" in err
    # The loop closes: train takes the key list and its caption template.
    code, out, err = cli(
        capsys, "train", str(source_dir), "--keys", str(keys), "--out", str(tmp_path / "m"), "--steps", "1"
    )
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["images"] == 48
    captions = json.loads((tmp_path / "m" / "captions.json").read_text())
    assert set(captions) == set(listed)
    assert captions["shoes/rumba-red-white.png"] == "a product photo of rumba red white"
