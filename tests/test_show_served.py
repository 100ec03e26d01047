"""`archiver show` names both hashes and sizes (issue 26, item 5): the original's (the bytes the
vault keeps) and the served bytes' (what reading the file gives), and says why served bytes may be
larger, from the record's encoding profile. Rows are inserted with the catalog queries into the
CLI's own SQLite catalog; the mount's and the origin's names are tested with real reads in
test_mount.py and test_origin.py."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import cli

from archiver.catalog import queries
from archiver.catalog.database import open_catalog
from archiver.catalog.models import AssetState
from archiver.engine.encoding import SIZE_NOTES, EncodingProfile


def _archive(home: Path, key: str, profile: EncodingProfile, *, original: int, served: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    try:
        with catalog.begin() as session:
            source = queries.get_or_add_source(session, "file:///hot")
            model = queries.add_model(session, name="tiny", sha256="ab" * 32, path="/m", pipeline_class="P")
            row = queries.get_or_add_profile(session, profile.profile_id, profile.format, profile.to_json())
            when = datetime(2021, 3, 4, tzinfo=UTC)
            asset = queries.add_asset(session, source, key=key, size=original, etag=None, last_modified=when)
            asset.sha256 = hashlib.sha256(key.encode()).hexdigest()
            queries.save_record(
                session, asset, model_id=model.id, encoding_profile_id=row.id, pipeline_class="P",
                scheduler_class="S", scheduler_config={}, prompt="a shoe", seed=7, steps=2,
                guidance_scale=1.0, width=64, height=64, dtype="float32", rendered_sha256="ef" * 32,
                rendered_size=served, gate_report={"metrics": {"lpips": 0.01}}, software={},
            )  # fmt: skip
            queries.set_state(session, asset, AssetState.ARCHIVED)
    finally:
        catalog.close()


def test_show_names_the_original_and_the_served_bytes_and_why_they_are_larger(
    archiver_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    many = EncodingProfile(format="PNG", png_mode="RGB", png_bit_depth=8, size_notes=("png-many-colours",))
    _archive(archiver_env, "shoes/photo.png", many, original=2000, served=2600)
    code, out, err = cli(capsys, "show", "shoes/photo.png", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["original"]["sha256"] == hashlib.sha256(b"shoes/photo.png").hexdigest()
    assert shown["original"]["size"] == 2000
    assert shown["served"] == {
        "sha256": "ef" * 32,
        "size": 2600,
        "size_over_original": 1.3,
        "size_notes": {"png-many-colours": SIZE_NOTES["png-many-colours"]},
    }
    code, out, _ = cli(capsys, "show", "shoes/photo.png")
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("original: 2000 bytes, sha256 ") for line in lines)
    served = next(line for line in lines if line.startswith("served: "))
    assert "2600 bytes (1.30x the original)" in served and "ef" * 32 in served
    assert "png-many-colours: the original has more than 256 colours" in out


def test_a_version_1_profile_has_no_size_notes(
    archiver_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _archive(
        archiver_env, "shoes/flat.png", EncodingProfile(format="PNG", png_mode="RGB", png_bit_depth=8),
        original=2000, served=1900,
    )  # fmt: skip
    code, out, _ = cli(capsys, "show", "shoes/flat.png", "--json")
    assert code == 0 and json.loads(out)["served"]["size_notes"] == {}
    code, out, _ = cli(capsys, "show", "shoes/flat.png")
    assert "(0.95x the original)" in out and "larger than the original?" not in out
