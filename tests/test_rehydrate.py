"""Model registry and record rendering on a tiny pipeline built from configs (untrained: these
test the machinery — hashing, pinning, determinism, the seed search — not image quality)."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from diffusers import EulerDiscreteScheduler
from PIL import Image
from support.models import TINY_PROMPT as PROMPT

from archiver.catalog.database import open_catalog
from archiver.catalog.queries import get_model, list_models
from archiver.engine.encoding import capture_profile
from archiver.engine.registry import load_model, model_sha256, register_model, verify_model
from archiver.engine.rehydrate import base_spec, rehydrate
from archiver.engine.rendering import enable_determinism
from archiver.errors import ConfigError, ModelError, NotFound
from archiver.example.rumba import write_catalogue
from archiver.gate import Gate, Thresholds
from archiver.prove import DeterminismSample, search_seed


@pytest.fixture(scope="module")
def png_profile(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    entries = write_catalogue(tmp_path_factory.mktemp("rumba"))
    png = next(e for e in entries if e.format == "PNG")
    return capture_profile(png.path.read_bytes(), png.key)


@pytest.fixture
def catalog(tmp_path: Path):  # type: ignore[no-untyped-def]
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield catalog
    catalog.close()


def test_register_is_idempotent_and_names_are_unique(catalog, tiny_model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with catalog.begin() as session:
        first = register_model(session, tiny_model_dir, "rumba")
        again = register_model(session, tiny_model_dir, "rumba")
        assert first.id == again.id and first.sha256 == model_sha256(tiny_model_dir)
        assert first.pipeline_class == "StableDiffusionPipeline"
    with catalog.begin() as session, pytest.raises(ConfigError, match="already registered as 'rumba'"):
        register_model(session, tiny_model_dir, "other-name")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "unet" / "config.json").write_text((copy / "unet" / "config.json").read_text() + "\n")
    with (
        catalog.begin() as session,
        pytest.raises(ConfigError, match="different model is already registered"),
    ):
        register_model(session, copy, "rumba")
    with catalog.begin() as session:
        assert [m.name for m in list_models(session)] == ["rumba"]
        with pytest.raises(NotFound, match="archiver model add"):
            get_model(session, "nope")


def test_hash_ignores_training_leftovers_but_not_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    before = model_sha256(copy)
    (copy / "checkpoints").mkdir()
    (copy / "checkpoints" / "step-10.safetensors").write_bytes(b"x")
    assert model_sha256(copy) == before
    weights = next((copy / "unet").glob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # one flipped bit in one weight
    weights.write_bytes(bytes(blob))
    assert model_sha256(copy) != before


def test_changed_or_missing_model_is_refused_before_rendering(
    catalog, tiny_model_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    with catalog.begin() as session:
        row = register_model(session, copy, "copy")
    weights = next((copy / "vae").glob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # one flipped bit (not a write of zeros: those bytes may already be zero)
    weights.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="changed on disk"):
        load_model(row)
    shutil.rmtree(copy)
    with pytest.raises(ModelError, match="does not exist"):
        verify_model(row)


def test_pickle_only_model_is_refused(catalog, tiny_model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, copy)
    for weights in (copy / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with catalog.begin() as session, pytest.raises(ModelError, match="only pickle weights"):
        register_model(session, copy, "pickled")


def test_rehydrate_is_byte_identical_and_pins_the_scheduler(
    catalog, tiny_model_dir: Path, png_profile
) -> None:  # type: ignore[no-untyped-def]
    enable_determinism()
    with catalog.begin() as session:
        loaded = load_model(register_model(session, tiny_model_dir, "tiny"))
    spec = replace(base_spec(loaded, prompt=PROMPT, width=64, height=64, steps=4), seed=7)
    first = rehydrate(loaded, spec, png_profile)
    assert rehydrate(loaded, spec, png_profile) == first
    # Someone swaps the pipeline's scheduler: the record's own scheduler is put back.
    loaded.pipeline.scheduler = EulerDiscreteScheduler.from_config(loaded.pipeline.scheduler.config)
    assert rehydrate(loaded, spec, png_profile) == first
    assert rehydrate(loaded, replace(spec, seed=8), png_profile) != first
    with Image.open(io.BytesIO(first)) as image:
        # the example PNG holds 149 colours: its render is served as a palette PNG of as many
        assert (image.format, image.size, image.mode) == ("PNG", (64, 64), "P")
        assert len(image.convert("RGB").getcolors(256) or ()) <= 149
        assert image.info.get("icc_profile") == png_profile.icc_profile
    # A record made in another precision renders in the loaded one (the reader's sketch judges it).
    assert rehydrate(loaded, replace(spec, dtype="float16"), png_profile) == first


def test_seed_search_stops_at_the_first_pass_and_is_capped(
    catalog, tiny_model_dir: Path, png_profile
) -> None:  # type: ignore[no-untyped-def]
    enable_determinism()
    with catalog.begin() as session:
        loaded = load_model(register_model(session, tiny_model_dir, "tiny"))
    base = base_spec(loaded, prompt=PROMPT, width=64, height=64, steps=4)
    # The "original" is exactly what seed 2 renders: only seed 2 can pass a 60 dB floor.
    target = rehydrate(loaded, replace(base, seed=2), png_profile)
    original = Image.open(io.BytesIO(target)).convert("RGB")
    gate = Gate(
        Thresholds(psnr_min=60, lpips_max=1, worst_tile_max=1, colour_max=1000), backbone="random-test-only"
    )
    found = search_seed(loaded, base, png_profile, original, lambda _: [], gate, max_seeds=8, batch_size=2)
    assert found.passed and found.spec.seed == 2 and found.data == target
    assert found.seeds_tried == 3  # seed 0 alone, then a batch of two: stopped in the batch holding seed 2
    assert found.report.metrics["deterministic"] is True
    missed = search_seed(loaded, base, png_profile, original, lambda _: [], gate, max_seeds=2, batch_size=4)
    assert not missed.passed and missed.data is None and missed.seeds_tried == 2
    assert missed.report.failures == ["gate-psnr"]


def loaded_tiny(catalog, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny model registered and loaded, with deterministic rendering on."""
    enable_determinism()
    with catalog.begin() as session:
        return load_model(register_model(session, tiny_model_dir, "tiny"))


