"""Putting an origin together from the settings (`build`: the reader with its models loading in the
background, the read policy with a bounded render queue, the catalog-backed `Assets`, metrics, the
app) and running it (`run`, over `archiver.http.server`'s socket and uvicorn). `archiver serve` calls
these; the tests call `build` and run the app in a thread. It must not answer requests itself.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.http.origin.app import create_app
from archiver.http.origin.assets import CatalogAssets
from archiver.http.origin.metrics import Metrics
from archiver.http.server import http_read_policy, serve_app
from archiver.modelcheck import check_first_use
from archiver.read.models import ModelPreload
from archiver.read.reader import AssetReader
from archiver.settings import Settings
from archiver.storage import Vault

log = logging.getLogger("archiver.origin")


@dataclass
class Origin:
    app: ASGIApp
    assets: CatalogAssets
    metrics: Metrics

    def close(self) -> None:
        self.assets.close()


def build(
    settings: Settings,
    catalog: Catalog,
    vault: Vault,
    *,
    source: str | None = None,
    reader: AssetReader | None = None,
) -> Origin:
    """An origin over the catalog; the key index is loaded now, so a bad catalog or `source` fails
    here. Without `reader`, the models records use start loading in the background: the origin can
    listen at once, /healthz says "not ready" until they are loaded, and a request that needs a
    render meanwhile waits for them (within the render timeout)."""
    ready: Callable[[], bool] = lambda: True  # noqa: E731
    if reader is None:
        # an explicit cpu spares torch's import (seconds) until the preload imports it anyway
        device = "cpu" if settings.device == "cpu" else settings.resolved_device()
        with catalog.begin() as session:
            preload = ModelPreload(queries.models_in_use(session), device)
        reader = AssetReader(catalog, vault, device=device, load=preload.load, wait_for_models=preload.wait)
        check_first_use(catalog, reader)
        preload.start()
        ready = lambda: preload.ready  # noqa: E731
    metrics = Metrics()
    policy = http_read_policy(settings, catalog, reader, observer=metrics, requested_by="origin")
    assets = CatalogAssets(catalog, policy, source=source)
    try:
        assets.refresh()
    except BaseException:
        assets.close()
        raise
    metrics.track_queue(assets.queue_depth)
    app = create_app(assets, metrics, refresh_seconds=settings.mount_refresh_seconds, ready=ready)
    return Origin(app, assets, metrics)


def run(origin: Origin, sock: socket.socket) -> None:
    """Serve on `sock` until SIGTERM or SIGINT, then stop cleanly: uvicorn stops accepting,
    finishes the requests in flight (for GRACEFUL_SECONDS at most) and runs the app's shutdown;
    this returns normally."""
    serve_app(origin.app, sock)
