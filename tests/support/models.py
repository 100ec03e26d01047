"""The tiny models the tests render with: an untrained tiny pipeline (`tiny_model_dir`) and the
`memorized` catalogue, whose originals are that model's own renders (fixtures, session-scoped)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

# How a memorized model renders (its training.json): its originals are these renders at seed 0.
RENDER: dict[str, Any] = {"steps": 2, "guidance_scale": 1.0, "eta": 0.0}
TINY_PROMPT = "a rumba sneaker with red laces and a white sole, product photo"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny StableDiffusionPipeline saved with safetensors (renders noise, quickly)."""
    from archiver.engine.pipeline import TinySpec, build_tiny_pipeline

    path = tmp_path_factory.mktemp("model") / "tiny"
    build_tiny_pipeline(TinySpec(vocabulary=[TINY_PROMPT]), seed=0).save_pretrained(
        path, safe_serialization=True
    )
    return path


@pytest.fixture(scope="session")
def memorized(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, object]:
    """A model and a catalogue it regenerates exactly: each original IS the model's render of its
    prompt at seed 0 (2 steps), encoded like the example's PNGs and JPEGs. Plus two images it cannot
    draw: a captioned distractor (an example shoe) and an uncaptioned one. Returns the model dir and
    the source files {key: bytes}."""
    import shutil

    from archiver.engine.encoding import capture_profile, encode
    from archiver.engine.pipeline import load_pipeline
    from archiver.engine.rendering import enable_determinism
    from archiver.example.rumba import write_catalogue

    enable_determinism()
    root = tmp_path_factory.mktemp("memorized")
    model = root / "model"
    shutil.copytree(tiny_model_dir, model)
    example = write_catalogue(root / "rumba")
    png = next(e for e in example if e.format == "PNG")
    jpeg = next(e for e in example if e.format == "JPEG")
    profiles = {"png": capture_profile(png.path.read_bytes()), "jpg": capture_profile(jpeg.path.read_bytes())}
    pipe = load_pipeline(model)
    files: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for i, colour in enumerate(["red", "blue", "green", "pink"]):
        ext = "png" if i % 2 == 0 else "jpg"
        key = f"shoes/tiny-{colour}.{ext}"
        captions[key] = f"a rumba sneaker with {colour} laces and a white sole, product photo"
        files[key] = encode(render_at_seed_0(pipe, captions[key]), profiles[ext])
    captions["shoes/distractor.png"] = "a rumba sneaker with gold laces and a white sole, product photo"
    files["shoes/distractor.png"] = png.path.read_bytes()
    files["shoes/uncaptioned.jpg"] = jpeg.path.read_bytes()
    write_manifests(model, captions)
    return {"model": model, "files": files}


def render_at_seed_0(pipe: Any, prompt: str) -> Image.Image:
    """The tiny model's render of `prompt` at seed 0, as a memorized model renders (`RENDER`)."""
    from archiver.engine.rendering import render_batch

    (image,) = render_batch(
        pipe, prompt=prompt, negative_prompt=None, seeds=[0], width=64, height=64, device="cpu", **RENDER
    )
    return image


def write_manifests(model: Path, captions: dict[str, str]) -> None:
    """The model's captions.json, and its training.json: it renders as `RENDER` says."""
    (model / "captions.json").write_text(json.dumps(captions))
    (model / "training.json").write_text(json.dumps({"render": RENDER}))
