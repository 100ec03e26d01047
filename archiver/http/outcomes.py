"""The read path's outcomes as HTTP answers, one table for every route set (the origin, the review
page), installed as Starlette exception handlers: a route lets `NotFound` or a read-policy outcome
(`Remote`, `StillRendering`, `Busy`, `VaultFailed`, `NoRender`) propagate, and the answer is the
same wherever it came from. Failures are never cached (`Cache-Control: no-store`); an outcome that
says when to try again carries `Retry-After`. Decides nothing about what is served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from archiver.errors import NotFound
from archiver.read.policy import Busy, NoRender, Remote, StillRendering, Unavailable, VaultFailed

NO_STORE = {"cache-control": "no-store"}

STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    NoRender: 409,  # nothing to render (no record): the review page shows why in the image's place
    Remote: 503,  # only in the archive tier; a restore was requested: Retry-After
    StillRendering: 503,  # the render goes on and fills the cache: Retry-After
    Busy: 503,  # the render queue is full: refused at once, Retry-After
    VaultFailed: 502,  # the vault copy is damaged or unreachable
    Unavailable: 503,
}
QUIET = (Busy, StillRendering)  # they pass by themselves; the access log has them

Handler = Callable[[Request, Exception], Awaitable[Response]]


def failure(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A failure as plain text, one line, never cached."""
    return PlainTextResponse(message + "\n", status, headers={**NO_STORE, **(headers or {})})


def status_of(exc: Exception, table: Mapping[type[Exception], int] = STATUS) -> int:
    """The status of `exc`: its own class's, else its nearest base's in `table`."""
    return next(table[cls] for cls in type(exc).__mro__ if cls in table)


def exception_handlers(
    log: logging.Logger, extra: Mapping[type[Exception], int] | None = None
) -> dict[type[Exception], Handler]:
    """Starlette's `exception_handlers` for STATUS and a route set's own `extra` outcomes; a server
    failure that does not pass by itself is logged on `log`, with the request."""
    table = {**STATUS, **(extra or {})}

    async def answer(request: Request, exc: Exception) -> Response:
        status = status_of(exc, table)
        retry_after = exc.retry_after if isinstance(exc, Unavailable) else None
        headers = {} if retry_after is None else {"retry-after": str(math.ceil(retry_after))}
        if status >= 500 and not isinstance(exc, QUIET):
            log.warning("%s %s: %d: %s", request.method, request.url.path, status, exc)
        return failure(status, str(exc), headers)

    return dict.fromkeys(table, answer)
