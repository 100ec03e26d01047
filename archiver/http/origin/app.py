"""The origin's routes: `GET`/`HEAD /<key>`, `/healthz` and `/metrics`, as a Starlette app.

Owns turning a request into a response: the key checked like every object key (`safe_key`:
400), looked up (404; a key several sources hold answers the oldest source's asset, named in
`x-archiver-source`, with the others in `x-archiver-other-sources`), its preconditions and range
evaluated (semantics.py) against what the record promises, and only then its bytes read through
`Assets` (the read policy). Read-policy outcomes become statuses in `archiver.http.outcomes`, the
one table the review page uses too.
It must not serve bytes that did not come from `Assets.read`/`recall`, which serve only verified bytes.

Every asset response is immutable: the bytes under a strong ETag (their SHA-256) never change, so
`Cache-Control: public, max-age=31536000, immutable`. A HEAD, a 304, a 412 and a 416 are answered
from the record, without rendering. Failures are never cached (`Cache-Control: no-store`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from archiver.errors import UnsafeKey
from archiver.http.origin.assets import Assets, Entry, Representation
from archiver.http.origin.metrics import METRICS_CONTENT_TYPE, Metrics, observe
from archiver.http.origin.semantics import (
    ByteRange,
    Precondition,
    RangeNotSatisfiable,
    byte_range,
    evaluate,
    http_date,
)
from archiver.http.outcomes import exception_handlers, failure
from archiver.storage import safe_key

log = logging.getLogger("archiver.origin")

IMMUTABLE = "public, max-age=31536000, immutable"
# Requests waiting for a render hold a worker thread each (32 readers of one cold key: 32 threads);
# anyio's default of 40 would make a burst of them queue before they even reach the read policy.
READY_RETRY_SECONDS = 5  # /healthz's Retry-After while the models load
REQUEST_THREADS = 256
URL_SAFE = ":/@+;=?&~"  # a source URL stays readable in a header; anything else is percent-encoded

# The read policy's outcomes as statuses (archiver/read/policy.py says what each means).


def _provenance(entry: Entry) -> dict[str, str]:
    """Which source's asset answers (the oldest source's where several hold the key: one rule, see
    `queries.resolve_key`), and the others that hold it. Percent-encoded: headers are latin-1."""
    found = {"x-archiver-source": quote(entry.source, safe=URL_SAFE)}
    if entry.others:
        found["x-archiver-other-sources"] = ", ".join(quote(url, safe=URL_SAFE) for url in entry.others)
    return found


def _validators(rep: Representation) -> dict[str, str]:
    """The headers every answer about an asset carries: its validators, and both hashes by name.
    The served bytes' SHA-256 is the ETag and `Repr-Digest` (RFC 9530: of the whole representation,
    also on a 206); the original's is `X-Archiver-Original-SHA256` and its size
    `X-Archiver-Original-Size`: equal to the served ones only when the vault original is served."""
    headers = {
        "etag": rep.etag,
        "cache-control": IMMUTABLE,
        "last-modified": http_date(rep.last_modified),
        "accept-ranges": "bytes",
        "repr-digest": f"sha-256=:{base64.b64encode(bytes.fromhex(rep.sha256)).decode()}:",
    }
    if rep.original_sha256:
        headers["x-archiver-original-sha256"] = rep.original_sha256
        headers["x-archiver-original-size"] = str(rep.original_size)
    return headers


class AnyPathConvertor(PathConvertor):
    """Starlette's `path` is `.*`, which stops at a newline: a key with a control character would
    match no route and get a bare 404. This one matches every path, so `safe_key` answers it: 400."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPathConvertor())


