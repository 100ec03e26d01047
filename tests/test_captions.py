"""Caption files and templates: what `archiver train` learns each image's prompt from."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.example.rumba import write_catalogue
from archiver.training.captions import load_captions, template_captions


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_example_catalogues_csv(tmp_path: Path) -> None:
    entries = write_catalogue(tmp_path)
    captions = load_captions(str(tmp_path / "captions.csv"))
    assert captions == {e.key: e.prompt for e in entries}


def test_csv_with_quoted_commas_and_jsonl(tmp_path: Path) -> None:
    assert load_captions(write(tmp_path, "c.csv", 'key,prompt\na.png,"red, with laces"\n')) == {
        "a.png": "red, with laces"
    }
    jsonl = '{"key": "a.png", "prompt": "red"}\n\n{"key": "b/c.jpg", "prompt": "blue ünïcode"}\n'
    assert load_captions(write(tmp_path, "c.jsonl", jsonl)) == {"a.png": "red", "b/c.jpg": "blue ünïcode"}


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("c.csv", "file,caption\na,b\n", "header must be exactly key,prompt"),
        ("c.csv", "key,prompt\na.png,red,extra\n", "c.csv:2: expected 2 columns"),
        ("c.csv", "key,prompt\na.png,red\na.png,blue\n", "c.csv:3: key 'a.png' appears twice"),
        ("c.csv", "key,prompt\na.png,  \n", "c.csv:2: empty key or prompt"),
        ("c.csv", "key,prompt\n", "holds no captions"),
        ("c.jsonl", '{"key": "a"}\n', 'c.jsonl:1: expected {"key"'),
        ("c.jsonl", "{nope\n", "c.jsonl:1: not JSON"),
        ("c.txt", "a red\n", "must end in .csv"),
    ],
)
def test_bad_caption_files_name_file_and_line(tmp_path: Path, name: str, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_captions(write(tmp_path, name, text))
    assert says in str(caught.value)


def test_missing_or_binary_captions_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read captions file"):
        load_captions(str(tmp_path / "none.csv"))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read captions file"):
        load_captions(str(tmp_path / "bin.csv"))


def test_templates() -> None:
    got = template_captions(["shoes/rumba-red_white.png", "top.jpg"], "a photo of {words} in {parent}")
    assert got == {
        "shoes/rumba-red_white.png": "a photo of rumba red white in shoes",
        "top.jpg": "a photo of top in ",
    }
    with pytest.raises(ConfigError, match=r"uses colour: use \{key\}"):
        template_captions(["a.png"], "a {colour} shoe")
    with pytest.raises(ConfigError, match="uses no field"):
        template_captions(["a.png"], "a shoe")
