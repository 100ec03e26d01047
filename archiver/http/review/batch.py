"""Decisions as CSV, for batches: `archiver review --export FILE.csv` and `--apply FILE.csv`.

The export has one row per asset in scope: its key and source, where it stands (`review`), the
`decision` column (the decision taken, empty where none is), the reviewer, when, the comment, the
gate's reason, the check nearest its threshold and every check's value, and the prompt and seed.
A person fills or changes `decision` (approve or reject; empty rows are skipped) and `comment`,
and applies the file. Only `key` and `decision` are required to apply; where a key exists in
several sources, a row without `source` decides the oldest source's (queries.resolve_key). A
malformed file is refused whole, naming its first bad line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from archiver.errors import ReviewError
from archiver.http.review.decisions import APPROVED, Decision, parse_decision
from archiver.http.review.items import CHECKS

COLUMNS = (
    "key",
    "source",
    "review",
    "decision",
    "reviewer",
    "decided_at",
    "comment",
    "state",
    "reason",
    "nearest",
    *(name for name, *_ in CHECKS),
    "prompt",
    "seed",
)
MAX_BYTES = 64 << 20  # a decisions file is text: refuse anything larger before reading it


def export_rows(items: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        values = {check["name"]: check["value"] for check in item["checks"]}
        record = item["record"] or {}
        decided = item["review"] in ("approved", "rejected")
        writer.writerow(
            {
                "key": item["key"],
                "source": item["source"],
                "review": item["review"],
                "decision": ("approve" if item["review"] == APPROVED else "reject") if decided else "",
                "reviewer": item["reviewer"] or "",
                "decided_at": item["decided_at"] or "",
                "comment": item["comment"] or "",
                "state": item["state"],
                "reason": item["reason"] or "",
                "nearest": item["nearest"] or "",
                **{name: "" if values.get(name) is None else values[name] for name, *_ in CHECKS},
                "prompt": record.get("prompt", ""),
                "seed": record.get("seed", ""),
            }
        )
    return out.getvalue()


def read_decisions(path: Path) -> list[Decision]:
    """The decisions in a CSV file; ReviewError naming the file and line of the first problem."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ReviewError(f"{path} is over {MAX_BYTES >> 20} MiB: not a decisions file")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ReviewError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ReviewError(f"{path} is not UTF-8 text: save the decisions as a UTF-8 CSV") from None
    return parse_decisions(text, str(path))


def parse_decisions(text: str, name: str = "decisions") -> list[Decision]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ReviewError(f"{name} line 1: not CSV ({exc})") from None
    if not header or not {"key", "decision"} <= set(header):
        raise ReviewError(
            f"{name}: the first line must name the columns, with at least `key` and `decision` "
            f"(found {', '.join(header or []) or 'nothing'})"
        )
    decisions: list[Decision] = []
    seen: dict[tuple[str, str | None], int] = {}
    try:
        for row in reader:
            line = reader.line_num
            where = f"{name} line {line}: "
            if None in row or any(value is None for value in row.values()):
                raise ReviewError(f"{where}{len(header)} columns expected, the row has another number")
            key, text_decision = (row.get("key") or "").strip(), (row.get("decision") or "").strip()
            if not text_decision:
                continue
            if not key:
                raise ReviewError(f"{where}a decision without a key")
            try:
                decision = parse_decision(text_decision)
            except ReviewError as exc:
                raise ReviewError(f"{where}{exc}") from None
            source = (row.get("source") or "").strip() or None
            if (key, source) in seen:
                raise ReviewError(f"{where}{key} was already decided on line {seen[key, source]}")
            seen[key, source] = line
            comment = (row.get("comment") or "").strip() or None
            decisions.append(Decision(decision, key=key, source=source, comment=comment, where=where))
    except csv.Error as exc:
        raise ReviewError(f"{name} line {reader.line_num}: not CSV ({exc})") from None
    return decisions
