"""`archiver review`, its JSON API, CSV batches, `sweep --require-review` and `archiver release`.

The `memorized` catalogue (four images its tiny model regenerates exactly, a captioned distractor
and an uncaptioned image the gate rejects) is swept with `--require-review` by the real CLI with
the real gate; the review server runs under uvicorn on 127.0.0.1 in a thread, built as `archiver
review` builds it, and is driven with httpx. The browser's side is tests/test_review_browser.py.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support import MEMORIZED, cli
from support.review import reviewing, states, sweep_for_review

from archiver.catalog import queries
from archiver.catalog.database import open_catalog
from archiver.catalog.models import AssetState
from archiver.edge.export import Scope, export
from archiver.errors import ExitCode


def test_review_api_csv_and_release(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sweep_for_review(capsys, memorized, source)
    assert all(state == AssetState.VAULTED for key, (state, _) in states(env).items() if key in MEMORIZED)
    assert {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()} >= MEMORIZED
    code, out, _ = cli(capsys, "ls", "--review", "pending", "--json")
    assert code == 0 and {json.loads(line)["key"] for line in out.splitlines()} == MEMORIZED

    blue, green, pink, red = sorted(MEMORIZED)
    with reviewing(env) as url, httpx.Client(base_url=url, timeout=60) as http:
        page = http.get("/")
        assert page.status_code == 200 and "archiver review" in page.text
        listed = http.get("/api/items").json()["items"]
        by_key = {item["key"]: item for item in listed}
        assert set(by_key) == MEMORIZED | {"shoes/distractor.png", "shoes/uncaptioned.jpg"}
        pressures = [item["pressure"] or 0.0 for item in listed]  # the uncaptioned one has no measures
        assert pressures == sorted(pressures, reverse=True)
        assert by_key["shoes/distractor.png"]["review"] == "gate-rejected"
        assert by_key["shoes/distractor.png"]["pressure"] > 1  # it failed a check
        item = by_key[red]
        assert (
            item["review"] == "pending" and item["record"]["seed"] == 0 and item["record"]["model"] == "tiny"
        )
        assert item["nearest"] in {c["name"] for c in item["checks"]}
        pending = http.get("/api/items", params={"review": "pending", "sort": "key"}).json()["items"]
        assert [i["key"] for i in pending] == sorted(MEMORIZED)

        detail = http.get(f"/api/items/{item['id']}").json()
        assert detail["original"]["where"] == "hot"
        original = http.get(f"/img/{item['id']}/original")
        assert original.content == (source / red).read_bytes()
        assert original.headers["x-archiver-original"] == "from the hot copy"
        render = http.get(f"/img/{item['id']}/render")
        assert render.status_code == 200 and render.headers["x-archiver-verified"] == "verified exact"
        for kind in ("diff", "colour"):
            shown = http.get(f"/img/{item['id']}/{kind}")
            assert shown.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(shown.content)).size == (64, 64)
        distractor = by_key["shoes/distractor.png"]["id"]
        assert http.get(f"/img/{distractor}/render").status_code == 409  # no record, no render
        assert http.get(f"/img/{distractor}/original").status_code == 200

        # bad input: an unknown asset, a malformed body, a decision that is not one
        assert http.get("/api/items/999999").status_code == 404
        assert http.post("/api/items/999999/decision", json={"decision": "approve"}).status_code == 404
        assert http.post(f"/api/items/{item['id']}/decision", content=b"{").status_code == 400
        assert http.post(f"/api/items/{item['id']}/decision", json={"decision": "maybe"}).status_code == 400
        refused = http.post(f"/api/items/{distractor}/decision", json={"decision": "approve"})
        assert refused.status_code == 409 and "kept no record" in refused.text

        decided = http.post(
            f"/api/items/{item['id']}/decision", json={"decision": "reject", "comment": "laces"}
        )
        assert decided.status_code == 200 and decided.json()["review"] == "rejected"
        assert decided.json()["reviewer"] == "ada" and decided.json()["comment"] == "laces"
    assert states(env)[red] == (AssetState.REJECTED, "reviewer")
    # a sweep without --require-review keeps what is held for review
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["archived"] == 0 and json.loads(out)["held"] == 3, (out, err)

    # CSV: export, approve all but two (the two rejected), apply; malformed files change nothing
    exported = tmp_path / "decisions.csv"
    code, out, err = cli(capsys, "review", "--export", str(exported))
    assert code == 0, err
    rows = list(csv.DictReader(exported.open()))
    assert {r["key"]: r["decision"] for r in rows}[red] == "reject"
    for bad, expected in [
        ("key,decision\nshoes/tiny-blue.jpg,maybe\n", ExitCode.USAGE),
        ("key,verdict\nshoes/tiny-blue.jpg,approve\n", ExitCode.USAGE),
        ("key,decision\nshoes/nope.png,approve\n", ExitCode.NOT_FOUND),
        ('key,decision\n"shoes/tiny-blue.jpg,approve\n', ExitCode.USAGE),
    ]:
        (tmp_path / "bad.csv").write_text(bad)
        code, _, err = cli(capsys, "review", "--apply", str(tmp_path / "bad.csv"))
        assert code == expected and err.startswith("archiver: error: ") and len(err.splitlines()) == 1, err
    for row in rows:
        row["decision"] = (
            "reject" if row["key"] in (red, pink) else "approve" if row["key"] in MEMORIZED else ""
        )
    with exported.open("w", newline="") as out_file:
        writer = csv.DictWriter(out_file, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = cli(capsys, "review", "--apply", str(exported), "--reviewer", "bob")
    assert code == 0 and "2 approved, 1 rejected, 1 already so" in out, (out, err)
    code, out, _ = cli(capsys, "ls", "--review", "approved", "--json")
    assert {json.loads(line)["key"] for line in out.splitlines()} == {blue, green}

    # release archives exactly the approved ones
    code, out, err = cli(capsys, "release", "--json")
    assert code == 0 and json.loads(out)["released"] == 2, err
    after = states(env)
    assert {k for k, (s, _) in after.items() if s == AssetState.ARCHIVED} == {blue, green}
    assert after[red] == after[pink] == (AssetState.REJECTED, "reviewer")
    assert (source / red).exists() and (source / pink).exists()
    assert not (source / blue).exists() and not (source / green).exists()
    code, _, err = cli(capsys, "review", "--apply", str(exported))  # again: a no-op
    assert code == 0, err
    (tmp_path / "late.csv").write_text(f"key,decision\n{blue},reject\n")
    code, _, err = cli(capsys, "review", "--apply", str(tmp_path / "late.csv"))
    assert code == ExitCode.USAGE and "already released" in err and "nothing was applied" in err

    # with review required, the edge export carries approved records only
    catalog = open_catalog(f"sqlite:///{env / 'catalog.db'}")
    try:
        assert export(catalog, Scope(), approved_only=True).records == 2
        with catalog.begin() as session:  # blue's record is no longer the one approved
            asset = queries.resolve_key(session, blue).asset
            queries.record_event(session, "verified", asset, seed=0)
        assert export(catalog, Scope(), approved_only=True).records == 1
        assert export(catalog, Scope()).records == 2
    finally:
        catalog.close()


def test_release_keeps_a_hot_copy_changed_after_approval(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sweep_for_review(capsys, memorized, source)
    decisions = tmp_path / "all.csv"
    decisions.write_text("key,decision\n" + "".join(f"{key},approve\n" for key in sorted(MEMORIZED)))
    code, _, err = cli(capsys, "review", "--apply", str(decisions))
    assert code == 0, err
    changed = sorted(MEMORIZED)[0]
    time.sleep(0.01)
    (source / changed).write_bytes((source / changed).read_bytes() + b"\0")
    code, out, err = cli(capsys, "release", "shoes/", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["released"] == len(MEMORIZED) - 1 and report["rejected"] == {"changed-after-verify": 1}
    assert states(env)[changed] == (AssetState.REJECTED, "changed-after-verify")
    assert (source / changed).exists()
