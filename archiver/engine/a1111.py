"""AUTOMATIC1111 "parameters" (infotext): read and write the interop view of a record.

Owns the text format stable-diffusion-webui writes into a PNG's `parameters` chunk and shows under
each image::

    a rumba sneaker with red laces
    Negative prompt: blurry, lowres
    Steps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1234, Size: 64x64, Model hash: 45dee52b, Clip skip: 2

The prompt is every line before an optional line starting `Negative prompt:`; the negative prompt
runs from there to the last line; the last line holds `key: value` pairs separated by commas, a
value being written as JSON in double quotes when it contains a comma, a colon or a newline (A1111's
`quote`). Keys this module does not model are kept, in order, in `extra`.

This is an interop view, not the record: it never decides what a record holds, and it touches no
storage. Where this reader is stricter than A1111's (which prints and skips what it cannot read),
that is on purpose: a bad value raises `InfotextError` naming it. Lines of a prompt keep their
inner whitespace (A1111 strips each line), so multi-line prompts round-trip exactly.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from PIL import Image

from archiver.errors import InfotextError

NEGATIVE_MARKER = "Negative prompt:"
# A1111's own pattern (modules/infotext_utils.py), applied from each position in turn so that
# text it cannot read is reported instead of skipped.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY = re.compile(r"\w[\w \-/]+")
# A1111's writer puts a bare `key` for a value equal to its key (a flag); its reader skips those.
_FLAG = re.compile(r"\s*(\w[\w \-/]*?)\s*(?:,|$)")
_SIZE = re.compile(r"(\d+)x(\d+)")
_INT = re.compile(r"[+-]?\d+")
_KNOWN = ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash")


@dataclass(frozen=True)
class A1111Parameters:
    prompt: str
    steps: int
    sampler: str  # A1111's sampler label, e.g. "DDIM", "Euler a", "DPM++ 2M"
    cfg_scale: float
    seed: int
    width: int
    height: int
    negative_prompt: str = ""
    model_hash: str | None = None
    # Every other `key: value` of the parameters line, unquoted, in the order they appeared.
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Read-only, so a frozen instance cannot change under the dict it holds.
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))


# diffusers scheduler class -> the sampler label A1111 shows for it.
SAMPLER_LABELS = MappingProxyType(
    {
        "DDIMScheduler": "DDIM",
        "PNDMScheduler": "PLMS",
        "LMSDiscreteScheduler": "LMS",
        "EulerDiscreteScheduler": "Euler",
        "EulerAncestralDiscreteScheduler": "Euler a",
        "HeunDiscreteScheduler": "Heun",
        "DPMSolverMultistepScheduler": "DPM++ 2M",
        "UniPCMultistepScheduler": "UniPC",
    }
)


def from_record(record: Mapping[str, object]) -> A1111Parameters:
    """The infotext view of a record as `archiver show --json` prints it (`record`: prompt, seed,
    steps, guidance_scale, width, height, scheduler_class, eta, model, model_sha256).

    "Model hash" is the first 10 hex digits of the registry's SHA-256 of the model directory (A1111
    hashes one checkpoint file; a diffusers directory has several), and "Archiver model" names it.
    """
    extra = {"Archiver model": str(record["model"])}
    if record.get("eta"):
        extra["Eta"] = _format_float(float(record["eta"]))  # type: ignore[arg-type]
    scheduler = str(record["scheduler_class"])
    return A1111Parameters(
        prompt=str(record["prompt"]),
        negative_prompt=str(record.get("negative_prompt") or ""),
        steps=int(record["steps"]),  # type: ignore[call-overload]
        sampler=SAMPLER_LABELS.get(scheduler, scheduler),
        cfg_scale=float(record["guidance_scale"]),  # type: ignore[arg-type]
        seed=int(record["seed"]),  # type: ignore[call-overload]
        width=int(record["width"]),  # type: ignore[call-overload]
        height=int(record["height"]),  # type: ignore[call-overload]
        model_hash=str(record["model_sha256"])[:10],
        extra=extra,
    )


def parse_parameters(text: str) -> A1111Parameters:
    """Read an infotext. Raises `InfotextError` (a ValueError) naming the first thing it cannot read."""
    lines = text.replace("\r\n", "\n").strip().split("\n")
    last = lines.pop()
    if len(_PARAM.findall(last)) < 3:  # A1111's own test for "this is the parameters line"
        raise InfotextError(
            "no parameters line: the last line must read like 'Steps: 20, Sampler: DDIM, CFG scale: 7, …'"
        )
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if not negative_lines and line.startswith(NEGATIVE_MARKER):
            negative_lines.append(line[len(NEGATIVE_MARKER) :].lstrip())
        elif negative_lines:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)

    values = _parse_pairs(last)
    missing = [key for key in _KNOWN[:5] if key not in values]
    if missing:
        raise InfotextError(f"the parameters line has no {', '.join(repr(k) for k in missing)}")
    width, height = _size(values.pop("Size"))
    return A1111Parameters(
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines),
        steps=_int("Steps", values.pop("Steps"), minimum=1),
        sampler=_text("Sampler", values.pop("Sampler")),
        cfg_scale=_float("CFG scale", values.pop("CFG scale")),
        seed=_int("Seed", values.pop("Seed")),
        width=width,
        height=height,
        model_hash=values.pop("Model hash", None),
        extra=values,
    )


def format_parameters(p: A1111Parameters) -> str:
    """Write `p` as A1111 does. Raises `InfotextError` for what the format cannot carry unambiguously."""
    if "\r" in p.prompt + p.negative_prompt:
        raise InfotextError("the prompt holds a carriage return, which the infotext does not keep")
    if any(line.startswith(NEGATIVE_MARKER) for line in p.prompt.split("\n")):
        raise InfotextError(f"a line of the prompt starts with {NEGATIVE_MARKER!r}, which would split it")
    if p.prompt[:1].isspace():
        raise InfotextError("the prompt starts with whitespace, which the infotext does not keep")
    if p.negative_prompt[:1].isspace():
        raise InfotextError("the negative prompt starts with whitespace, which the infotext does not keep")
    if not (p.steps >= 1 and p.width >= 1 and p.height >= 1 and p.sampler):
        raise InfotextError("steps, width and height must be positive and the sampler named")
    if not math.isfinite(p.cfg_scale):
        raise InfotextError(f"CFG scale {p.cfg_scale} is not a finite number")

    pairs: list[tuple[str, str]] = [
        ("Steps", str(p.steps)),
        ("Sampler", p.sampler),
        ("CFG scale", _format_float(p.cfg_scale)),
        ("Seed", str(p.seed)),
        ("Size", f"{p.width}x{p.height}"),
    ]
    if p.model_hash is not None:
        pairs.append(("Model hash", p.model_hash))
    for key, value in p.extra.items():
        if key in _KNOWN or not _KEY.fullmatch(key) or key != key.strip():
            raise InfotextError(f"cannot write the extra key {key!r}: a known key or not a plain label")
        pairs.append((key, value))

    head = p.prompt + (f"\n{NEGATIVE_MARKER} {p.negative_prompt}" if p.negative_prompt else "")
    line = ", ".join(key if key == value else f"{key}: {_quote(value)}" for key, value in pairs)
    text = f"{head}\n{line}"
    # A1111 strips the whole text, so an empty prompt leaves no empty first line.
    return text if p.prompt else text.lstrip("\n")


def read_png_parameters(data: bytes) -> A1111Parameters | None:
    """The parsed `parameters` text chunk (tEXt, zTXt or iTXt) of a PNG, or None if it has none."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            text = image.info.get("parameters")
            if text is None:
                # Chunks after the image data are only read once the pixels are.
                text = getattr(image, "text", {}).get("parameters")
    except Exception as e:  # Pillow: UnidentifiedImageError, OSError, SyntaxError, bombs, …
        raise InfotextError(f"not a readable PNG: {' '.join(str(e).split()) or type(e).__name__}") from None
    if text is None:
        return None
    return parse_parameters(str(text))


