"""Coldness filters: which listed objects the sweep may consider archiving, and why not the others.

Owns the parsing of the user's filter settings (ages like ``90d``, sizes like ``5MiB``, an access
log export) and the one decision `Filters.reason_to_skip`. Pure: it reads no store and writes
nothing; the only I/O is reading the access-log CSV the user names.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path

from archiver.errors import ConfigError
from archiver.storage.base import ObjectInfo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# Months are not offered: their length varies, and "m" is taken by minutes as in most CLI tools.
_AGE_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "y": timedelta(days=365),
}
_AGE_FORMS = "a whole number with a unit m (minutes), h, d, w or y (365 days), e.g. 90d, 12h, 2w; or 0"
_AGE = re.compile(r"(\d+)([mhdwy])")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_FORMS = (
    "a number of bytes, optionally with a unit KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB "
    "(powers of 1024), e.g. 512, 10KB, 1.5MiB"
)
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", re.IGNORECASE)


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m`` (minutes), ``1y`` (365 days) or ``0``; ConfigError otherwise."""
    value = text.strip()
    if value == "0":
        return timedelta(0)
    match = _AGE.fullmatch(value)
    if match is None:
        raise ConfigError(f"age {text!r} is not understood: use {_AGE_FORMS}")
    try:
        return int(match[1]) * _AGE_UNITS[match[2]]
    except OverflowError:
        raise ConfigError(f"age {text!r} is too large: use {_AGE_FORMS}") from None


def parse_size(text: str) -> int:
    """A size in bytes: ``512``, ``10KB`` (1000s), ``10KiB`` (1024s), ``1.5MiB``, … rounded to a
    whole byte; units are case-insensitive. ConfigError for negative or unreadable sizes."""
    match = _SIZE.fullmatch(text.strip())
    unit = match[2].lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigError(f"size {text!r} is not understood: use {_SIZE_FORMS}")
    # Decimal, not float: "1.1GB" must be exactly 1,100,000,000 bytes.
    return round(Decimal(match[1]) * _SIZE_UNITS[unit])


def is_image_key(key: str) -> bool:
    """Whether the key names an image the engine can regenerate, judged by its suffix (any case)."""
    return key.lower().endswith(IMAGE_SUFFIXES)


def load_access_log(path: Path) -> dict[str, datetime]:
    """Read the last access time of each key from a CSV export.

    The file needs a header naming at least the columns ``key`` and ``last_access`` (others are
    ignored): the shape of an S3 inventory or server-access-log export reduced to what the
    filters need. Keys are taken literally (not URL-decoded). ``last_access`` is ISO 8601; a date
    alone means midnight UTC and a time without an offset is UTC. A key listed several times
    keeps its LATEST access. Problems raise ConfigError naming the file and line.
    """
    accesses: dict[str, datetime] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a BOM
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or ()]
            if "key" not in columns or "last_access" not in columns:
                raise ConfigError(
                    f"{path}:1: the access log needs a header with the columns 'key' and 'last_access', "
                    f"found {columns or 'an empty file'}"
                )
            reader.fieldnames = columns
            for row in reader:
                where = f"{path}:{reader.line_num}"
                key = row["key"]
                stamp = row["last_access"]
                if not key or stamp is None:
                    raise ConfigError(f"{where}: a row needs a key and a last_access time")
                when = _parse_time(stamp, where)
                if key not in accesses or when > accesses[key]:
                    accesses[key] = when
    except OSError as err:
        raise ConfigError(f"cannot read the access log {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{path}: not a UTF-8 CSV file ({err}): export the access log as CSV") from None
    return accesses


def _parse_time(text: str, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{where}: last_access {text!r} is not an ISO 8601 time, e.g. 2024-05-01 or 2024-05-01T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


@dataclass(frozen=True)
class Filters:
    """Which listed objects are candidates for archiving.

    `include`/`exclude` are globs matched against the whole key with `fnmatch.fnmatchcase`
    (case-sensitive, like keys). Note that ``*`` also crosses ``/``: ``shoes/*.png`` matches
    ``shoes/2019/red.png`` and ``*.jpg`` matches a JPEG at any depth. Sizes are inclusive bounds in
    bytes. An object's age is measured from the LATER of its last modification and its last
    access in `access_log` (when the log has its key): an image read last week is not cold,
    however old the file.
    """

    older_than: timedelta | None = None
    min_size: int | None = None
    max_size: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # Not hashed: a dict cannot be, and two Filters are told apart by their settings anyway.
    access_log: Mapping[str, datetime] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.older_than is not None and self.older_than < timedelta(0):
            raise ConfigError(f"older-than must not be negative, not {self.older_than}")
        for name in ("min_size", "max_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must not be negative, not {value}")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ConfigError(
                f"min-size ({self.min_size} bytes) is larger than max-size ({self.max_size} bytes): "
                "no object could match"
            )

    def reason_to_skip(self, obj: ObjectInfo, now: datetime) -> str | None:
        """None when `obj` is a candidate; otherwise the first reason it is not, as a short code:
        ``not-an-image``, ``excluded``, ``not-included``, ``too-small``, ``too-large``,
        ``too-recent``. `now` must be timezone-aware, like `obj.last_modified`."""
        if not is_image_key(obj.key):
            return "not-an-image"
        if any(fnmatchcase(obj.key, pattern) for pattern in self.exclude):
            return "excluded"
        if self.include and not any(fnmatchcase(obj.key, pattern) for pattern in self.include):
            return "not-included"
        if self.min_size is not None and obj.size < self.min_size:
            return "too-small"
        if self.max_size is not None and obj.size > self.max_size:
            return "too-large"
        if self.older_than is not None:
            last_used = obj.last_modified
            if self.access_log is not None:
                accessed = self.access_log.get(obj.key)
                if accessed is not None and accessed > last_used:
                    last_used = accessed
            if now - last_used < self.older_than:
                return "too-recent"
        return None
