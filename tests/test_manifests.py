"""A model directory's manifests: captions and the render settings a model was trained for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.engine.manifests import (
    RenderSettings,
    read_captions,
    read_render_settings,
    write_manifests,
)
from archiver.errors import ModelError

SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "rumba" / "model"


def test_written_manifests_read_back(tmp_path: Path) -> None:
    render = RenderSettings(steps=10, guidance_scale=2.5, eta=0.5)
    write_manifests(tmp_path, {"shoes/a.png": "a shoe"}, {"recipe": {"steps": 3}}, render)
    assert read_captions(tmp_path) == {"shoes/a.png": "a shoe"}
    assert read_render_settings(tmp_path) == render
    assert json.loads((tmp_path / "training.json").read_text())["recipe"] == {"steps": 3}


def test_a_model_trained_for_ten_steps_is_rendered_with_ten(tmp_path: Path) -> None:
    """Models written before training recorded `render` fall back to the schedule they trained on."""
    (tmp_path / "training.json").write_text(json.dumps({"recipe": {"schedule_steps": 10}}))
    assert read_render_settings(tmp_path) == RenderSettings(steps=10)


def test_the_shipped_model_renders_with_its_training_schedule() -> None:
    recipe = json.loads((SHIPPED / "training.json").read_text())["recipe"]
    assert read_render_settings(SHIPPED).steps == recipe["schedule_steps"] == 20
    # Its manifest names no ladder: the default cheaper rungs, then the trained schedule.
    assert read_render_settings(SHIPPED).ladder == (1, 2, 4, 20)


def test_a_model_names_its_step_ladder(tmp_path: Path) -> None:
    render = RenderSettings(steps=8, step_ladder=(2, 8))
    write_manifests(tmp_path, {}, {}, render)
    assert json.loads((tmp_path / "training.json").read_text())["render"]["step_ladder"] == [2, 8]
    assert read_render_settings(tmp_path).ladder == (2, 8)
    assert RenderSettings(steps=3).ladder == (1, 2, 3)  # only rungs cheaper than the schedule
    assert RenderSettings(steps=1).ladder == (1,)


def test_no_manifests_mean_defaults_and_no_captions(tmp_path: Path) -> None:
    assert read_captions(tmp_path) == {} and read_render_settings(tmp_path) == RenderSettings()


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("captions.json", "[1, 2]", "not a key -> prompt mapping"),
        ("captions.json", "{not json", "cannot read"),
        ("training.json", '{"render": {"steps": "many"}}', "bad render settings"),
        ("training.json", "[]", "not a JSON object"),
        ("training.json", '{"render": {"steps": 8, "step_ladder": [4, 2, 8]}}', "must ascend"),
        ("training.json", '{"render": {"steps": 8, "step_ladder": [1, 2]}}', "end with steps"),
        ("training.json", '{"render": {"steps": 8, "step_ladder": [0, 8]}}', "at least 1"),
    ],
)
def test_broken_manifests_are_model_errors_that_say_what_to_do(
    tmp_path: Path, name: str, body: str, message: str
) -> None:
    (tmp_path / name).write_text(body)
    with pytest.raises(ModelError, match=f"{message}.*(retrain or fix it)"):
        read_captions(tmp_path) if name == "captions.json" else read_render_settings(tmp_path)
