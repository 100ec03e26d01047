"""The pieces of HTTP (RFC 9110) the origin needs, as plain functions over header values.

Owns: HTTP dates, entity-tag comparison, the order in which preconditions are evaluated (section
13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since), and single byte ranges
with If-Range (section 14). No I/O, no Starlette: the routes in app.py call these with the values
of one representation (its strong ETag, its Last-Modified, its length).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from enum import Enum


def http_date(when: datetime) -> str:
    """IMF-fixdate, as Last-Modified carries it: `Tue, 02 Mar 2021 05:06:07 GMT`."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def parse_http_date(value: str | None) -> datetime | None:
    """The date in a header, or None when it is absent or not a valid HTTP-date (then it is ignored)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _seconds(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(microsecond=0)  # HTTP dates have one-second resolution


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(header: str, etag: str) -> bool:
    """If-Match: `*`, or a listed tag equal to `etag` by the strong comparison (no W/ tags)."""
    tags = _tags(header)
    return "*" in tags or etag in tags


def weak_match(header: str, etag: str) -> bool:
    """If-None-Match: `*`, or a listed tag equal to `etag` ignoring any W/ prefix."""
    tags = _tags(header)
    return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}


class Precondition(Enum):
    PROCEED = 200
    NOT_MODIFIED = 304
    FAILED = 412


def evaluate(
    method: str,
    *,
    etag: str,
    last_modified: datetime,
    if_match: str | None,
    if_unmodified_since: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> Precondition:
    """RFC 9110 section 13.2.2 for a GET or HEAD of a representation that exists.

    If-None-Match wins over If-Modified-Since (which is then not looked at), as If-Match wins over
    If-Unmodified-Since. `etag` is quoted, as it appears in the ETag header.
    """
    if if_match is not None:
        if not strong_match(if_match, etag):
            return Precondition.FAILED
    elif (since := parse_http_date(if_unmodified_since)) is not None and _seconds(last_modified) > since:
        return Precondition.FAILED
    if if_none_match is not None:
        if weak_match(if_none_match, etag):
            return Precondition.NOT_MODIFIED if method in ("GET", "HEAD") else Precondition.FAILED
    elif (
        method in ("GET", "HEAD")
        and (since := parse_http_date(if_modified_since)) is not None
        and _seconds(last_modified) <= since
    ):
        return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


@dataclass(frozen=True)
class ByteRange:
    """Bytes first..last (inclusive) of a representation of `length` bytes."""

    first: int
    last: int
    length: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.length}"


class RangeNotSatisfiable(Exception):
    """No byte of the representation is in the range asked for: answer 416."""


def byte_range(
    header: str | None,
    length: int,
    *,
    if_range: str | None = None,
    etag: str = "",
    last_modified: datetime | None = None,
) -> ByteRange | None:
    """The single range a Range header asks for, or None (answer 200); RangeNotSatisfiable (416).

    None also for what this origin chooses to ignore, as RFC 9110 section 14.2 allows: a unit other
    than bytes, a syntactically invalid header, several ranges (the full representation is as
    good an answer and cheaper to build than multipart/byteranges), and an If-Range that does not
    match the current representation (its ETag, compared strongly, or exactly its Last-Modified).
    """
    if not header:
        return None
    if if_range is not None:
        if if_range.startswith(('"', "W/")):
            if if_range != etag:
                return None
        else:
            date = parse_http_date(if_range)
            if date is None or last_modified is None or _seconds(last_modified) != date:
                return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in specs:
        return None
    first_text, dash, last_text = specs.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text or last_text):
        return None
    if not all(t.isdigit() for t in (first_text, last_text) if t):
        return None
    if not first_text:  # a suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or length == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(max(length - suffix, 0), length - 1, length)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid, not unsatisfiable
    if first >= length:
        raise RangeNotSatisfiable(header)
    last = min(int(last_text), length - 1) if last_text else length - 1
    return ByteRange(first, last, length)
