"""The review page's routes and JSON API, as a Starlette app over a `ReviewService`.

    GET  /                          the page
    GET  /api/items[?review=&reason=&sort=worst|key]   {"items": [...]}
    GET  /api/items/ID              one item, with where its original is
    POST /api/items/ID/decision     {"decision": "approve"|"reject", "comment": "..."} -> the item
    GET  /img/ID/original|render|diff|colour           image bytes

Outcomes answer by `archiver.http.outcomes` (the origin's table): an unknown id 404; a render that
is busy or slow 503 with Retry-After; a damaged vault copy 502; no render 409. Its own: a bad
decision or body 400; a decision that may not be taken (already released, no record, a sweep holds
the asset) or an original that cannot be shown now 409 with the reason (the page shows it in the
image's place). Renders are never shown unless verified
(`x-archiver-verified` says how); originals say where they came from (`x-archiver-original`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from archiver.errors import ReviewError
from archiver.http.outcomes import NO_STORE, exception_handlers, failure
from archiver.http.review import images, items, page
from archiver.http.review.service import NoOriginal, ReviewService

log = logging.getLogger("archiver.review")
IMAGE_KINDS = ("original", "render", "diff", "colour")


async def _call(call: Callable[[], Any]) -> Any:
    """Run a blocking service call on a thread; its outcomes answer by `archiver.http.outcomes`."""
    return await run_in_threadpool(call)


def _asset_id(request: Request) -> int | None:
    text = request.path_params["asset_id"]
    return int(text) if text.isdigit() and len(text) < 19 else None


def page_config(service: ReviewService, state: str | None) -> dict[str, Any]:
    return {
        "mode": "live",
        "state": state or "all",
        "gain": images.GAIN,
        "colour_max": service.thresholds.get("colour_max"),
    }


def create_app(
    service: ReviewService, *, state: str | None = None, title: str = "archiver review"
) -> ASGIApp:
    document = page.document(page_config(service, state), title)

    async def index(request: Request) -> Response:
        return HTMLResponse(document, headers=NO_STORE)

    async def list_items(request: Request) -> Response:
        q = request.query_params
        states = tuple(s for s in q.get("review", "").split(",") if s)
        unknown = [s for s in states if s not in items.REVIEW_STATES]
        if unknown or q.get("sort", "worst") not in ("worst", "key"):
            return failure(400, f"review must be among {', '.join(items.REVIEW_STATES)}; sort worst or key")
        found = await _call(service.items)
        chosen = items.select(found, states, q.get("reason") or None, q.get("sort", "worst"))
        return JSONResponse({"items": chosen}, headers=NO_STORE)

    async def one_item(request: Request) -> Response:
        asset_id = _asset_id(request)
        if asset_id is None:
            return failure(404, f"no asset {request.path_params['asset_id']!r}: ids are numbers")
        found = await _call(lambda: service.item(asset_id))
        return JSONResponse(found, headers=NO_STORE)

    async def decide(request: Request) -> Response:
        asset_id = _asset_id(request)
        if asset_id is None:
            return failure(404, f"no asset {request.path_params['asset_id']!r}: ids are numbers")
        try:
            body = json.loads(await request.body())
            decision, comment = body["decision"], body.get("comment")
            if not isinstance(decision, str) or not (comment is None or isinstance(comment, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            return failure(400, 'a decision is JSON: {"decision": "approve" or "reject", "comment": "..."}')
        if decision.strip().lower() not in ("approve", "reject", "approved", "rejected"):
            return failure(400, f"{decision!r} is not a decision: use approve or reject")
        found = await _call(lambda: service.decide(asset_id, decision, (comment or "").strip() or None))
        return JSONResponse(found, headers=NO_STORE)

    async def image(request: Request) -> Response:
        asset_id, kind = _asset_id(request), request.path_params["kind"]
        if asset_id is None or kind not in IMAGE_KINDS:
            return failure(404, f"no image {request.url.path}: img/ID/{'|'.join(IMAGE_KINDS)}")
        if kind == "original":
            data, where = await _call(lambda: service.original(asset_id))
            headers = NO_STORE | {"x-archiver-original": f"from the {where} copy"}
            return Response(data, headers=headers, media_type=images.media_type(data))
        if kind == "render":
            served = await _call(lambda: service.render(asset_id))
            headers = NO_STORE | {"x-archiver-verified": f"verified {served.verified.describe()}"}
            return Response(served.data, headers=headers, media_type=images.media_type(served.data))
        made = await _call(lambda: service.difference_map(asset_id, kind))
        return Response(made, headers=NO_STORE, media_type="image/png")

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/items", list_items),
            Route("/api/items/{asset_id}", one_item),
            Route("/api/items/{asset_id}/decision", decide, methods=["POST"]),
            Route("/img/{asset_id}/{kind}", image),
        ],
        # a decision that may not be taken, or an original that cannot be shown now: 409 with why
        exception_handlers=exception_handlers(log, {ReviewError: 409, NoOriginal: 409}),
    )
