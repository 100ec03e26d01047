"""Records travel, on the shipped example (issue 17): the session's sweep of it (`example_home`,
tests/support/example.py: default settings, a GLACIER vault, so no original can stand in), read by
processes told to take other CPU code paths, as another CPU generation would. Files read through a
real mount under `ATEN_CPU_CAPABILITY=default`; assets restore under `ONEDNN_MAX_CPU_ISA=SSE41`;
`archiver model check` reports and records the device; and every divergence-class render (another
seed, another step count, another prompt's render, a sibling, the gate's distractors) is refused by
the sketch.

The mount and the restore take every fourth archived image by default, and one of the sole colour
that leaves out (11 of the 39, PNG and JPEG, every lace and every sole among them), which keeps the
suite near its time budget: every image through the gate is the job of tests/test_example_model.py
and tests/test_gate_distractors.py, while this file is about reading on other code paths.
`ARCHIVER_TEST_EXAMPLE_EVERY=1` takes all 39 (about 3 minutes more on this 2-core machine when it
is quiet: a render takes about a second; under other load, many times that).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from support.example import ExampleHome
from support.mounts import require_fuse, start_mount, stop_mount
from support.processes import archiver, base_env, wait_until

from archiver.catalog.database import open_catalog
from archiver.catalog.models import Asset, AssetState, Event, Record, RestoreJob
from archiver.errors import IntegrityError
from archiver.example.rumba import LACE_COLOURS, SOLE_COLOURS
from archiver.gate import sketch

EVERY = int(os.environ.get("ARCHIVER_TEST_EXAMPLE_EVERY", "4"))
ATEN = {"ATEN_CPU_CAPABILITY": "default"}
ONEDNN = {"ONEDNN_MAX_CPU_ISA": "SSE41"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a render of the example takes seconds here


@pytest.fixture
def swept(example_home: ExampleHome) -> Path:
    """The home of the session's sweep of the example, as the sweep left it."""
    return example_home.swept.reset().home


def subset(home: Path) -> list[str]:
    """The images this file reads and restores: every EVERY-th archived key in key order, and the
    first of any sole colour that left out, so that every lace, every sole and both formats are in."""
    archived = sorted(records(home))
    chosen = archived[::EVERY]
    for sole in SOLE_COLOURS:
        if not any(f"-{sole}." in key for key in chosen):
            chosen.append(next(key for key in archived if f"-{sole}." in key))
    assert {key.rsplit(".", 1)[1] for key in chosen} == {"png", "jpg"}, chosen
    assert {key.split("-")[1] for key in chosen} == set(LACE_COLOURS) or EVERY > 4, chosen
    return sorted(chosen)


def keep_only(home: Path, keys: list[str]) -> None:
    """Drop every other asset (and its record, events and jobs) from the home's catalog."""
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        others = [a.id for a in session.query(Asset).filter(Asset.key.not_in(keys))]
        for table in (Event, RestoreJob, Record):
            session.query(table).filter(table.asset_id.in_(others)).delete()
        session.query(Asset).filter(Asset.id.in_(others)).delete()
    catalog.close()


def records(home: Path) -> dict[str, tuple[str, bytes | None, str]]:
    """key -> (rendered_sha256, render_sketch, original sha256) of every archived asset."""
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        rows = {
            a.key: (a.record.rendered_sha256, a.record.render_sketch, a.sha256 or "")
            for a in session.query(Asset).filter(Asset.state == AssetState.ARCHIVED)
            if a.record is not None
        }
    catalog.close()
    return rows


def copy_home(home: Path, where: Path) -> Path:
    """A copy of the home elsewhere, for commands that read the archive through its settings only."""
    return Path(shutil.copytree(home, where / "home", ignore=shutil.ignore_patterns("cache")))


def test_the_sweep_stores_a_sketch_of_at_most_128_bytes_per_record(
    swept: Path, example_home: ExampleHome
) -> None:
    rows = records(swept)
    assert len(rows) == len(example_home.entries) - len(example_home.displaced)
    assert all(s is not None and len(s) <= 128 for _, s, _ in rows.values())


