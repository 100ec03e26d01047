"""What records share, and what is a record's own: the render and gate profiles' canonical form.

A record keeps only what is its own: prompt, negative prompt, seed, the rendered bytes' SHA-256 and
size, and its gate metric values. Everything many records share is stored once and referenced by
id, as encoding profiles are: a render profile (pipeline and scheduler class and config, steps,
guidance scale, eta, width and height, dtype, rng, and the software stack it was rendered with)
and a gate profile (the thresholds, the LPIPS trunk and its hashes, and the names of the metrics
records store values for, in order). A profile is content-addressed: its `sha256` is the SHA-256
of `canonical_json(doc)`, so equal settings are one row, in every catalog and in every edge export.

This module owns the split (a render spec and a gate report into profile docs and the record's own
values) and the way back (`reassemble_report`). No SQL (`queries` stores the rows), no engine.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

PROFILE_VERSION = 1
# The render spec's fields a render profile holds (with the software stack); the rest are a record's own.
RENDER_FIELDS = (
    "pipeline_class",
    "scheduler_class",
    "scheduler_config",
    "steps",
    "guidance_scale",
    "eta",
    "width",
    "height",
    "dtype",
    "rng",
)
OWN_FIELDS = ("prompt", "negative_prompt", "seed")
RENDER_DEFAULTS = {"eta": 0.0, "rng": "cpu", "dtype": "float32"}  # as RenderSpec's
_FLOATS = {"guidance_scale", "eta"}
_INTS = {"steps", "width", "height"}
METRIC_DIGITS = 4  # significant digits a record keeps of each gate metric


def canonical_json(doc: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII, no NaN: one spelling per value, so one hash."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def content_id(doc: Any) -> str:
    """SHA-256 (hex) of the canonical JSON: a profile's id wherever it travels."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def render_profile_doc(spec: Mapping[str, Any], software: Mapping[str, Any]) -> dict[str, Any]:
    """The render profile of `spec` (a RenderSpec's columns, or a profile row's fields) and its stack.

    Numbers are normalised (a guidance scale of 1 and of 1.0 are one profile)."""
    doc: dict[str, Any] = {"v": PROFILE_VERSION, "software": dict(software)}
    for name in RENDER_FIELDS:
        value: Any = spec[name] if name in spec or name not in RENDER_DEFAULTS else RENDER_DEFAULTS[name]
        doc[name] = float(value) if name in _FLOATS else int(value) if name in _INTS else value
    doc["scheduler_config"] = json.loads(canonical_json(doc["scheduler_config"]))  # tuples as lists
    return doc


def gate_profile_doc(report: Mapping[str, Any]) -> dict[str, Any]:
    """The shared part of a gate report (`GateReport.to_dict()`): thresholds, trunk, metric names."""
    return {
        "v": PROFILE_VERSION,
        "thresholds": {k: float(v) for k, v in dict(report.get("thresholds") or {}).items()},
        "backbone": dict(report.get("backbone") or {}),
        "metrics": list(dict(report.get("metrics") or {})),
    }


def compact_metric(value: Any) -> Any:
    """A metric as a record keeps it: METRIC_DIGITS significant digits; booleans and None as they are."""
    if isinstance(value, bool) or value is None:
        return value
    number = float(value)
    if not math.isfinite(number):
        return math.copysign(1e9, number) if math.isinf(number) else None
    return float(f"{number:.{METRIC_DIGITS}g}")


def metric_values(report: Mapping[str, Any]) -> list[Any]:
    """The report's metric values, compacted, in the order `gate_profile_doc` names them."""
    return [compact_metric(v) for v in dict(report.get("metrics") or {}).values()]


def check_passed(report: Mapping[str, Any]) -> None:
    """A record exists only for a render the gate passed: its report must say so."""
    if report.get("passed") is False or report.get("failures"):
        raise ValueError(f"a record is only for a render that passed the gate: {report.get('failures')}")


def reassemble_report(
    gate_profile: Mapping[str, Any], values: Sequence[Any], software: Mapping[str, Any]
) -> dict[str, Any]:
    """The gate report as `GateReport.to_dict` wrote it, from a record's values and its profiles.

    Metrics carry METRIC_DIGITS significant digits; the nearest sibling's name is not kept (its
    measures are: `nearest_sibling_*`)."""
    names = list(gate_profile.get("metrics") or [])
    return {
        "passed": True,
        "failures": [],
        "metrics": dict(zip(names, values, strict=True)),
        "thresholds": dict(gate_profile.get("thresholds") or {}),
        "backbone": dict(gate_profile.get("backbone") or {}),
        "software": dict(software),
        "nearest_sibling": None,
    }
