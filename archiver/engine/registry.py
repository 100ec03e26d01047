"""The model registry: a pipeline directory is known by the full SHA-256 of its files.

Owns hashing a model directory and turning a registered model into a loaded pipeline only after
its files hash to what was registered: a model missing or changed on disk is refused before it
renders anything. Catalog rows are written through `archiver.catalog.queries`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from archiver.catalog import queries
from archiver.catalog.models import Model
from archiver.engine.pipeline import check_model_dir, load_pipeline
from archiver.errors import ModelError

CHUNK = 1 << 20
# Training leftovers that are not part of the pipeline a record renders with.
IGNORED_DIRS = {"checkpoints", ".cache", "__pycache__"}


def model_files(path: Path) -> list[Path]:
    """Every file that makes up the model, in a stable order (hidden files and leftovers excluded)."""
    files = []
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and not any(p.startswith(".") or p in IGNORED_DIRS for p in relative.parts):
            files.append(file)
    return files


def model_sha256(path: Path) -> str:
    """SHA-256 over every file's relative path, size and content: any change gives a new hash."""
    digest = hashlib.sha256()
    for file in model_files(path):
        file_digest = hashlib.sha256()
        with file.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                file_digest.update(chunk)
        digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\0".encode())
        digest.update(file_digest.digest())
    return digest.hexdigest()


def pipeline_class_of(path: Path) -> str:
    return str(json.loads((path / "model_index.json").read_text(encoding="utf-8"))["_class_name"])


SUPPORTED_PIPELINES = {"StableDiffusionPipeline"}


def register_model(session: Session, path: Path, name: str) -> Model:
    """Add a pipeline directory under `name`, or return the existing row if it is the same model."""
    path = path.resolve()
    check_model_dir(path)
    pipeline_class = pipeline_class_of(path)
    if pipeline_class not in SUPPORTED_PIPELINES:
        raise ModelError(
            f"{path} is a {pipeline_class}; archiver renders {', '.join(sorted(SUPPORTED_PIPELINES))} models"
        )
    sha256 = model_sha256(path)
    return queries.add_model(session, name=name, sha256=sha256, path=str(path), pipeline_class=pipeline_class)


@dataclass
class LoadedModel:
    row: Model
    pipeline: Any
    device: str


def verify_model(row: Model) -> Path:
    """The model's directory, after proving its files still hash to what was registered."""
    path = Path(row.path)
    check_model_dir(path)
    actual = model_sha256(path)
    if actual != row.sha256:
        raise ModelError(
            f"model {row.name!r} changed on disk ({path} hashes to {actual[:12]}…, registered as "
            f"{row.sha256[:12]}…): restore the original files, or register the new ones under a new name"
        )
    return path


def load_model(row: Model, device: str = "cpu") -> LoadedModel:
    """Verify, then load. Once loaded, the weights in memory are what renders (later disk edits do not)."""
    import diffusers
    import torch
    import transformers

    # Their loading bars would bury archiver's own output; archiver reports progress itself.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    path = verify_model(row)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return LoadedModel(row=row, pipeline=load_pipeline(path, device=device, dtype=dtype), device=device)


def load_to_render(row: Model, device: str = "cpu") -> LoadedModel:
    """`load_model` with renders made deterministic first (process-wide): how the sweep, the read
    path and the fleet's workers load a model they will render with."""
    from archiver.engine.rendering import enable_determinism

    enable_determinism()
    return load_model(row, device=device)
