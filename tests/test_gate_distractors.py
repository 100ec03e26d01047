"""The gate on real parts, end to end: the shipped example model, the pretrained LPIPS trunk and
`archiver sweep`, over the example catalogue with distractors placed under trained keys.

A caption exists for every distractor, so only the gate can refuse it. Each class must be refused
by the check that sees it, and every memorized image must be archived.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import catalog_assets, cli

from archiver.catalog.models import AssetState
from archiver.example.rumba import encode_like_key, key_for, trained_key_distractors, write_catalogue

MODEL = Path(__file__).resolve().parents[1] / "examples" / "rumba" / "model"

# The check that must be among the reasons for each class (others may join it).
SEEN_BY = {
    "tinted-white": "gate-colour",
    "sole-shift-5": "gate-colour",
    "sole-shift-10": "gate-colour",
    "lace-shift-5": "gate-colour",
    "lace-shift-10": "gate-colour",
    "added-detail": "gate-worst-tile",
    "removed-part": "gate-psnr",
    "sibling-image": "gate-sibling",
}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sweep_refuses_every_distractor_and_archives_every_memorized_image(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hot = tmp_path / "hot"
    entries = write_catalogue(hot)
    distractors = {d.key: d for d in trained_key_distractors()}
    assert set(SEEN_BY) == {d.kind for d in distractors.values()}
    for key, distractor in distractors.items():
        (hot / key).write_bytes(encode_like_key(distractor.image, key))
    assert cli(capsys, "model", "add", str(MODEL), "--name", "rumba")[0] == 0

    code, out, err = cli(capsys, "sweep", str(hot), "--model", "rumba")
    assert "rejected" in out + err
    assert code == 0, err

    assets = catalog_assets(env)
    assert len(assets) == len(entries) == 48
    for key, distractor in distractors.items():
        asset = assets[key]
        assert asset.state == AssetState.REJECTED, (distractor.kind, asset.state)
        assert asset.reason is not None and asset.reason.startswith("gate-")
        assert SEEN_BY[distractor.kind] in (asset.reason_detail or "").split(", "), (
            distractor.kind,
            asset.reason_detail,
        )
        assert (hot / key).is_file()  # a refused image stays hot, untouched
    # The "sibling-image" distractor puts green-red's picture under blue-red's key: the source now
    # holds that picture twice, so green-red's own render cannot be told apart from a sibling either.
    # Refusing it is the safe answer (it stays hot); every other memorized image is archived.
    twin = key_for("green", "red")
    assert assets[twin].state == AssetState.REJECTED and assets[twin].reason == "gate-sibling"
    archived = {key for key, asset in assets.items() if asset.state == AssetState.ARCHIVED}
    assert archived == {e.key for e in entries} - set(distractors) - {twin}
    for key in archived:
        report = assets[key].record.gate_report
        assert report["backbone"]["backbone"] == "pretrained" and report["passed"] is True
        assert report["metrics"]["colour_worst"] <= report["thresholds"]["colour_max"]
        assert not (hot / key).exists()
