"""archiver.engine.a1111: A1111 infotext read and written as stable-diffusion-webui does, strictly."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image, PngImagePlugin

from archiver.engine.a1111 import (
    A1111Parameters,
    format_parameters,
    from_record,
    parse_parameters,
    read_png_parameters,
)
from archiver.errors import ArchiverError, InfotextError

# Shaped like real webui output (v1.x): quoted values with commas and colons, flags, version last.
REAL = (
    "masterpiece, best quality, a rumba sneaker with red laces and a white sole, product photo\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4), watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3297394187, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, "
    'Clip skip: 2, Lora hashes: "add_detail: 7c6bad76eb54, epi_noise: a4e8b1d2c3f0", '
    "Hires upscale: 2, Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1"
)
OLD = (  # early webui: no negative prompt, no version, a fractional CFG scale
    "girl with an artist's beret, determined, blue eyes\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
)


def _params(**changes: object) -> A1111Parameters:
    base = A1111Parameters(
        prompt="a rumba sneaker with red laces and a white sole, product photo",
        steps=10,
        sampler="DDIM",
        cfg_scale=1.0,
        seed=1234,
        width=64,
        height=64,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_parses_a_real_infotext() -> None:
    p = parse_parameters(REAL)
    assert p.prompt.startswith("masterpiece, best quality, a rumba sneaker")
    assert p.negative_prompt == "lowres, bad anatomy, (worst quality:1.4), watermark"
    assert (p.steps, p.sampler, p.cfg_scale, p.seed) == (28, "DPM++ 2M", 7.0, 3297394187)
    assert (p.width, p.height, p.model_hash) == (512, 768, "6ce0161689")
    assert p.extra["Lora hashes"] == "add_detail: 7c6bad76eb54, epi_noise: a4e8b1d2c3f0"
    assert p.extra["Hires upscaler"] == "R-ESRGAN 4x+" and p.extra["Version"] == "v1.10.1"
    assert list(p.extra)[:3] == ["Schedule type", "Model", "Denoising strength"]  # order kept


def test_parses_an_old_infotext_without_negative_prompt() -> None:
    p = parse_parameters(OLD)
    assert p.prompt == "girl with an artist's beret, determined, blue eyes"
    assert p.negative_prompt == "" and p.cfg_scale == 7.5 and p.model_hash == "45dee52b"
    assert dict(p.extra) == {}


def test_real_infotexts_round_trip() -> None:
    for text in (REAL, OLD):
        p = parse_parameters(text)
        assert parse_parameters(format_parameters(p)) == p
    # Keys in A1111's canonical order come back as the very same text.
    assert format_parameters(parse_parameters(OLD)) == OLD


def test_format_writes_what_a1111_writes() -> None:
    p = _params(negative_prompt="blurry", model_hash="abcdef1234", extra={"Eta": "0.0", "RNG": "CPU"})
    assert format_parameters(p) == (
        "a rumba sneaker with red laces and a white sole, product photo\n"
        "Negative prompt: blurry\n"
        "Steps: 10, Sampler: DDIM, CFG scale: 1, Seed: 1234, Size: 64x64, Model hash: abcdef1234, "
        "Eta: 0.0, RNG: CPU"
    )


@pytest.mark.parametrize(
    "p",
    [
        _params(prompt="line one\nline two, with a comma\n\n  indented line three  "),
        _params(prompt="first\nsecond", negative_prompt="bad\nworse\nNegative prompt: still negative"),
        _params(prompt="", negative_prompt="only a negative"),
        _params(prompt="", negative_prompt=""),
        _params(prompt="ends with a newline\n", negative_prompt="trailing space "),
        _params(cfg_scale=7.25, seed=-1, sampler="Euler a", model_hash="x, y: z"),
        _params(cfg_scale=0.1 + 0.2),  # repr keeps every digit
        _params(extra={"Lora hashes": 'a: 1, b: "2"', "Note": "multi\nline", "Pad": "  spaced  "}),
        _params(extra={"Empty": "", "Quoted": '"already quoted"', "Half": '"open', "Tiling": "Tiling"}),
        _params(prompt="ünïcödé prompt ✓", extra={"Emoji": "👟, laces"}),
    ],
)
def test_round_trips(p: A1111Parameters) -> None:
    text = format_parameters(p)
    assert parse_parameters(text) == p
    assert format_parameters(parse_parameters(text)) == text


def test_flags_are_written_and_read_as_a1111_writes_them() -> None:
    text = format_parameters(_params(extra={"Tiling": "Tiling"}))
    assert text.endswith("Size: 64x64, Tiling")
    assert parse_parameters(text).extra["Tiling"] == "Tiling"


def test_windows_line_endings_are_read() -> None:
    assert parse_parameters(OLD.replace("\n", "\r\n")) == parse_parameters(OLD)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "a shoe\nSteps: abc, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 64x64",
            "Steps: 'abc' is not an integer",
        ),
        ("a shoe\nSteps: 0, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 64x64", "Steps: 0 is below 1"),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: high, Seed: 1, Size: 64x64", "CFG scale: 'high'"),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: nan, Seed: 1, Size: 64x64", "finite"),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1.5, Size: 64x64", "Seed: '1.5'"),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 64", "WIDTHxHEIGHT"),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 0x64", "WIDTHxHEIGHT"),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Size: 64x64", "no 'Seed'"),
        ("a shoe\nSteps: 20, Sampler: , CFG scale: 7, Seed: 1, Size: 64x64", "Sampler is empty"),
        ("a shoe\nSteps: 20, Steps: 21, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 8x8", "twice"),
        ('a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 8x8, X: "\\q"', "X: "),
        ("a shoe\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 8x8, ???", "cannot read"),
        ("just a prompt, no parameters", "no parameters line"),
        ("", "no parameters line"),
    ],
)
def test_malformed_strings_name_the_problem(text: str, match: str) -> None:
    with pytest.raises(InfotextError, match=match) as info:
        parse_parameters(text)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ArchiverError)


@pytest.mark.parametrize(
    ("p", "match"),
    [
        (_params(prompt="fine\nNegative prompt: sneaky"), "would split it"),
        (_params(prompt=" leading"), "starts with whitespace"),
        (_params(negative_prompt="\tleading"), "starts with whitespace"),
        (_params(prompt="a\r\nb"), "carriage return"),
        (_params(steps=0), "positive"),
        (_params(sampler=""), "sampler"),
        (_params(cfg_scale=float("inf")), "finite"),
        (_params(extra={"Seed": "2"}), "known key"),
        (_params(extra={"bad:key": "x"}), "plain label"),
    ],
)
def test_format_refuses_what_cannot_round_trip(p: A1111Parameters, match: str) -> None:
    with pytest.raises(InfotextError, match=match):
        format_parameters(p)


def test_parameters_are_immutable() -> None:
    extra = {"Eta": "0"}
    p = _params(extra=extra)
    extra["Eta"] = "1"
    assert p.extra["Eta"] == "0"
    with pytest.raises(TypeError):
        p.extra["Eta"] = "2"  # type: ignore[index]
    assert hash(p) == hash(_params(extra={"Eta": "0"}))


def _png(**text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_reads_the_parameters_chunk_of_a_png() -> None:
    assert read_png_parameters(_png(parameters=REAL)) == parse_parameters(REAL)


def test_reads_a_non_latin1_parameters_chunk() -> None:
    # Pillow writes such text as iTXt (UTF-8), as A1111 does through Pillow.
    p = _params(prompt="スニーカー, product photo")
    data = _png(parameters=format_parameters(p))
    assert b"iTXt" in data and read_png_parameters(data) == p


def test_png_without_parameters_gives_none() -> None:
    assert read_png_parameters(_png()) is None
    assert read_png_parameters(_png(Comment="made by hand")) is None


def test_not_a_png_and_malformed_chunk_raise() -> None:
    with pytest.raises(InfotextError, match="not a readable PNG"):
        read_png_parameters(b"GIF89a not really")
    with pytest.raises(InfotextError, match="Steps: 'x'"):
        read_png_parameters(_png(parameters="a\nSteps: x, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 8x8"))


def test_a_record_reads_as_infotext_and_round_trips() -> None:
    record = {
        "prompt": "a rumba sneaker with red laces",
        "negative_prompt": "",
        "seed": 7,
        "steps": 20,
        "guidance_scale": 1.0,
        "width": 64,
        "height": 64,
        "eta": 0.0,
        "scheduler_class": "DDIMScheduler",
        "model": "rumba",
        "model_sha256": "5cd642f21d62e06a9d80f4ab4b4c08db46d6465205a9f3997fbcbc9720b6c9b0",
    }
    text = format_parameters(from_record(record))
    assert text == (
        "a rumba sneaker with red laces\n"
        "Steps: 20, Sampler: DDIM, CFG scale: 1, Seed: 7, Size: 64x64, Model hash: 5cd642f21d, "
        "Archiver model: rumba"
    )
    assert parse_parameters(text) == from_record(record)
    unknown = from_record({**record, "scheduler_class": "TCDScheduler", "eta": 0.5})
    assert unknown.sampler == "TCDScheduler" and unknown.extra["Eta"] == "0.5"
