"""What every HTTP front end (the origin, the review page) runs on: the listening socket (`bind`,
`url_of`), uvicorn with our logging and a clean stop on SIGTERM/SIGINT (`config`, `serve_app`), and
the read policy an HTTP front end reads through (`http_read_policy`). Answers no request itself.
"""

from __future__ import annotations

import logging
import signal
import socket

import uvicorn
from starlette.types import ASGIApp

from archiver.cache import DiskCache
from archiver.catalog.database import Catalog
from archiver.errors import ConfigError
from archiver.read.policy import ReadObserver, ReadPolicy
from archiver.read.reader import AssetReader
from archiver.settings import Settings

GRACEFUL_SECONDS = 30  # a stop waits this long for the requests in flight (a render, at worst)


def http_read_policy(
    settings: Settings,
    catalog: Catalog,
    reader: AssetReader,
    *,
    requested_by: str,
    observer: ReadObserver | None = None,
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
