"""The read path's model loading (archiver/read/models.py), shared by the mount, the origin and the
review page: the models records use are preloaded in the background, the origin listens at once and
says "not ready" until they are loaded, and a request meanwhile waits for that load instead of
loading the model a second time."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support import MEMORIZED, sweep_memorized
from support.servers import serving_app

from archiver.catalog import queries
from archiver.catalog.database import open_catalog
from archiver.catalog.models import Model
from archiver.engine.registry import LoadedModel
from archiver.http.origin.server import build
from archiver.read import models as read_models
from archiver.settings import load_settings
from archiver.storage import open_vault


def test_models_in_use_are_those_records_render_with(swept_url: str, memorized: dict[str, object]) -> None:
    catalog = open_catalog(swept_url)
    with catalog.begin() as session:
        # a second registered model that no record names: never preloaded
        queries.add_model(session, name="unused", sha256="ab" * 32, path="/nowhere", pipeline_class="P")
    with catalog.begin() as session:
        assert [m.name for m in queries.list_models(session)] == ["tiny", "unused"]
        assert [m.name for m in queries.models_in_use(session)] == ["tiny"]
    catalog.close()


class CountedLoads:
    """`load_for_reads` held until `release`, counting each real load."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.loads: list[str] = []
        self._real = read_models.load_for_reads

    def __call__(self, model: Model, device: str) -> LoadedModel:
        assert self.release.wait(60), "the test never released the load"
        self.loads.append(model.name)
        return self._real(model, device)


@contextmanager
def origin_over(home: Path) -> Iterator[str]:
    """The origin `archiver serve` builds (models preloaded by it, not handed in), on loopback."""
    settings = load_settings(home=home, device="cpu")
    catalog = open_catalog(settings.catalog_url)
    vault = open_vault(settings.vault_url, settings.vault_storage_class)
    origin = build(settings, catalog, vault)
    try:
        with serving_app(origin.app, "the origin") as url:
            yield url
    finally:
        origin.close()
        catalog.close()


def test_the_origin_listens_before_its_models_load_and_a_request_waits_for_that_load(
    env: Path,
    source: Path,
    memorized: dict[str, object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep_memorized(capsys, memorized, source)  # into the SQLite catalog of `env`
    swept_url = f"sqlite:///{env / 'catalog.db'}"
    held = CountedLoads()
    monkeypatch.setattr(read_models, "load_for_reads", held)
    key = sorted(MEMORIZED)[0]
    catalog = open_catalog(swept_url)
    with catalog.begin() as session:
        expected = next(a for a in queries.list_assets(session, key, None) if a.key == key).record
        assert expected is not None
        rendered_sha256 = expected.rendered_sha256
    catalog.close()
    with origin_over(env) as url:
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 503 and health.text.startswith("not ready: loading models")
        assert health.headers["retry-after"] == "5" and health.headers["cache-control"] == "no-store"
        answers: list[httpx.Response] = []
        reading = threading.Thread(target=lambda: answers.append(httpx.get(f"{url}/{key}", timeout=120)))
        reading.start()
        time.sleep(0.5)
        assert not answers, "a read was answered before the model it renders with was loaded"
        held.release.set()
        reading.join(120)
        assert answers and answers[0].status_code == 200, answers
        assert hashlib.sha256(answers[0].content).hexdigest() == rendered_sha256
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the origin never became ready"
            time.sleep(0.05)
        assert httpx.get(f"{url}/healthz", timeout=10).text.startswith("ok: ")
    assert held.loads == ["tiny"]  # loaded once, by the preload: the request waited for it
