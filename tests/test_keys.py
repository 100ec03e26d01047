"""Invariant 6, one name for an object: an S3 prefix selects keys and does not re-root them, a
model trained at another root is matched by a caption prefix (and a sweep says which), and a
file's mount path does not move when another source is swept."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import MEMORIZED, catalog_assets, cli, register

from archiver.captionkeys import CaptionKeys, caption_hint, suggest


def test_caption_keys_map_and_the_hint_finds_the_prefix() -> None:
    assert CaptionKeys().lookup("a/b.png") == "a/b.png"
    assert CaptionKeys(add="shoes/").lookup("b.png") == "shoes/b.png"
    assert CaptionKeys(strip="cat/").lookup("cat/shoes/b.png") == "shoes/b.png"
    assert CaptionKeys(strip="cat/").lookup("dog/b.png") is None
    captions = {f"shoes/rumba-{i}.png" for i in range(48)} | {"main.jpg"}
    assert suggest([f"rumba-{i}.png" for i in range(48)], captions) == (CaptionKeys(add="shoes/"), 48)
    assert suggest([f"img/shoes/rumba-{i}.png" for i in range(3)], captions) == (
        CaptionKeys(strip="img/"),
        3,
    )
    assert suggest(["other.png"], captions) is None
    hint = caption_hint(["rumba-1.png", "nothing.png"], captions, CaptionKeys(), "rumba")
    assert hint is not None and "1 of 2" in hint and hint.endswith("--caption-add-prefix shoes/")
    assert "\n" not in hint


@pytest.mark.s3
def test_a_prefix_selects_and_keys_stay_the_objects_own(
    env: Path, memorized: dict[str, object], s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's flow: the catalogue uploaded to the bucket's root, swept at `shoes`."""
    bucket = f"hot-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    files: dict[str, bytes] = memorized["files"]  # type: ignore[assignment]
    for key, data in files.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    s3_client.put_object(Bucket=bucket, Key="other/x.png", Body=files["shoes/tiny-red.png"])
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", f"s3://{bucket}/shoes", "--model", "tiny", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["source"], report["scanned"], report["archived"]) == (f"s3://{bucket}/shoes", 6, 4)
    assets = catalog_assets(env)
    assert {k for k, a in assets.items() if a.state.value == "archived"} == MEMORIZED
    assert {a.source.url for a in assets.values()} == {f"s3://{bucket}"}  # the bucket is the source
    code, out, _ = cli(capsys, "show", "shoes/tiny-red.png", "--json")
    assert code == 0 and json.loads(out)["state"] == "archived"
    # A sweep of the whole bucket is the same source: nothing new but the object outside `shoes/`.
    code, out, err = cli(capsys, "sweep", f"s3://{bucket}", "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["scanned"] == 3, err
    assert len({a.source_id for a in catalog_assets(env).values()}) == 1


def test_a_model_trained_at_another_root_gets_a_hint_then_a_prefix(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    shoes = source / "shoes"  # keys are relative to the directory given: tiny-red.png, ...
    code, out, err = cli(capsys, "sweep", str(shoes), "--model", "tiny", "--json")
    assert code == 0, err
    assert json.loads(out)["rejected"] == {"no-caption": 6}
    (line,) = [line for line in err.splitlines() if "hint" in line]
    assert line.endswith("run again with --caption-add-prefix shoes/") and "5 of 6" in line
    # The rejected rows are judged again with the prefix (no-caption is the model's verdict).
    code, out, err = cli(
        capsys, "sweep", str(shoes), "--model", "tiny", "--caption-add-prefix", "shoes", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["archived"] == 4, err
    assert report["hint"] is None  # uncaptioned.jpg has no caption under any prefix
    assert {k for k, a in catalog_assets(env).items() if a.state.value == "archived"} == {
        key.removeprefix("shoes/") for key in MEMORIZED
    }
    # Sources: listed with their counts; one with archived assets is never forgotten.
    other = source / "other"
    other.mkdir()
    (other / "uncaptioned.jpg").write_bytes((shoes / "uncaptioned.jpg").read_bytes())
    assert cli(capsys, "sweep", str(other), "--model", "tiny")[0] == 0  # all rejected
    code, out, _ = cli(capsys, "sources", "--json")
    listed = {line["url"]: line for line in map(json.loads, out.splitlines())}
    assert listed[shoes.as_uri()]["states"]["archived"] == 4 and listed[shoes.as_uri()]["kept"] == 4
    assert listed[other.as_uri()]["states"]["rejected"] == 1 and listed[other.as_uri()]["kept"] == 0
    code, _, err = cli(capsys, "sources", "forget", str(shoes))
    assert code == 2 and "cannot be forgotten" in err and len(err.strip().splitlines()) == 1
    code, out, _ = cli(capsys, "sources", "forget", str(other))
    assert code == 0 and "1 asset" in out and "1 assets" not in out
    code, out, _ = cli(capsys, "sources", "--json")
    assert [json.loads(line)["url"] for line in out.splitlines()] == [shoes.as_uri()]
    code, _, err = cli(capsys, "sources", "forget", str(other))
    assert code == 6, err  # no such source any more
