"""Loading the models a read path renders with: one loader and preloader for the mount, the HTTP
origin and the review page.

A front end starts a `ModelPreload` of the models its records use (at most PRELOAD_MODELS), then
starts listening at once: the models load in a background thread, and `ready` says when they have
(the origin's /healthz answers "not ready" until then). `load` is the `AssetReader(load=...)` of
every front end: a render that comes before its model is ready waits for that load instead of
loading it a second time, and any render waits until the preload is done, because the engine's
imports (diffusers' lazy modules) are not safe to run in two threads at once. A model that cannot
be loaded is logged and left to the read policy (its renders fail and fall back to the vault).
Never renders and never reads the vault.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archiver.catalog.models import Model
    from archiver.engine.registry import LoadedModel

PRELOAD_MODELS = 4  # models loaded as a front end starts; each holds its pipeline in memory

log = logging.getLogger(__name__)


def load_for_reads(model: Model, device: str) -> LoadedModel:
    """`model` loaded on `device`, verified against its registered hash, renders deterministic
    (imported here, not at the top: torch loads only when a model does)."""
    from archiver.engine.registry import load_to_render

    return load_to_render(model, device)


class ModelPreload:
    """`models` (the first PRELOAD_MODELS) loaded on `device` in a background thread once `start`ed.

    Without `start`, or for a model it does not hold, `load` loads on demand: a front end that
    preloads nothing (the review page) shares the same loader."""

    def __init__(self, models: list[Model], device: str) -> None:
        self.device = device
        self._models = models[:PRELOAD_MODELS]
        self._futures: dict[int, Future[LoadedModel]] = {m.id: Future() for m in self._models}
        self._thread = threading.Thread(target=self._run, name="model-preload", daemon=True)
        self._started = False
        self.done = threading.Event()
        if not self._models:
            self.done.set()

    @property
    def ready(self) -> bool:
        """Whether every preloaded model has loaded (or failed to, and said why)."""
        return self.done.is_set()

    def start(self) -> None:
        if self._models and not self._started:
            self._started = True
            self._thread.start()

    def _run(self) -> None:
        try:
            for model in self._models:
                started = time.monotonic()
                future = self._futures[model.id]
                try:
                    future.set_result(load_for_reads(model, self.device))
                except Exception as exc:  # the first render loads it again and says why it cannot
                    log.warning(
                        "model %s cannot be loaded: %s; its assets fall back to the vault", model.name, exc
                    )
                    future.set_exception(exc)
                    continue
                log.info(
                    "model %s loaded on %s in %.1f s", model.name, self.device, time.monotonic() - started
                )
            log.info("ready: %d models loaded", sum(1 for f in self._futures.values() if not f.exception()))
        finally:
            self.done.set()

    def wait(self) -> None:
        """Until the preload is done, once started (`AssetReader(wait_for_models=...)`)."""
        if self._started:
            self.done.wait()

    def load(self, model: Model, device: str) -> LoadedModel:
        """For `AssetReader(load=...)`: the preloaded model, once the preload is done."""
        if self._started:
            self.wait()
            future = self._futures.get(model.id)
            if future is not None and device == self.device:
                try:
                    return future.result()
                except Exception:
                    pass  # loaded again below: its error is the one to report
        return load_for_reads(model, device)
