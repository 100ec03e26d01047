"""The net saving (`archiver.sweep.cost.net_saving`): every term by hand, the break-even render time,
and the survey's hitlist ranked by it: a group whose model outweighs what it saves ranks below one
that pays and says it loses money, in the table (`archiver survey`), the JSON and the HTML report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import cli

from archiver.example.rumba import write_catalogue
from archiver.storage import LocalHotStore
from archiver.survey.run import SurveyConfig, run_survey
from archiver.survey.savings import PriceTerms
from archiver.sweep.cost import GB, Compute, break_even, estimate, net_saving, usd, verdict_line

MIB = 2**20
CPU = Compute(seconds=0.5, cores=2, price_per_hour=0.036, source="test")  # $0.00001 per render


def _glacier(sizes: list[int]) -> object:
    (row,) = [
        r for r in estimate(sizes, pack_threshold=1 << 20, pack_target=64 << 20) if r.vault_class == "GLACIER"
    ]
    return row


def test_every_term_by_hand() -> None:
    storage = _glacier([2 * MIB] * 10)  # ten singles: 10 GLACIER objects, 10 journal entries
    net = net_saving(
        storage=storage,  # type: ignore[arg-type]
        egress_avoided=0.5,
        renders_monthly=1000,
        compute=CPU,
        model_bytes=GB,
        model_share=0.25,
        vault_read_share=0.1,
    )
    assert CPU.per_render == pytest.approx(0.5 * 2 * 0.036 / 3600)
    assert net.storage_saved == storage.saving_monthly  # type: ignore[attr-defined]
    assert net.model_storage == pytest.approx(0.023 * 0.25)  # 1 GB at STANDARD, a quarter of it
    assert net.render_compute == pytest.approx(1000 * 1e-5)
    puts = (10 * 0.03 + 10 * 0.005) / 1000 / 3  # GLACIER's 90 days: spread over 3 months
    restores = 100 * (0.05 / 1000 + 2 * MIB / GB * 0.01)  # 10% of 1,000 misses, Standard tier
    assert net.requests == pytest.approx(puts + restores)
    assert net.net == pytest.approx(
        net.storage_saved + 0.5 - net.model_storage - net.render_compute - net.requests
    )
    assert list(net.terms()) == [
        "storage saved",
        "egress avoided",
        "model storage",
        "render compute",
        "requests",
    ]
    assert net.per_million_images == pytest.approx(net.net / 10 * 1e6)
    doc = net.to_dict()
    assert json.loads(json.dumps(doc))["net_monthly"] == pytest.approx(net.net)
    assert doc["break_even_render_seconds"] == net.break_even_seconds


def test_break_even_is_where_the_net_saving_crosses_zero() -> None:
    storage = _glacier([50_000] * 100)
    common = dict(storage=storage, egress_avoided=0.01, renders_monthly=500, model_bytes=MIB, model_share=1.0)
    net = net_saving(compute=CPU, **common)  # type: ignore[arg-type]
    seconds = net.break_even_seconds
    assert seconds is not None and seconds > 0
    at = net_saving(compute=Compute(seconds, 2, 0.036, "t"), **common)  # type: ignore[arg-type]
    assert at.net == pytest.approx(0.0, abs=1e-12)
    slower = net_saving(compute=Compute(seconds * 1.01, 2, 0.036, "t"), **common)  # type: ignore[arg-type]
    assert (
        slower.loses_money
        and not net_saving(compute=Compute(seconds * 0.99, 2, 0.036, "t"), **common).loses_money
    )  # type: ignore[arg-type]
    assert break_even(seconds).startswith(f"renders must take under {seconds * 1000:,.1f} ms")
    # A GPU render is priced per GPU-hour, whatever the cores
    assert Compute(1.0, None, 0.72, "gpu").per_render == pytest.approx(0.0002)
    # No traffic: no render is counted, so render time does not matter; a model that outweighs
    # the storage saved loses money at any speed, and says so.
    idle = net_saving(
        storage=storage,
        egress_avoided=0.0,
        renders_monthly=0,
        compute=CPU,
        model_bytes=GB,
        model_share=1.0,  # type: ignore[arg-type]
    )
    assert idle.break_even_seconds is None and idle.loses_money
    assert verdict_line(idle).startswith("loses $") and "at any render speed" in verdict_line(idle)
    heavy = net_saving(
        storage=storage,
        egress_avoided=0.0,
        renders_monthly=10,
        compute=CPU,
        model_bytes=GB,
        model_share=1.0,  # type: ignore[arg-type]
    )
    assert heavy.break_even_seconds == 0.0 and break_even(0.0, short=True) == "never"


def test_small_amounts_stay_readable() -> None:
    assert usd(0.000001234) == "$0.00000123" and usd(-0.000139) == "-$0.000139"
    assert usd(2.5) == "$2.50" and usd(0) == "$0.00" and usd(1234.5) == "$1,234.50"


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example catalogue twice: shoes/ nobody requests, boots/ (the same images) requested a lot."""
    root = tmp_path_factory.mktemp("two-groups")
    write_catalogue(root)
    (root / "captions.csv").unlink()
    shutil.copytree(root / "shoes", root / "boots")
    log = root.parent / "traffic.csv"
    rows = [
        f"boots/{p.name},2000,{2000 * p.stat().st_size * 1000}" for p in sorted((root / "boots").iterdir())
    ]
    log.write_text("key,requests,bytes\n" + "\n".join(rows) + "\n")
    return root, log