def _parse_pairs(line: str) -> dict[str, str]:
    values: dict[str, str] = {}
    pos = 0
    while line[pos:].strip():
        m = _PARAM.match(line, pos)
        if m is not None:
            key, value = m.group(1), _unquote(m.group(1), m.group(2).strip())
        else:
            m = _FLAG.match(line, pos)
            if m is None:
                raise InfotextError(f"cannot read the parameters line at {line[pos : pos + 40].strip()!r}")
            key = value = m.group(1)
        if key in values:
            raise InfotextError(f"the parameters line names {key!r} twice")
        values[key] = value
        pos = m.end()
    return values


def _quote(value: str) -> str:
    # A1111 quotes values holding a comma, newline or colon; we also quote what would not survive
    # unquoted: surrounding whitespace, and a value that itself starts and ends with a quote.
    if any(c in value for c in ",\n:") or value != value.strip() or (value[:1] == '"' and value[-1:] == '"'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _unquote(key: str, raw: str) -> str:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise InfotextError(f"{key}: {raw} is not a valid quoted value") from None
        if not isinstance(value, str):
            raise InfotextError(f"{key}: {raw} is not a quoted string")
        return value
    return raw


def _int(key: str, value: str, minimum: int | None = None) -> int:
    if not _INT.fullmatch(value):
        raise InfotextError(f"{key}: {value!r} is not an integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise InfotextError(f"{key}: {number} is below {minimum}")
    return number


def _float(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InfotextError(f"{key}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise InfotextError(f"{key}: {value!r} is not a finite number")
    return number


def _text(key: str, value: str) -> str:
    if not value:
        raise InfotextError(f"{key} is empty")
    return value


def _size(value: str) -> tuple[int, int]:
    m = _SIZE.fullmatch(value)
    if m is None or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise InfotextError(f"Size: {value!r} is not WIDTHxHEIGHT, e.g. 512x512")
    return int(m.group(1)), int(m.group(2))


def _format_float(value: float) -> str:
    # "7" rather than "7.0", as most infotexts in the wild read; repr otherwise, which round-trips.
    return str(int(value)) if value.is_integer() else repr(value)