def test_every_file_reads_through_a_mount_taking_other_cpu_code_paths(swept: Path, tmp_path: Path) -> None:
    require_fuse()
    home = copy_home(swept, tmp_path)
    keep_only(home, subset(home))
    mount = start_mount(home, tmp_path / "mnt", tmp_path / "mount.log", **ATEN)
    point = mount.point
    try:
        promised = records(home)
        how: Counter[str] = Counter()
        for key, (rendered_sha256, _, _) in sorted(promised.items()):
            data = (point / key).read_bytes()  # an open that failed would raise (EREMOTE: GLACIER)
            verified = os.getxattr(point / key, "user.archiver.verified").decode()
            how[verified.split()[0]] += 1
            if verified == "exact":
                assert hashlib.sha256(data).hexdigest() == rendered_sha256
            else:
                assert (
                    verified.startswith("within-tolerance ")
                    and float(verified.split()[1]) >= sketch.DEFAULT_MIN_PSNR
                )
                assert hashlib.sha256(data).hexdigest() != rendered_sha256
                assert (point / key).stat().st_size == len(data)  # the size of what is served
        assert how["exact"] + how["within-tolerance"] == len(promised), how
        assert how["within-tolerance"] > 0, "no render drifted: the kernels were not switched"
        # The first read on this device checked a few records and recorded the device.
        status = lambda: json.loads(archiver(base_env(home), "status", "--json").stdout)["devices"]  # noqa: E731
        wait_until(lambda: bool(status()), 120, "the first-use device check")
        device = status()[0]
        assert (
            device["device"]["cpu_capability"] == "DEFAULT"
            and device["device"]["ATEN_CPU_CAPABILITY"] == "default"
        )
        assert device["refused"] == 0 and device["sampled"] == 3
    finally:
        stop_mount(mount)
    assert "within-tolerance" in mount.log_text()


def test_every_asset_restores_under_another_instruction_set(swept: Path) -> None:
    home = swept  # the catalog names its source by path: restores write into the sweep's own
    keep_only(home, subset(home))
    hot = home.parent / "hot"  # the swept source: its archived files are gone
    promised = records(home)
    assert not any((hot / key).exists() for key in promised)
    done = archiver(base_env(home, **ONEDNN), "restore", "--prefix", "shoes/", "--json")
    assert done.returncode == 0, done.stderr[-800:]
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        assert {a.state for a in session.query(Asset)} == {AssetState.RESTORED}
        copied = {
            key: (detail["sha256"], detail["verified"])
            for key, detail in session.query(Asset.key, Event.detail)
            .join(Event, Event.asset_id == Asset.id)
            .filter(Event.kind == "restore-copied")
        }
    catalog.close()
    assert set(copied) == set(promised)
    for key, (rendered_sha256, _, _) in promised.items():
        sha, verified = copied[key]
        assert hashlib.sha256((hot / key).read_bytes()).hexdigest() == sha  # what was verified is what is hot
        if verified == "exact":
            assert sha == rendered_sha256
        else:  # this instruction set's render: the record's image by its sketch, under its own hash
            assert (
                verified.startswith("within-tolerance ")
                and float(verified.split()[1]) >= sketch.DEFAULT_MIN_PSNR
            )


def test_model_check_reports_and_records_this_device(swept: Path, tmp_path: Path) -> None:
    home = copy_home(swept, tmp_path)
    done = archiver(base_env(home, **ATEN), "model", "check", "rumba", "--sample", "3", "--json")
    assert done.returncode == 0, done.stderr[-800:]
    report = json.loads(done.stdout)
    assert report["sampled"] == 3 and report["refused"] == 0
    assert report["exact"] + report["within_tolerance"] == 3
    assert {r["outcome"] for r in report["records"]} <= {"exact", "within-tolerance"}
    # It timed its renders (the example's records render at 1 or 2 steps), and the cost model now
    # prices renders by that time on this device, not by the assumed one.
    assert (
        0 < report["render_seconds"] < 10 and report["render_steps"] in (1, 2) and report["render_cores"] >= 1
    )
    dry = archiver(
        base_env(home, **ATEN), "sweep", str(swept.parent / "hot"), "--model", "rumba", "--dry-run", "--json"
    )
    assert dry.returncode == 0, dry.stderr[-800:]
    net = json.loads(dry.stdout)["net"]
    assert net["render_source"].startswith("measured by `model check`")
    assert net["render_seconds"] == report["render_seconds"] and net["render_steps"] == report["render_steps"]
    shown = json.loads(archiver(base_env(home), "show", sorted(records(home))[0], "--json").stdout)
    assert [d["device"]["cpu_capability"] for d in shown["devices"]] == ["DEFAULT"]
    assert shown["record"]["render_sketch"] and len(bytes.fromhex(shown["record"]["render_sketch"])) <= 128


