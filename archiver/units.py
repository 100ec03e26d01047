"""Quantities a user types: ages like ``90d`` and sizes like ``5MiB``, parsed once for every command,
and byte counts written the way a person reads them.

Owns the accepted spellings and the one-line ConfigError that names them. Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from archiver.errors import ConfigError

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


def human_bytes(count: int) -> str:
    """A byte count as a person reads it: "812 B", "6.2 KiB", "1.4 GiB" (powers of 1024)."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def count(n: int, noun: str, plural: str | None = None) -> str:
    """ "1 source", "2 sources", "0 assets": a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
