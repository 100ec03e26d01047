"""The gate: proves, image by image, that a regeneration is indistinguishable from its original.

Rooms: `perceptual` (LPIPS network and PSNR), `trunk` (the pretrained LPIPS trunk, installed
offline and checked by hash), `colour` (colour fidelity a person sees), `siblings` (the nearest
siblings of a render, from a compact descriptor index), `verdict` (thresholds, the report, `Gate`).
"""

from archiver.gate.perceptual import Backbone, load_lpips, psnr
from archiver.gate.verdict import Gate, GateReport, Thresholds, software_versions

__all__ = ["Backbone", "Gate", "GateReport", "Thresholds", "load_lpips", "psnr", "software_versions"]