def test_records_without_a_sketch_are_backfilled_where_they_render_exactly(
    swept: Path, tmp_path: Path
) -> None:
    home = copy_home(swept, tmp_path)
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        kept = {r.asset_id: r.render_sketch for r in session.query(Record)}
        for record in session.query(Record).order_by(Record.asset_id).limit(2):  # made before sketches
            record.render_sketch = None
    catalog.close()
    # Elsewhere, they cannot be verified unless their bytes match: refused, exit 8, nothing stored.
    elsewhere = archiver(base_env(home, **ATEN), "model", "check", "rumba", "--backfill", "--json")
    report = json.loads(elsewhere.stdout)
    assert report["sampled"] == 2
    if report["refused"]:
        assert elsewhere.returncode == 8 and "no sketch" in report["records"][0]["detail"] + "".join(
            r["detail"] for r in report["records"]
        )
    done = archiver(base_env(home), "model", "check", "rumba", "--backfill", "--json")
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout)["backfilled"] + report["backfilled"] == 2
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    with catalog.begin() as session:
        now = {r.asset_id: r.render_sketch for r in session.query(Record)}
    catalog.close()
    # The same image's sketches again. Not always the same bytes: a JPEG whose bytes came out exact
    # under other kernels was encoded from pixels that drifted by less than a quantisation step, and
    # the sketch is of those pixels; it must still sit within the tolerance of the accepted one.
    assert now.keys() == kept.keys()
    for asset_id, backfilled in now.items():
        assert backfilled is not None and len(backfilled) == sketch.SIZE
        assert sketch.sketches_psnr(backfilled, kept[asset_id]) >= sketch.DEFAULT_MIN_PSNR, asset_id


def test_divergent_renders_are_refused_by_the_sketch(swept: Path, example_home: ExampleHome) -> None:
    """Another seed, another step count, another prompt of the group, a sibling's original and the
    gate's distractors, each put in the place of a record's render: refused."""
    from archiver.engine.encoding import EncodingProfile
    from archiver.engine.registry import load_model
    from archiver.engine.rehydrate import RenderSpec, render_and_encode
    from archiver.engine.rendering import enable_determinism
    from archiver.read.reader import judge_render

    enable_determinism()
    catalog = open_catalog(f"sqlite:///{swept / 'catalog.db'}")
    with catalog.begin() as session:
        rows = session.query(Record).join(Asset).order_by(Asset.key).all()
        loaded = load_model(rows[0].model)
        cases = [
            (r.asset.key, RenderSpec.from_record(r), EncodingProfile.from_json(r.encoding_profile.body))
            for r in rows
        ]
        promised = {r.asset.key: (r.rendered_sha256, r.render_sketch) for r in rows}
    catalog.close()
    refused: Counter[str] = Counter()

    def refuse(kind: str, key: str, pixels: Image.Image, data: bytes) -> None:
        sha, stored = promised[key]
        with pytest.raises(IntegrityError, match="not the record's image"):
            judge_render(data, pixels, sha, stored, sketch.DEFAULT_MIN_PSNR)
        refused[kind] += 1

    def decoded(data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")

    one_of_each = [next(c for c in cases if c[2].format == fmt) for fmt in ("PNG", "JPEG")]
    for key, spec, profile in one_of_each:
        for other in (replace(spec, seed=spec.seed + 1), replace(spec, steps=spec.steps * 2)):
            refuse("another seed or step count", key, *render_and_encode(loaded, other, profile))
        neighbour = next(c for c in cases if c[0] != key)
        refuse(
            "another prompt",
            key,
            *render_and_encode(loaded, replace(spec, prompt=neighbour[1].prompt), profile),
        )
    first = cases[0][0]
    for entry in example_home.entries:  # the genuine originals
        if entry.key != first:
            data = entry.path.read_bytes()
            refuse("a sibling", first, decoded(data), data)
    # The distractors' keys: the genuine images they displaced have no record in the sweep, but were
    # proven after it (tests/support/example.py); what a record of theirs would promise is that proof's.
    for key, proof in example_home.displaced.items():
        assert proof.data is not None
        promised[key] = (hashlib.sha256(proof.data).hexdigest(), proof.sketch)
    for key, distractor in example_home.distractors.items():
        out = io.BytesIO()
        distractor.image.save(out, "PNG")
        refuse("a distractor", key, distractor.image.convert("RGB"), out.getvalue())
    assert refused["another seed or step count"] == 4 and refused["another prompt"] == 2
    assert refused["a sibling"] == 47
    assert refused["a distractor"] == len(example_home.distractors) == 8
