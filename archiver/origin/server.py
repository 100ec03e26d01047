"""Putting an origin together from the settings, and running it under uvicorn.

Owns the wiring (`build`: reader with the models loading in the background, disk cache, read policy with a
bounded render queue, the catalog-backed `Assets`, metrics, the app), the listening socket
(`bind`), and the run with a clean stop on SIGTERM/SIGINT (`run`). `archiver serve` calls these
three; the tests call `build` and run the app in a thread. It must not answer requests itself.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from archiver.cache import DiskCache
from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.errors import ConfigError
from archiver.modelcheck import check_first_use
from archiver.origin.app import create_app
from archiver.origin.assets import CatalogAssets
from archiver.origin.metrics import Metrics
from archiver.read.models import ModelPreload
from archiver.reader import AssetReader
from archiver.readpolicy import ReadPolicy
from archiver.settings import Settings
from archiver.storage import Vault

log = logging.getLogger("archiver.origin")

GRACEFUL_SECONDS = 30  # a stop waits this long for the requests in flight (a render, at worst)


@dataclass
class Origin:
    app: ASGIApp
    assets: CatalogAssets
    metrics: Metrics

    def close(self) -> None:
        self.assets.close()


def http_read_policy(
    settings: Settings,
    catalog: Catalog,
    reader: AssetReader,
    *,
    requested_by: str,
    observer: Metrics | None = None,
    renders_only: bool = False,
) -> ReadPolicy:
    """The read policy an HTTP front end runs (the origin, the review page): the disk cache shared
    with the mount, a bounded render queue (a full one answers 503 at once), the serve timeouts."""
    return ReadPolicy(
        catalog,
        reader,
        DiskCache(settings.cache_dir, settings.cache_size, settings.cache_min_free),
        workers=settings.render_workers,
        max_waiting=settings.serve_render_queue,
        read_timeout=settings.serve_render_timeout,
        retry_render_after=settings.mount_render_retry_seconds,
        memory_bytes=settings.memory_cache_size,
        observer=observer,
        requested_by=requested_by,
        renders_only=renders_only,
    )


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


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or ConfigError saying what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every response waits ~40 ms for a delayed ACK (Nagle's algorithm).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port/--host "
            "(ARCHIVER_SERVE_PORT, ARCHIVER_SERVE_HOST)"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def config(app: ASGIApp) -> uvicorn.Config:
    """uvicorn's settings for an origin: our logging and access log, not uvicorn's."""
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )


def run(origin: Origin, sock: socket.socket) -> None:
    """Serve on `sock` until SIGTERM or SIGINT, then stop cleanly: uvicorn stops accepting,
    finishes the requests in flight (for GRACEFUL_SECONDS at most) and runs the app's shutdown;
    this returns normally."""
    serve_app(origin.app, sock)


def serve_app(app: ASGIApp, sock: socket.socket) -> None:
    """`run` for any of archiver's ASGI apps (the origin, the review page)."""
    # uvicorn raises the signal that stopped it again, for the handler it found, once it has shut
    # down; with these handlers that ends nothing and `archiver serve` exits 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config(app)).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