def create_app(
    assets: Assets,
    metrics: Metrics,
    *,
    refresh_seconds: float = 30.0,
    ready: Callable[[], bool] = lambda: True,
) -> ASGIApp:
    """The origin over `assets`; its lifespan re-checks the key index every `refresh_seconds`.
    /healthz answers 503 until `ready()` (the models it renders with are loaded)."""

    async def asset(request: Request) -> Response:
        key: str = request.path_params["key"]
        try:
            safe_key(key)
        except UnsafeKey as exc:
            return failure(400, f"bad key: {exc}")
        entry = assets.lookup(key)  # NotFound: 404, as every outcome, by `outcomes`
        rep = assets.peek(entry)
        if rep is None:
            rep = await run_in_threadpool(assets.describe, entry)
        headers = _validators(rep) | _provenance(entry)
        h = request.headers
        decided = evaluate(
            request.method,
            etag=rep.etag,
            last_modified=rep.last_modified,
            if_match=h.get("if-match"),
            if_unmodified_since=h.get("if-unmodified-since"),
            if_none_match=h.get("if-none-match"),
            if_modified_since=h.get("if-modified-since"),
        )
        if decided is Precondition.NOT_MODIFIED:
            return Response(status_code=304, headers=headers)
        if decided is Precondition.FAILED:
            return failure(412, f"{key}: a precondition failed (its ETag is {rep.etag})")
        if request.method == "HEAD":  # from the record: no render
            return Response(
                headers=headers | {"content-length": str(rep.size), "x-archiver-served": rep.served_from},
                media_type=rep.content_type,
            )
        try:
            wanted = byte_range(
                h.get("range"),
                rep.size,
                if_range=h.get("if-range"),
                etag=rep.etag,
                last_modified=rep.last_modified,
            )
        except RangeNotSatisfiable:
            return failure(416, f"{key}: range not satisfiable", {"content-range": f"bytes */{rep.size}"})
        served = assets.recall(entry)  # the read policy's outcomes answer by `outcomes`
        if served is None:
            served = await run_in_threadpool(assets.read, entry)
        if served.verified.sha256 != rep.sha256:
            # Other bytes than the record's render: the vault original, or this machine's render
            # within tolerance. They go under their own ETag; a range asked of other bytes gets
            # them whole.
            rep = await run_in_threadpool(assets.describe, entry)
            headers, wanted = _validators(rep), None
        headers["x-archiver-served"] = served.served_from
        headers["x-archiver-verified"] = served.verified.describe()
        if isinstance(wanted, ByteRange):
            headers["content-range"] = wanted.content_range
            body = served.data[wanted.first : wanted.last + 1]
            return Response(body, 206, headers=headers, media_type=rep.content_type)
        return Response(served.data, headers=headers, media_type=rep.content_type)

    async def healthz(request: Request) -> Response:
        if not ready():  # a load balancer keeps traffic away; a request sent anyway waits for the models
            return PlainTextResponse(
                f"not ready: loading models ({len(assets)} keys)\n",
                503,
                headers={"cache-control": "no-store", "retry-after": str(READY_RETRY_SECONDS)},
            )
        return PlainTextResponse(f"ok: {len(assets)} keys\n", headers={"cache-control": "no-store"})

    async def metrics_page(request: Request) -> Response:
        return Response(
            metrics.exposition(), headers={"cache-control": "no-store"}, media_type=METRICS_CONTENT_TYPE
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        refresher = asyncio.create_task(_refresh_every(assets, max(refresh_seconds, 1.0)))
        try:
            yield
        finally:
            refresher.cancel()

    methods = ["GET", "HEAD"]
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=methods),
            Route("/metrics", metrics_page, methods=methods),
            Route("/{key:anypath}", asset, methods=methods),
        ],
        exception_handlers=exception_handlers(log),
        lifespan=lifespan,
    )
    return observe(app, metrics)


async def _refresh_every(assets: Assets, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            if await run_in_threadpool(assets.refresh):
                log.info("key index reloaded: the catalog changed")
        except Exception as exc:  # the catalog may be back next time; the last index goes on serving
            log.error("cannot re-check the catalog (%s): serving the last index", exc)
