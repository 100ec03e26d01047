"""`archiver train`: a tiny model from scratch and LoRA on a base, both ending as registrable
pipelines that carry their captions; bad caption input gets a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import cli

from archiver.errors import ExitCode
from archiver.example.rumba import write_catalogue


@pytest.fixture
def four_shoes(tmp_path: Path) -> Path:
    full = tmp_path / "full"
    entries = write_catalogue(full)
    source = tmp_path / "shoes"
    for entry in entries[:4]:
        (source / entry.key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(entry.path, source / entry.key)
    return source


def test_train_a_tiny_model_and_register_it(
    archiver_env: Path, four_shoes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    code, stdout, err = cli(
        capsys,
        "train",
        str(four_shoes),
        "--caption-template",
        "a {words} sneaker",
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--register",
        "tiny",
    )
    assert code == 0, err
    report = json.loads(stdout.splitlines()[0])
    assert report["images"] == 4 and report["steps"] >= 3
    captions = json.loads((out / "captions.json").read_text())
    assert len(captions) == 4 and all(p.endswith(" sneaker") and "rumba" in p for p in captions.values())
    assert not (out / "checkpoints").exists()
    code, stdout, _ = cli(capsys, "model", "list", "--json")
    assert json.loads(stdout)["name"] == "tiny"


def test_train_lora_on_a_base_gives_a_fused_registrable_pipeline(
    archiver_env: Path,
    four_shoes: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "lora"
    code, stdout, err = cli(
        capsys,
        "train",
        str(four_shoes),
        "--caption-template",
        "a {words} sneaker",
        "--out",
        str(out),
        "--base",
        str(tiny_model_dir),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--register",
        "lora",
    )
    assert code == 0, err
    assert (out / "pytorch_lora_weights.safetensors").is_file() and (out / "unet").is_dir()
    assert "registered as 'lora'" in stdout


@pytest.mark.parametrize(
    ("extra", "code", "says"),
    [
        ([], ExitCode.USAGE, "exactly one of --captions"),
        (["--caption-template", "a {colour} shoe"], ExitCode.CONFIG, "uses colour"),
    ],
)
def test_bad_caption_options(
    archiver_env: Path,
    four_shoes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    says: str,
) -> None:
    got, _, err = cli(capsys, "train", str(four_shoes), "--out", str(tmp_path / "m"), *extra)
    assert got == code and says in err


def test_captions_that_match_no_image(
    archiver_env: Path, four_shoes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    captions = tmp_path / "c.csv"
    captions.write_text("key,prompt\nelsewhere/a.png,a shoe\n")
    code, _, err = cli(
        capsys, "train", str(four_shoes), "--captions", str(captions), "--out", str(tmp_path / "m")
    )
    assert code == ExitCode.CONFIG and "no captioned images" in err and "not in" in err