def psnr_gate(floor: float) -> Gate:
    """A gate whose only working check is a PSNR floor (the others cannot refuse)."""
    thresholds = Thresholds(psnr_min=floor, lpips_max=1, worst_tile_max=1, colour_max=1000)
    return Gate(thresholds, backbone="random-test-only")


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_the_ladder_keeps_the_cheapest_render_of_a_seed_the_trained_schedule_proved(
    catalog, tiny_model_dir: Path, png_profile
) -> None:  # type: ignore[no-untyped-def]
    from archiver.gate.perceptual import psnr

    loaded = loaded_tiny(catalog, tiny_model_dir)
    base = base_spec(loaded, prompt=PROMPT, width=64, height=64, steps=4)
    # The "original" is what the trained schedule (4 steps) renders at seed 0; a PSNR floor between
    # what 1 and 2 steps of that seed reach lets exactly the nearer of the two pass.
    target = rehydrate(loaded, base, png_profile)
    original = decoded(target)
    cheap = {n: rehydrate(loaded, replace(base, steps=n), png_profile) for n in (1, 2)}
    reach = {n: psnr(original, decoded(data)) for n, data in cheap.items()}
    assert reach[1] != reach[2]
    nearer = max(reach, key=reach.__getitem__)
    floor = (reach[1] + reach[2]) / 2
    gate = psnr_gate(floor)
    found = search_seed(
        loaded, base, png_profile, original, lambda _: [], gate, max_seeds=4, batch_size=2, ladder=(1, 2, 4)
    )
    assert found.passed and (found.spec.steps, found.spec.seed) == (nearer, 0) and found.data == cheap[nearer]
    # Proved at 4 steps; then 1 and 2 steps of seed 0 (one refused) and the record rendered again.
    assert found.seeds_tried == 1 + (2 if nearer == 2 else 1)
    assert found.steps_rendered == 4 + (1 + 2 + 2 if nearer == 2 else 1 + 1)


def test_the_ladder_adds_no_attempt_a_refused_image_could_pass_by(
    catalog, tiny_model_dir: Path, png_profile
) -> None:  # type: ignore[no-untyped-def]
    """An image only a 1-step render matches is refused: the trained schedule must prove a seed before
    any cheaper rung renders it, so the ladder gives a distractor no extra chance."""
    loaded = loaded_tiny(catalog, tiny_model_dir)
    base = base_spec(loaded, prompt=PROMPT, width=64, height=64, steps=4)
    target = rehydrate(loaded, replace(base, steps=1), png_profile)
    original = decoded(target)
    gate = psnr_gate(60)
    missed = search_seed(
        loaded, base, png_profile, original, lambda _: [], gate, max_seeds=2, batch_size=2, ladder=(1, 2, 4)
    )
    assert not missed.passed and missed.data is None and missed.spec.steps == 4
    assert missed.seeds_tried == 2 and missed.steps_rendered == 8  # the trained schedule's two seeds only


def test_determinism_is_sampled_and_a_differing_pair_checks_every_record_after(
    catalog, tiny_model_dir: Path, png_profile, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import archiver.prove as prove

    loaded = loaded_tiny(catalog, tiny_model_dir)
    base = base_spec(loaded, prompt=PROMPT, width=64, height=64, steps=2)
    target = rehydrate(loaded, base, png_profile)
    original = decoded(target)
    gate = psnr_gate(60)
    sample = DeterminismSample(every=3)

    def judged() -> bool | None:
        found = search_seed(
            loaded,
            base,
            png_profile,
            original,
            lambda _: [],
            gate,
            max_seeds=1,
            batch_size=1,
            determinism=sample,
        )
        assert found.passed and found.data == target
        return found.report.metrics["deterministic"]  # type: ignore[return-value]

    # The first record is rendered twice, the next two are not (the sample stands for them: None).
    assert [judged() for _ in range(4)] == [True, None, None, True]
    assert (sample.accepted, sample.checked) == (4, 2)
    # The stack turns non-deterministic: the next sampled record fails, and every one after is checked.
    real = prove.rehydrate
    monkeypatch.setattr(prove, "rehydrate", lambda *a: real(*a) + b"x")
    judged_now = [judged() for _ in range(2)]
    assert judged_now == [None, None]  # not sampled: nothing renders them twice
    found = search_seed(
        loaded, base, png_profile, original, lambda _: [], gate, max_seeds=1, batch_size=1, determinism=sample
    )
    assert not found.passed and found.report.failures == ["gate-determinism"] and sample.broken
    assert sample.due()  # every later record is rendered twice
    monkeypatch.setattr(prove, "rehydrate", real)
    assert judged() is True
    assert sample.due()
