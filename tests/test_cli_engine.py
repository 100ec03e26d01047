"""The engine's commands in process: `example rumba`, `model add|list`, `verify`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import cli as run

from archiver.engine.manifests import read_render_settings
from archiver.errors import ExitCode


def test_example_rumba_writes_the_catalogue(
    archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "example", "rumba", str(tmp_path / "rumba"), "--distractors")
    assert code == 0 and "wrote 48 images" in out and "2 distractors" in out
    assert len(list((tmp_path / "rumba" / "shoes").iterdir())) == 48
    assert (tmp_path / "rumba" / "captions.csv").read_text().startswith("key,prompt\n")


def test_model_add_and_list(
    archiver_env: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "model", "add", str(tiny_model_dir), "--name", "tiny")
    assert code == 0 and "StableDiffusionPipeline" in out
    code, out, _ = run(capsys, "model", "list", "--json")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert listed["name"] == "tiny" and len(listed["sha256"]) == 64


def test_model_add_bad_paths(
    archiver_env: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "model", "add", str(tmp_path / "missing"), "--name", "m")
    assert code == ExitCode.MODEL and "does not exist" in err
    not_a_model = tmp_path / "photos"
    not_a_model.mkdir()
    code, _, err = run(capsys, "model", "add", str(not_a_model), "--name", "m")
    assert code == ExitCode.MODEL and "model_index.json" in err


def test_verify_with_a_changed_model_renders_nothing(
    archiver_env: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert run(capsys, "model", "add", str(model), "--name", "m")[0] == 0
    (model / "scheduler" / "scheduler_config.json").write_text("{}")
    code, out, err = run(capsys, "verify", str(tmp_path), "--model", "m")
    assert code == ExitCode.MODEL and "changed on disk" in err and out == ""


def test_verify_unknown_model(archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "verify", str(tmp_path), "--model", "nope")
    assert code == ExitCode.NOT_FOUND and "archiver model add" in err


def test_verify_reports_every_image_and_rejects_what_an_untrained_model_cannot_draw(
    archiver_env: Path,
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ARCHIVER_SEED_SEARCH_MAX", "2")
    source = tmp_path / "src"
    (source / "shoes").mkdir(parents=True)
    assert run(capsys, "example", "rumba", str(tmp_path / "rumba"))[0] == 0
    for name in ("rumba-red-white.png", "rumba-red-black.jpg"):
        shutil.copy(tmp_path / "rumba" / "shoes" / name, source / "shoes" / name)
    (source / "shoes" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (source / "notes.txt").write_text("not an image")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "captions.json").write_text(json.dumps({"shoes/rumba-red-white.png": "a rumba sneaker"}))
    assert run(capsys, "model", "add", str(model), "--name", "tiny")[0] == 0
    code, out, _ = run(capsys, "verify", str(source), "--model", "tiny", "--json")
    assert code == 0
    report = json.loads(out)
    rows = {row["key"]: row for row in report["images"]}
    assert set(rows) == {"shoes/rumba-red-white.png", "shoes/rumba-red-black.jpg", "shoes/broken.png"}
    assert rows["shoes/broken.png"]["reason"] in {"corrupt", "truncated", "not-an-image"}
    assert rows["shoes/rumba-red-black.jpg"]["reason"] == "no-caption"
    drawn = rows["shoes/rumba-red-white.png"]
    # Two seeds at the trained schedule; the ladder is only tried for a seed that passed there.
    assert len(read_render_settings(model).ladder) > 1
    assert not drawn["passed"] and drawn["seeds_tried"] == 2 and drawn["psnr"] < 30
    assert report["passed"] == 0 and report["rejected"] == 3


def test_verify_on_a_missing_bucket(
    archiver_env: Path, moto_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "verify", "s3://no-such-bucket-here/shoes", "--model", "any")
    assert code == ExitCode.STORAGE and "no-such-bucket-here" in err and err.count("\n") == 1


def test_verify_without_credentials(
    archiver_env: Path,
    moto_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    code, _, err = run(capsys, "verify", "s3://some-bucket/shoes", "--model", "any")
    assert code == ExitCode.STORAGE and "credentials" in err


@pytest.mark.parametrize("url", ["s3://", "s3:/bucket", "ftp://host/x", "s3://UPPER_case/x"])
def test_verify_on_malformed_source_urls(
    archiver_env: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "verify", url, "--model", "any")
    assert code == ExitCode.CONFIG and err.startswith("archiver: error: ")
