"""What the review page shows of one asset, as plain data (JSON for the page, rows for the CSV).

Owns the reading of a gate report for a person: each check's value against its threshold, and how
much of its margin it uses (`pressure`: value / limit for a ceiling, limit / value for a floor;
above 1 it failed), so the check nearest its threshold can be highlighted and a list sorted by its
worst one. A record's report comes from the record; a gate rejection's measures from its
`rejected` event, against the thresholds in force. No I/O but the catalog session it is handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from archiver.catalog import queries
from archiver.catalog.models import Asset, AssetState
from archiver.http.review.decisions import REVIEWER_REASON

# (metric, threshold, "max" or "min", label): the checks a person compares, in report order.
CHECKS = (
    ("lpips", "lpips_max", "max", "LPIPS"),
    ("worst_tile", "worst_tile_max", "max", "worst tile"),
    ("psnr", "psnr_min", "min", "PSNR dB"),
    ("colour_worst", "colour_max", "max", "ΔE00 worst 1%"),
    ("sibling_margin_db", "sibling_margin_db", "min", "sibling margin dB"),
)
# Where an item stands, for the page's filter and `--state`: decisions, and what nobody decides.
REVIEW_STATES = ("pending", "approved", "rejected", "gate-rejected", "unreviewed")


@dataclass(frozen=True)
class Check:
    name: str
    label: str
    value: float | None
    limit: float | None
    kind: str  # "max" (value must stay at or under the limit) or "min"
    pressure: float | None  # share of the margin used; > 1 failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "value": self.value,
            "limit": self.limit,
            "kind": self.kind,
            "pressure": None if self.pressure is None else round(self.pressure, 4),
        }


def checks(metrics: Mapping[str, Any], thresholds: Mapping[str, Any]) -> list[Check]:
    found = []
    for name, limit_name, kind, label in CHECKS:
        value, limit = metrics.get(name), thresholds.get(limit_name)
        pressure = None
        if isinstance(value, int | float) and isinstance(limit, int | float) and abs(value) < 1e8:
            if kind == "max" and limit > 0:
                pressure = value / limit
            elif kind == "min" and value > 0:
                pressure = limit / value
        found.append(Check(name, label, value, limit, kind, pressure))
    return found


def review_state(asset: Asset, review: queries.Review | None) -> str:
    if asset.state == AssetState.REJECTED and asset.reason != REVIEWER_REASON:
        return "gate-rejected"
    if review is not None:
        return review.status
    return "unreviewed"


def describe(
    session: Session, asset: Asset, review: queries.Review | None, thresholds: Mapping[str, Any]
) -> dict[str, Any]:
    """One asset as the page and the CSV see it (its record, if any, must be loaded)."""
    record = asset.record
    if record is not None:
        report = record.gate_report
        metrics, limits = report["metrics"], report["thresholds"]
    else:
        rejected = queries.last_event(session, asset, AssetState.REJECTED.value)
        metrics = dict((rejected.detail.get("metrics") if rejected else None) or {})
        limits = thresholds
    measured = checks(metrics, limits)
    pressed = [c for c in measured if c.pressure is not None]
    nearest = max(pressed, key=lambda c: c.pressure or 0.0) if pressed else None
    render = record.render_profile if record is not None else None
    return {
        "id": asset.id,
        "key": asset.key,
        "source": asset.source.url,
        "state": asset.state.value,
        "reason": asset.reason,
        "reason_detail": asset.reason_detail,
        "review": review_state(asset, review),
        "reviewer": review.reviewer if review is not None else None,
        "decided_at": review.at.isoformat() if review is not None and review.status != "pending" else None,
        "comment": review.comment if review is not None else None,
        "checks": [c.to_dict() for c in measured],
        "nearest": nearest.name if nearest is not None else None,
        "pressure": round(nearest.pressure or 0.0, 4) if nearest is not None else None,
        "deterministic": metrics.get("deterministic"),
        "size": asset.size,
        "record": None
        if record is None or render is None
        else {
            "prompt": record.prompt,
            "negative_prompt": record.negative_prompt,
            "seed": record.seed,
            "model": record.model.name,
            "model_sha256": record.model.sha256,
            "steps": render.steps,
            "guidance_scale": render.guidance_scale,
            "width": render.width,
            "height": render.height,
            "rendered_sha256": record.rendered_sha256,
        },
    }


def describe_all(
    session: Session, assets: list[Asset], thresholds: Mapping[str, Any]
) -> list[dict[str, Any]]:
    decided = queries.reviews(session, [asset.id for asset in assets])
    return [describe(session, asset, decided.get(asset.id), thresholds) for asset in assets]


def select(
    items: list[dict[str, Any]], states: tuple[str, ...] = (), reason: str | None = None, sort: str = "worst"
) -> list[dict[str, Any]]:
    """Items in these review states (all when empty) and with this reason, worst metric first
    (`sort="worst"`) or by key."""
    chosen = [
        item
        for item in items
        if (not states or item["review"] in states) and (reason is None or item["reason"] == reason)
    ]
    if sort == "worst":
        chosen.sort(key=lambda item: (-(item["pressure"] or 0.0), item["key"]))
    return chosen
