"""`archiver serve`: the archive as an HTTP origin (archiver/http/origin/), under uvicorn.

Owns the command line: the options over the settings, logging, and calling the origin's own
wiring (archiver/http/origin/server.py: build, bind, run). Nothing here answers a request.

The edge mode (`--bundle FILE`: serve from an exported bundle, with no catalog) comes with the
edge exports; it replaces `CatalogAssets` (archiver/http/origin/assets.py) in `build` and nothing else.
"""

from __future__ import annotations

import logging

import click

from archiver.cli.app import App, canonical_source, cli, pass_app

log = logging.getLogger("archiver.origin")


@cli.command()
@click.option("--host", help="Address to listen on [ARCHIVER_SERVE_HOST; 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on; 0 picks a free one [ARCHIVER_SERVE_PORT; 8080].")
@click.option(
    "--source",
    callback=canonical_source,
    help="Serve only this source's keys. Otherwise a key several sources hold serves the oldest source's "
    "asset (x-archiver-source names it, x-archiver-other-sources the others).",
)
@pass_app
def serve(app: App, host: str | None, port: int | None, source: str | None) -> None:
    """Serve archived images over HTTP at /KEY, regenerated and verified (an origin for a CDN).

    Responses carry a strong ETag (the bytes' SHA-256) and are immutable; conditional and range
    requests are answered, HEAD without rendering. A key that cannot be regenerated is served from
    the vault original if it is readable, else answered 503 with Retry-After while a restore is
    requested. A key several sources hold serves the oldest source's asset, as every command names
    it (--source serves one source). /healthz, and Prometheus metrics at /metrics. SIGTERM or
    Ctrl-C stops it.
    """
    from archiver.http.origin.server import build, run
    from archiver.http.server import bind, url_of

    app.log_to_stderr("archiver serve", {"archiver": logging.INFO})  # renders, fallbacks, the access log
    settings = app.settings
    origin = build(settings, app.catalog, app.vault, source=source)
    try:
        sock = bind(host or settings.serve_host, settings.serve_port if port is None else port)
        log.info(
            "listening on %s (%d archived keys%s; cache %s; %d render workers, %d renders may wait)",
            url_of(sock),
            len(origin.assets),
            f" of {source}" if source else "",
            settings.cache_dir,
            settings.render_workers,
            settings.serve_render_queue,
        )
        with sock:
            run(origin, sock)
    finally:
        origin.close()
    log.info("stopped")
