"""The gate on real parts, end to end: the shipped example model, the pretrained LPIPS trunk and
`archiver sweep`, over the example catalogue with distractors placed under trained keys.

A caption exists for every distractor, so only the gate can refuse it. Each class must be refused
by the check that sees it, and every memorized image must be archived. The sweep is the session's
one sweep of the example (`example_home`, tests/support/example.py), with the default seed search:
a distractor refused after 8 seeds is refused more surely than after 2.
"""

from __future__ import annotations

import pytest
from support import catalog_assets
from support.example import TWIN, ExampleHome

from archiver.catalog.models import AssetState
from archiver.example.rumba import encode_like_key

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
@pytest.mark.timeout(1800)  # the first test to ask pays for the session's sweep of the example
def test_sweep_refuses_every_distractor_and_archives_every_memorized_image(example_home: ExampleHome) -> None:
    swept = example_home.swept.reset()
    distractors = example_home.distractors
    assert set(SEEN_BY) == {d.kind for d in distractors.values()}
    # The "sibling-image" distractor puts green-red's picture under blue-red's key: the source now
    # holds that picture twice, so green-red's own render cannot be told apart from a sibling either.
    # Refusing it is the safe answer (it stays hot); every other memorized image is archived.
    assert sum(swept.summary["rejected"].values()) == len(distractors) + 1, swept.summary  # and the twin

    assets = catalog_assets(swept.home)
    assert len(assets) == len(example_home.entries) == 48
    for key, distractor in distractors.items():
        asset = assets[key]
        assert asset.state == AssetState.REJECTED, (distractor.kind, asset.state)
        assert asset.reason is not None and asset.reason.startswith("gate-")
        assert SEEN_BY[distractor.kind] in (asset.reason_detail or "").split(", "), (
            distractor.kind,
            asset.reason_detail,
        )
        assert (swept.hot / key).read_bytes() == encode_like_key(distractor.image, key)  # untouched
    assert assets[TWIN].state == AssetState.REJECTED and assets[TWIN].reason == "gate-sibling"
    archived = {key for key, asset in assets.items() if asset.state == AssetState.ARCHIVED}
    assert archived == {e.key for e in example_home.entries} - set(distractors) - {TWIN}
    assert swept.summary["archived"] == len(archived)
    for key in archived:
        report = assets[key].record.gate_report  # type: ignore[union-attr]
        assert report["backbone"]["backbone"] == "pretrained" and report["passed"] is True
        assert report["metrics"]["colour_worst"] <= report["thresholds"]["colour_max"]
        assert not (swept.hot / key).exists()
