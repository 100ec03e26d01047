"""Key structure: which keys could be variants of one another, and the template that names them.

A key splits into its folder and its file name. The folder is kept as written, except that runs of
digits become `{n}` (so `products/1234/main.jpg` and `products/5678/main.jpg` stay together). The
file name splits at `-`, `_`, `.` and spaces into words; its *shape* is the separators and, for
each word, whether it is digits or not. Keys with the same folder template and the same name
shape are one candidate: `shoes/rumba-red-white.png` and `shoes/rumba-blue-gum.jpg` are, while
`shoes/rumba-red.png` is not. Which words vary is learned from the members (`Positions`): a word
that is the same in every member is written out, one that differs becomes `{v1}`, `{v2}`, ... (the
last word after a `.` is `{ext}`), e.g. `shoes/rumba-{v1}-{v2}.{ext}`.

Pure functions and small value holders; no I/O. Memory per candidate is bounded: each word
position remembers at most `MAX_VALUES` distinct values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SPLIT = re.compile(r"([-_. ]+)")
_DIGITS = re.compile(r"\d+")
MAX_VALUES = 64  # distinct values remembered per word position; beyond, only "more" is known


@dataclass(frozen=True)
class Shape:
    """What keys of one candidate share: the folder template and the file name's shape."""

    folder: str  # "" for keys at the source's root
    separators: tuple[str, ...]
    kinds: tuple[str, ...]  # per word: "#" digits, "w" anything else

    def literal_prefix(self) -> str:
        """The start every member's key has (up to the first `{n}` of the folder)."""
        prefix = self.folder.split("{n}", 1)[0]
        if "{n}" in self.folder or not self.folder:
            return prefix
        return prefix + "/"


def split_key(key: str) -> tuple[Shape, list[str]]:
    """The key's candidate shape and its file name's words."""
    folder, _, name = key.rpartition("/")
    parts = _SPLIT.split(name)
    words = parts[0::2]
    separators = tuple(parts[1::2])
    kinds = tuple("#" if word.isdigit() else "w" for word in words)
    return Shape(_DIGITS.sub("{n}", folder), separators, kinds), words


@dataclass
class Positions:
    """The distinct values seen at each word position of a candidate's members (bounded)."""

    values: list[dict[str, None]] = field(default_factory=list)  # insertion-ordered sets
    more: list[bool] = field(default_factory=list)

    def add(self, words: list[str]) -> None:
        if not self.values:
            self.values = [{} for _ in words]
            self.more = [False for _ in words]
        for index, word in enumerate(words):
            seen = self.values[index]
            if word not in seen:
                if len(seen) < MAX_VALUES:
                    seen[word] = None
                else:
                    self.more[index] = True

    def variables(self, shape: Shape) -> list[tuple[int, str, list[str], bool]]:
        """(position, name, example values, more than listed) of each word that varies."""
        out = []
        count = 0
        last = len(self.values) - 1
        for index, seen in enumerate(self.values):
            if len(seen) > 1 or self.more[index]:
                if index == last and index > 0 and shape.separators[index - 1].endswith("."):
                    name = "ext"
                else:
                    count += 1
                    name = f"v{count}"
                out.append((index, name, list(seen), self.more[index]))
        return out

    def template(self, shape: Shape) -> str:
        """e.g. `shoes/rumba-{v1}-{v2}.{ext}`; the last word is `{ext}` only after a `.`."""
        names = {index: name for index, name, _, _ in self.variables(shape)}
        words = []
        for index, seen in enumerate(self.values):
            name = names.get(index)
            words.append("{" + name + "}" if name else next(iter(seen), ""))
        pieces: list[str] = []
        for index, word in enumerate(words):
            pieces.append(word)
            if index < len(shape.separators):
                pieces.append(shape.separators[index])
        name = "".join(pieces)
        return f"{shape.folder}/{name}" if shape.folder else name
