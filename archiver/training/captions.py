"""Captions for training: which prompt each image key is trained (and later rendered) with.

Owns reading them from a CSV file (`key,prompt` header), a JSONL file (`{"key": …, "prompt": …}`
per line) or a template over the key (`"a photo of {words}"`), and reading a key list (`archiver
survey --write-group`'s file: `#` header lines, one of which may be `# caption-template: …`, then
one key per line). Errors name the file and line.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from archiver.errors import ConfigError

TEMPLATE_FIELDS = {
    "key": "the key, e.g. shoes/rumba-red-white.png",
    "name": "the file name, rumba-red-white.png",
    "stem": "the name without suffix, rumba-red-white",
    "parent": "the folder, shoes",
    "words": "the stem with - and _ as spaces, rumba red white",
}


def load_captions(path: str) -> dict[str, str]:
    """key -> prompt from a .csv or .jsonl file."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read captions file {path}: {exc}") from None
    if path.endswith(".jsonl"):
        pairs = _jsonl(path, text)
    elif path.endswith(".csv"):
        pairs = _csv(path, text)
    else:
        raise ConfigError(f"captions file {path} must end in .csv (key,prompt) or .jsonl")
    captions: dict[str, str] = {}
    for line, key, prompt in pairs:
        if not key or not prompt.strip():
            raise ConfigError(f"{path}:{line}: empty key or prompt")
        if key in captions:
            raise ConfigError(f"{path}:{line}: key {key!r} appears twice")
        captions[key] = prompt
    if not captions:
        raise ConfigError(f"captions file {path} holds no captions")
    return captions


def _csv(path: str, text: str) -> Iterable[tuple[int, str, str]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header != ["key", "prompt"]:
        raise ConfigError(f"{path}:1: the header must be exactly key,prompt (got {','.join(header or [])!r})")
    for line, row in enumerate(reader, start=2):
        if len(row) != 2:
            raise ConfigError(f"{path}:{line}: expected 2 columns (key,prompt), got {len(row)}; quote commas")
        yield line, row[0], row[1]


def _jsonl(path: str, text: str) -> Iterable[tuple[int, str, str]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{line}: not JSON ({exc.msg})") from None
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("key"), str)
            or not isinstance(item.get("prompt"), str)
        ):
            raise ConfigError(f'{path}:{line}: expected {{"key": "...", "prompt": "..."}}')
        yield line, item["key"], item["prompt"]


def template_captions(keys: Iterable[str], template: str) -> dict[str, str]:
    """key -> template filled with fields of the key (see TEMPLATE_FIELDS)."""
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(used - set(TEMPLATE_FIELDS))
    if unknown or not used:
        raise ConfigError(
            f"caption template {template!r} uses {', '.join(unknown) or 'no field'}: "
            f"use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        )
    captions = {}
    for key in keys:
        pure = PurePosixPath(key)
        fields = {
            "key": key,
            "name": pure.name,
            "stem": pure.stem,
            "parent": str(pure.parent) if str(pure.parent) != "." else "",
            "words": " ".join(pure.stem.replace("_", " ").replace("-", " ").split()),
        }
        captions[key] = template.format(**fields)
    return captions


@dataclass(frozen=True)
class KeyList:
    keys: list[str]
    caption_template: str | None


def load_key_list(path: Path) -> KeyList:
    """The keys of a key list file and its caption template, if its header names one.

    Lines starting with `#` before the first key are the header; after it every non-empty line is
    a key (a key may itself start with `#` there).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key list {path}: {exc}") from None
    keys: list[str] = []
    template = None
    for line in text.splitlines():
        if not keys and line.startswith("#"):
            name, _, value = line[1:].strip().partition(":")
            if name.strip() == "caption-template" and value.strip():
                template = value.strip()
            continue
        if line.strip():
            keys.append(line)
    if not keys:
        raise ConfigError(f"key list {path} holds no keys")
    return KeyList(keys, template)
