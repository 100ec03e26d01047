"""Coldness filters: which listed objects the sweep may consider archiving, and why not the others.

Owns reading an access-log export and the one decision `Filters.reason_to_skip` (ages and sizes
are parsed by `archiver.units`, image types judged by `archiver.imagetypes`). Pure: it reads no
store and writes nothing; the only I/O is reading the access-log CSV the user names.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path

from archiver.errors import ConfigError
from archiver.imagetypes import is_image_key
from archiver.storage.base import ObjectInfo


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