def test_a_group_whose_model_outweighs_its_saving_ranks_below_one_that_pays(
    two_groups: tuple[Path, Path],
) -> None:
    from archiver.survey.traffic import load_traffic

    root, log = two_groups
    terms = PriceTerms(__import__("archiver.sweep.cost").sweep.cost.Prices(), "GLACIER", 1 << 20, 64 << 20)
    with run_survey(
        LocalHotStore(root), SurveyConfig(terms=terms, dense=False), traffic=load_traffic(log)
    ) as survey:
        boots, shoes = survey.groups
        assert boots.template.startswith("boots/") and shoes.template.startswith("shoes/")
        # the same images, the same recall: only what rehydrating them costs and saves tells them apart
        assert boots.recall.score == pytest.approx(shoes.recall.score)
        assert not boots.loses_money and boots.saving.net.net > 0 and boots.score > 0
        assert shoes.loses_money and shoes.saving.net.net < 0
        # shoes saves storage, but less than its 5.9 MiB model costs in STANDARD
        assert 0 < shoes.saving.net.storage_saved < shoes.saving.net.model_storage
        assert shoes.saving.net.break_even_seconds is None  # nobody requests it: no render counted
        assert boots.saving.net.render_compute > 0 and boots.saving.net.break_even_seconds > 0  # type: ignore[operator]


def test_survey_prints_each_term_and_the_break_even(
    archiver_env: Path, two_groups: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, log = two_groups
    code, out, err = cli(capsys, "survey", str(root), "--access-log", str(log), "--no-dense")
    assert code == 0, err
    for column in ("storage", "egress", "model", "renders", "requests", "net", "per 1M images", "break-even"):
        assert column in out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "boots/" in line)
    second = next(i for i, line in enumerate(lines) if "shoes/" in line)
    assert first < second and "saves" in lines[first] and "loses money" in lines[second]
    assert any(
        line.startswith("#1 ") and "renders must take under" in line and "ms on this device" in line
        for line in lines
    )
    assert any(line.startswith("#2 ") and "at any render speed" in line for line in lines)
    assert "38.9 ms x 2 CPU cores" in out and "assumed (cost_render_seconds" in out
    code, out, err = cli(capsys, "survey", str(root), "--access-log", str(log), "--no-dense", "--json")
    hitlist = json.loads(out)["hitlist"]
    assert [g["loses_money"] for g in hitlist] == [False, True]
    assert hitlist[0]["net"]["break_even_render_seconds"] > 0
    assert hitlist[1]["net_monthly"] < 0 < hitlist[0]["net_monthly"]
