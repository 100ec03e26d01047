"""What the origin tells its operators: Prometheus metrics and one access-log line per request.

Owns `Metrics` (a registry of its own, so that several origins can live in one process, as in the
tests; it is also the read policy's `ReadObserver`) and `observe`, the ASGI middleware that counts
every response by status and writes its access-log line. It must not change a response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from archiver.read.policy import Layer
from archiver.read.reader import Verified

access_log = logging.getLogger("archiver.origin.access")

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PSNR_BUCKETS = (60, 62, 64, 66, 68, 70, 75, 80, 90)  # from the default tolerance (gate/sketch.py) up


class Metrics:
    """The origin's counters. `hit`, `rendered` and `verified_as` are called by the read policy."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "archiver_origin_requests",
            "HTTP requests answered, by status",
            ["status"],
            registry=self.registry,
        )
        self.renders = Counter(
            "archiver_origin_renders",
            "renders attempted, by result (ok: bytes matched the record)",
            ["result"],
            registry=self.registry,
        )
        self.render_seconds = Histogram(
            "archiver_origin_render_seconds",
            "seconds per render, failed ones included",
            buckets=RENDER_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "archiver_origin_cache_hits",
            "reads answered by a cache of verified bytes, by layer",
            ["layer"],
            registry=self.registry,
        )
        self.verified = Counter(
            "archiver_origin_reads_verified",
            "reads answered from disk or a render, by how their bytes were verified (exact: the "
            "record's bytes; within-tolerance: this machine's render, its sketch within the tolerance; "
            "original: the vault original)",
            ["mode"],
            registry=self.registry,
        )
        self.sketch_psnr = Histogram(
            "archiver_origin_within_tolerance_psnr_db",
            "estimated PSNR (dB) of renders served within tolerance, against the accepted render",
            buckets=PSNR_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "archiver_origin_render_queue_depth",
            "renders running or waiting for a worker",
            registry=self.registry,
        )
        for result in ("ok", "failed"):
            self.renders.labels(result)
        for layer in ("memory", "disk"):
            self.cache_hits.labels(layer)
        for mode in ("exact", "within-tolerance", "original"):
            self.verified.labels(mode)

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)

    def hit(self, layer: Layer) -> None:
        self.cache_hits.labels(layer).inc()

    def rendered(self, seconds: float, ok: bool) -> None:
        self.renders.labels("ok" if ok else "failed").inc()
        self.render_seconds.observe(seconds)

    def verified_as(self, how: Verified) -> None:
        self.verified.labels(how.mode).inc()
        if how.psnr is not None:
            self.sketch_psnr.observe(how.psnr)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def observe(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """`app`, counting each HTTP response by status and logging one line per request:
    `CLIENT "METHOD PATH" STATUS BYTES MILLISECONDS`."""

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            metrics.requests.labels(str(seen["status"])).inc()
            client = scope.get("client")
            path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
            access_log.info(
                '%s "%s %s" %d %d %.1fms',
                client[0] if client else "-",
                scope["method"],
                path,
                seen["status"],
                seen["bytes"],
                (time.perf_counter() - started) * 1000,
            )

    return observed
