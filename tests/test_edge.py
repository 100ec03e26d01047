"""The edge export: keys, compact values, the three formats, deltas applied to a bundle, and a
bundle plus the model directory rehydrating an asset with no catalog and no vault.

Catalogs are written through the catalog queries (SQLite and PostgreSQL); the last test sweeps the
`memorized` catalogue for real and renders from the bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import MEMORIZED, cli

from archiver.catalog import queries
from archiver.catalog.database import Catalog, open_catalog
from archiver.catalog.models import AssetState
from archiver.edge import export as edge_export
from archiver.edge import keys
from archiver.edge.bundle import apply_delta, open_bundle
from archiver.edge.export import Scope, export, write
from archiver.edge.records import MIN_SAMPLES, EdgeRecord, train
from archiver.engine.encoding import EncodingProfile
from archiver.errors import ConfigError, ModelError, NotFound

WHEN = datetime(2024, 5, 6, 7, 8, 9, 250000, tzinfo=UTC)
SCHEDULER = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "clip_sample": False}
STACK = {"torch": "2.14.1", "diffusers": "0.42.1"}
ENCODINGS = {
    "PNG": EncodingProfile(format="PNG", png_mode="RGB", png_bit_depth=8),
    "JPEG": EncodingProfile(format="JPEG", jpeg_qtables=(tuple(range(1, 65)),), jpeg_subsampling=0),
}
REPORT = {
    "passed": True,
    "failures": [],
    "metrics": {"deterministic": True, "lpips": 0.0012, "psnr": 37.5},
    "thresholds": {"lpips_max": 0.05},
    "backbone": {"net": "alex"},
}


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    catalog = open_catalog(catalog_url)
    yield catalog  # type: ignore[misc]
    catalog.close()


def archive(
    catalog: Catalog,
    key: str,
    *,
    seed: int = 0,
    url: str = "s3://shop/hot",
    steps: int = 20,
    fmt: str = "PNG",
) -> None:
    """An archived asset with a record, written as a sweep writes it (the same queries)."""
    with catalog.begin() as session:
        source = queries.get_or_add_source(session, url)
        model = queries.add_model(session, name="rumba", sha256="ab" * 32, path="/m", pipeline_class="P")
        profile = ENCODINGS[fmt]
        encoding = queries.get_or_add_profile(session, profile.profile_id, fmt, profile.to_json())
        asset = queries.find_asset(session, source, key) or queries.add_asset(
            session, source, key=key, size=2000, etag='"e"', last_modified=WHEN
        )
        asset.sha256 = hashlib.sha256(key.encode()).hexdigest()
        queries.save_record(
            session,
            asset,
            model_id=model.id,
            encoding_profile_id=encoding.id,
            rendered_sha256=hashlib.sha256(f"{key}{seed}".encode()).hexdigest(),
            rendered_size=1900 + seed,
            gate_report=REPORT,
            software=STACK,
            pipeline_class="StableDiffusionPipeline",
            scheduler_class="DDIMScheduler",
            scheduler_config=SCHEDULER,
            prompt=f"a rumba sneaker, {key.rsplit('/', 1)[-1]}",
            negative_prompt="blurry" if seed == 7 else "",
            seed=seed,
            steps=steps,
            guidance_scale=1.0,
            width=64,
            height=64,
        )
        queries.set_state(session, asset, AssetState.ARCHIVED, seed=seed)


def set_state(catalog: Catalog, key: str, state: AssetState) -> None:
    with catalog.begin() as session:
        (asset,) = queries.assets_with_key(session, key)
        queries.set_state(session, asset, state)


COLOURS = ["red", "blue", "green", "pink", "black", "white", "gum", "yellow", "orange", "purple"]


def test_keys_hash_the_request_path_under_the_url_prefix() -> None:
    path = keys.request_path("/img", "shoes/red sole.png")
    assert path == "/img/shoes/red sole.png"
    key = keys.record_key(path)
    assert key == "r/" + hashlib.sha256(b"/img/shoes/red sole.png").hexdigest() and len(key) == 66
    assert len(keys.record_key("/" + "x" * 5000)) == 66  # any path fits any store's key limit
    with pytest.raises(ConfigError, match="must be a URL path"):
        keys.url_prefix("img/")


def test_record_values_are_canonical_compact_json_that_round_trips() -> None:
    record = EdgeRecord("a shoe, é", "", 3, "1" * 64, "2" * 64, "3" * 64, "4" * 64, 1900, 1714979289)
    value = record.encode()
    assert value.startswith(b'{"e":"222') and b" " not in value.replace(b"a shoe, ", b"")
    assert "é".encode() in value and b'"n"' not in value  # UTF-8 as is; an empty negative prompt is left out
    assert EdgeRecord.decode(value) == record


def test_too_few_records_get_no_dictionary_and_the_export_says_so(catalog: Catalog) -> None:
    for colour in COLOURS[: MIN_SAMPLES - 1]:
        archive(catalog, f"shoes/{colour}.png")
    result = export(catalog, Scope())
    assert result.dictionary is None and "too few" in result.note
    assert not [k for k in result.entries if k.startswith(keys.DICTIONARY)]
    dictionary, note = train([b'{"p":"x"}'] * 50)
    assert dictionary is not None and note.startswith(f"dictionary {dictionary.dict_id}")
    assert train([b'{"p":"x"}'] * 50)[0] == dictionary  # the same values, the same dictionary


def test_a_bundle_answers_lookups_with_everything_to_rehydrate(catalog: Catalog, tmp_path: Path) -> None:
    from archiver.engine.rehydrate import RenderSpec

    for i, colour in enumerate(COLOURS):
        archive(catalog, f"shoes/{colour}.png", seed=i, fmt="JPEG" if i % 2 else "PNG")
    set_state(catalog, "shoes/gum.png", AssetState.RESTORED)  # not archived: not exported
    result = export(catalog, Scope(url_prefix="/img/", key_prefix="shoes/"))
    assert result.records == 9 and result.dictionary is not None and result.tombstones == []
    (path,) = write(result, tmp_path / "out", "bundle")
    bundle = open_bundle(path)
    try:
        found = bundle.lookup("/img/shoes/pink.png")
        with catalog.begin() as session:
            (asset,) = queries.assets_with_key(session, "shoes/pink.png")
            assert asset.record is not None
            assert found.spec == RenderSpec.from_record(asset.record)
            assert found.encoding.format == asset.record.encoding_profile.format == "JPEG"
            assert (found.sha256, found.size) == (asset.record.rendered_sha256, asset.record.rendered_size)
            assert found.model_sha256 == asset.record.model.sha256
        assert found.content_type == "image/jpeg" and found.last_modified == WHEN.replace(microsecond=0)
        assert bundle.lookup("/img/shoes/yellow.png").spec.negative_prompt == "blurry"
        for missing in ("/img/shoes/gum.png", "/shoes/pink.png", "/img/shoes/nope.png"):
            with pytest.raises(NotFound, match="not in the bundle"):
                bundle.lookup(missing)
        assert bundle.models() == {"ab" * 32: {"name": "rumba", "pipeline_class": "P", "sha256": "ab" * 32}}
    finally:
        bundle.close()


def test_a_delta_applied_to_a_bundle_equals_a_fresh_full_export(catalog: Catalog, tmp_path: Path) -> None:
    for i, colour in enumerate(COLOURS):
        archive(catalog, f"shoes/{colour}.png", seed=i)
    archive(catalog, "bags/tote.png")  # outside the exported prefix throughout
    first = export(catalog, Scope(key_prefix="shoes/"))
    (bundle,) = write(first, tmp_path / "full", "bundle")

    set_state(catalog, "shoes/red.png", AssetState.RESTORED)  # gone from the edge: a tombstone
    archive(catalog, "shoes/blue.png", seed=5)  # re-verified with another seed: a new value
    archive(catalog, "shoes/green.png", seed=2, steps=30)  # rendered another way: a new render profile
    for colour in COLOURS:  # new archived assets, enough for the delta's own dictionary
        archive(catalog, f"shoes/new/{colour}.png", seed=1)
    set_state(catalog, "shoes/new/gum.png", AssetState.RESTORED)
    archive(catalog, "bags/tote.png", seed=3)  # changed, but not in scope
    delta = export(catalog, Scope(key_prefix="shoes/"), since=first.cursor)
    assert delta.records == 2 + 9 and delta.dictionary is not None
    assert delta.tombstones == sorted(keys.record_key(f"/shoes/{k}.png") for k in ("red", "new/gum"))
    (delta_file,) = write(delta, tmp_path / "delta", "bundle")

    applied = apply_delta(delta_file, bundle)
    assert applied.changed and applied.deleted == 1 and applied.cursor == delta.cursor
    assert applied.collected == 0  # the first render profile is still named by the unchanged records
    (fresh,) = write(export(catalog, Scope(key_prefix="shoes/")), tmp_path / "fresh", "bundle")
    merged, full = open_bundle(bundle), open_bundle(fresh)
    try:
        assert merged.logical() == full.logical()
        assert merged.cursor == full.cursor == delta.cursor
        assert len([k for k in full.logical() if k.startswith(keys.RENDER_PROFILE)]) == 2
    finally:
        merged.close(), full.close()

    before = bundle.read_bytes()
    again = apply_delta(delta_file, bundle)
    assert not again.changed and bundle.read_bytes() == before  # applying twice changes nothing


def test_unused_profiles_and_dictionaries_leave_the_bundle(catalog: Catalog, tmp_path: Path) -> None:
    for colour in COLOURS:
        archive(catalog, f"shoes/{colour}.png")
    first = export(catalog, Scope())
    (bundle,) = write(first, tmp_path / "full", "bundle")
    for colour in COLOURS:
        archive(catalog, f"shoes/{colour}.png", steps=40)  # every record now renders another way
    delta = export(catalog, Scope(), since=first.cursor)
    assert delta.dictionary is not None and first.dictionary is not None
    applied = apply_delta(write(delta, tmp_path / "delta", "bundle")[0], bundle)
    assert applied.collected == 2  # the old render profile and the old dictionary
    (fresh,) = write(export(catalog, Scope()), tmp_path / "fresh", "bundle")
    merged, full = open_bundle(bundle), open_bundle(fresh)
    try:
        assert merged.logical() == full.logical()
        dictionaries = [key for key, _ in merged.entries() if key.startswith(keys.DICTIONARY)]
        assert (
            dictionaries
            == [keys.dictionary_key(delta.dictionary.dict_id)]
            != [keys.dictionary_key(first.dictionary.dict_id)]
        )
    finally:
        merged.close(), full.close()


def test_apply_refuses_a_gap_another_scope_or_a_full_export(catalog: Catalog, tmp_path: Path) -> None:
    for colour in COLOURS[:3]:
        archive(catalog, f"shoes/{colour}.png")
    first = export(catalog, Scope())
    (bundle,) = write(first, tmp_path / "full", "bundle")
    archive(catalog, "shoes/new.png")
    middle = export(catalog, Scope()).cursor
    archive(catalog, "shoes/newer.png")
    (late,) = write(export(catalog, Scope(), since=middle), tmp_path / "late", "bundle")
    with pytest.raises(ConfigError, match=f"export a delta with --since {first.cursor}"):
        apply_delta(late, bundle)
    (other,) = write(export(catalog, Scope(url_prefix="/img/"), since=first.cursor), tmp_path / "o", "bundle")
    with pytest.raises(ConfigError, match="url_prefix"):
        apply_delta(other, bundle)
    with pytest.raises(ConfigError, match="is a full export"):
        apply_delta(bundle, bundle)
    with pytest.raises(ConfigError, match="is not a cursor"):
        export(catalog, Scope(), since=10**9)
    (tmp_path / "junk").write_bytes(b"not sqlite")
    with pytest.raises(ConfigError, match="not an archiver edge bundle"):
        open_bundle(tmp_path / "junk")
    with pytest.raises(NotFound, match="no bundle"):
        open_bundle(tmp_path / "missing.bundle")


def test_one_key_archived_in_two_sources_needs_a_source(catalog: Catalog) -> None:
    archive(catalog, "shoes/red.png", url="s3://shop/a")
    archive(catalog, "shoes/red.png", url="s3://shop/b")
    with pytest.raises(ConfigError, match="several sources"):
        export(catalog, Scope())
    assert export(catalog, Scope(source="s3://shop/b")).records == 1


def test_cloudflare_bulk_files_keep_to_the_limits_and_fastly_ndjson(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, colour in enumerate(COLOURS):
        archive(catalog, f"shoes/{colour}.png", seed=i)
    first = export(catalog, Scope())
    set_state(catalog, "shoes/red.png", AssetState.RESTORED)
    monkeypatch.setattr(edge_export, "CLOUDFLARE_PAIRS", 4)
    files = write(first, tmp_path / "cf", "cloudflare")
    puts = [json.loads(f.read_text()) for f in files]
    assert [len(p) for p in puts[:-1]] == [4] * (len(puts) - 1) and sum(map(len, puts)) == len(
        first.entries
    ) + 1
    pairs = {item["key"]: base64.b64decode(item["value"]) for batch in puts for item in batch}
    assert all(item["base64"] is True and len(item["key"].encode()) <= 512 for b in puts for item in b)
    assert pairs == dict(first.ordered())
    assert puts[0][0]["key"].startswith(keys.DICTIONARY) and puts[-1][-1]["key"] == keys.META

    delta = export(catalog, Scope(), since=first.cursor)
    (_, delete) = write(delta, tmp_path / "cf", "cloudflare")
    assert json.loads(delete.read_text()) == [keys.record_key("/shoes/red.png")]
    assert delete.name == f"cloudflare-delta-{first.cursor}-{delta.cursor}-delete-0001.json"

    (ndjson,) = write(first, tmp_path / "fastly", "fastly")
    lines = [json.loads(line) for line in ndjson.read_text().splitlines()]
    assert {line["key"]: base64.b64decode(line["value"]) for line in lines} == dict(first.ordered())
    _, deletes = write(delta, tmp_path / "fastly", "fastly")
    assert deletes.read_text() == keys.record_key("/shoes/red.png") + "\n"


def test_cli_exports_and_applies(
    archiver_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    archiver_env.mkdir(parents=True)
    catalog = open_catalog(f"sqlite:///{archiver_env / 'catalog.db'}")
    for colour in COLOURS:
        archive(catalog, f"shoes/{colour}.png")
    code, out, err = cli(capsys, "edge", "export", "shoes/", "--out", str(tmp_path / "e"), "--json")
    assert code == 0, err
    full = json.loads(out)
    assert full["records"] == 10 and full["format"] == "bundle" and full["dictionary"]
    set_state(catalog, "shoes/red.png", AssetState.RESTORED)
    catalog.close()
    code, out, err = cli(
        capsys, "edge", "export", "shoes/", "--out", str(tmp_path / "e"), "--since", str(full["cursor"])
    )
    assert code == 0, err
    assert "0 records, 1 tombstones" in out and "no dictionary" in out
    (delta,) = [line.strip() for line in out.splitlines() if line.strip().endswith(".bundle")]
    code, out, err = cli(capsys, "edge", "apply", delta, "--bundle", full["files"][0])
    assert code == 0 and "1 records forgotten" in out, err
    code, out, _ = cli(capsys, "edge", "apply", delta, "--bundle", full["files"][0])
    assert code == 0 and "nothing changed" in out
    code, _, err = cli(capsys, "edge", "export", "--out", str(tmp_path / "e"), "--url-prefix", "img")
    assert code == 3 and "must be a URL path" in err


# --- a real sweep: the bundle and the model directory alone rehydrate an asset ---


@pytest.fixture(scope="module")
def swept_bundle(tmp_path_factory: pytest.TempPathFactory, memorized: dict[str, object]) -> Path:
    """The memorized catalogue swept into a home, exported as a bundle, then the home deleted."""
    import os

    from archiver.cli import main

    root = tmp_path_factory.mktemp("edge")
    hot = root / "hot"
    for key in MEMORIZED:
        (hot / key).parent.mkdir(parents=True, exist_ok=True)
        (hot / key).write_bytes(memorized["files"][key])  # type: ignore[index]
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("ARCHIVER_")]:
            patch.delenv(name)
        for name, value in {
            "ARCHIVER_SEED_SEARCH_MAX": "2",
            "ARCHIVER_SEED_SEARCH_BATCH": "1",
            "ARCHIVER_HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "xdg"),
        }.items():
            patch.setenv(name, value)
        assert main(["model", "add", str(memorized["model"]), "--name", "tiny"]) == 0
        assert main(["sweep", str(hot), "--model", "tiny"]) == 0
        assert main(["edge", "export", "--out", str(root / "edge")]) == 0
    (bundle,) = (root / "edge").glob("*.bundle")
    shutil.rmtree(root / "home")  # no catalog, no vault: the bundle and the model directory only
    return bundle


def test_a_bundle_and_the_model_directory_alone_rehydrate_an_asset(
    swept_bundle: Path, memorized: dict[str, object]
) -> None:
    from archiver.engine.rehydrate import render_and_encode
    from archiver.gate.sketch import DEFAULT_MIN_PSNR, SIZE, sketch
    from archiver.read.reader import judge_render

    model_dir = Path(memorized["model"])  # type: ignore[arg-type]
    bundle = open_bundle(swept_bundle, model_dir)
    try:
        loaded = bundle.load_model(model_dir)
        for key in sorted(MEMORIZED)[:2]:
            found = bundle.lookup("/" + key)
            pixels, data = render_and_encode(loaded, found.spec, found.encoding)
            assert hashlib.sha256(data).hexdigest() == found.sha256 and len(data) == found.size
            # The record's sketch travels with it: an edge on other hardware verifies its render.
            assert found.render_sketch == sketch(pixels) and len(found.render_sketch) == SIZE
            assert (
                judge_render(data, pixels, found.sha256, found.render_sketch, DEFAULT_MIN_PSNR).mode
                == "exact"
            )
    finally:
        bundle.close()


def test_a_bundle_refuses_a_model_it_was_not_exported_for(swept_bundle: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError) as refused:
        open_bundle(swept_bundle, tiny_model_dir)
    message = str(refused.value)
    assert "\n" not in message and "was exported for model tiny" in message and str(tiny_model_dir) in message


def test_source_model_rows_are_not_in_a_bundle_only_identities(swept_bundle: Path) -> None:
    bundle = open_bundle(swept_bundle)
    try:
        kinds = {key[:2] for key, _ in bundle.entries()}
        assert kinds == {keys.RECORD, keys.RENDER_PROFILE, keys.ENCODING_PROFILE, keys.MODEL, "me"}
        assert sum(len(v) for _, v in bundle.entries()) < 20_000  # identities and records, never weights
    finally:
        bundle.close()
