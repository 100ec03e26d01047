"""Traffic per key from an access log, per month: what the survey's traffic saving is priced on.

Two forms are read (the first line decides):

* **CSV** with the header `key,requests,bytes`: one row per key, the requests and the bytes sent for
  it **in one month** (a row for a key already seen adds to it).
* **Common or Combined Log Format**, as nginx and Apache write them:
  `host ident user [10/Oct/2024:13:55:36 +0000] "GET /shoes/red.png HTTP/1.1" 200 2326 ...`.
  GET and HEAD requests answered 200, 206 or 304 count; the bytes are the logged response size (`-`
  is 0). The request path is percent-decoded, its query dropped, and `url_prefix` (default `/`, as
  `archiver edge --url-prefix`) taken off to give the key; paths outside the prefix are ignored.
  Counts are scaled to 30 days from the span between the first and the last timestamp (at least a
  day).

A line that is neither is counted in `bad_lines`, not fatal. Memory: one entry per distinct key in
the log.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from archiver.edge.keys import url_prefix as checked_prefix
from archiver.errors import ConfigError

_CLF = re.compile(
    r'^\S+ \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+)(?: [^"]*)?" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)"
)
_COUNTED_STATUS = frozenset({"200", "206", "304"})
SECONDS_PER_MONTH = 30 * 86400


@dataclass
class Traffic:
    """key -> (requests, bytes) per month, and how the log was read."""

    per_key: dict[str, tuple[float, float]] = field(default_factory=dict)
    lines: int = 0
    counted: int = 0
    bad_lines: int = 0
    form: str = ""
    span_days: float | None = None  # CLF only: the span the counts were scaled from

    def of(self, key: str) -> tuple[float, float]:
        return self.per_key.get(key, (0.0, 0.0))


def load_traffic(path: Path, url_prefix: str = "/") -> Traffic:
    prefix = checked_prefix(url_prefix)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as stream:
            first = stream.readline()
            stream.seek(0)
            if first.strip().lower().replace(" ", "") == "key,requests,bytes":
                return _read_csv(stream)
            return _read_clf(stream, prefix)
    except OSError as exc:
        raise ConfigError(f"cannot read access log {path}: {exc.strerror or exc}") from None


def _read_csv(stream: object) -> Traffic:
    traffic = Traffic(form="csv key,requests,bytes (per month)")
    reader = csv.reader(stream)  # type: ignore[arg-type]
    next(reader)
    for row in reader:
        traffic.lines += 1
        try:
            key, requests, size = row[0], float(row[1]), float(row[2])
            if not key or requests < 0 or size < 0:
                raise ValueError
        except (ValueError, IndexError):
            traffic.bad_lines += 1
            continue
        old = traffic.of(key)
        traffic.per_key[key] = (old[0] + requests, old[1] + size)
        traffic.counted += 1
    return traffic


def _read_clf(stream: object, prefix: str) -> Traffic:
    traffic = Traffic(form="common/combined log format")
    first: datetime | None = None
    last: datetime | None = None
    for line in stream:  # type: ignore[attr-defined]
        traffic.lines += 1
        match = _CLF.match(line)
        if match is None:
            traffic.bad_lines += 1
            continue
        try:
            when = datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z")
        except ValueError:
            traffic.bad_lines += 1
            continue
        first = when if first is None or when < first else first
        last = when if last is None or when > last else last
        if match["method"] not in ("GET", "HEAD") or match["status"] not in _COUNTED_STATUS:
            continue
        path = unquote(urlsplit(match["target"]).path, errors="replace")
        if not path.startswith(prefix):
            continue
        key = path[len(prefix) :]
        size = 0 if match["bytes"] == "-" else int(match["bytes"])
        old = traffic.of(key)
        traffic.per_key[key] = (old[0] + 1, old[1] + size)
        traffic.counted += 1
    if first is not None and last is not None:
        span = max((last - first).total_seconds(), 86400.0)
        traffic.span_days = span / 86400
        scale = SECONDS_PER_MONTH / span
        traffic.per_key = {k: (r * scale, b * scale) for k, (r, b) in traffic.per_key.items()}
    return traffic
