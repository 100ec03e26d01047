"""`archiver review --html DIR`: the review page as static files, for someone without the catalog.

The same page as the server's (`page`), with its items embedded and its pictures beside it in
`img/`: each original and verified render as its own bytes, the difference and colour maps, and a
thumbnail of each pair for the contact sheet (`g`). Decisions taken in the static page are kept
in it and downloaded as a CSV, which `archiver review --apply` takes. Nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from archiver.errors import ArchiverError
from archiver.http.review import images, items, page
from archiver.http.review.service import NoOriginal, ReviewService
from archiver.read.policy import Unavailable

THUMBNAIL = 96  # pixels on the longer side, as the survey's contact sheets


def _picture(directory: Path, name: str, make: Callable[[], tuple[bytes, str]]) -> dict[str, Any]:
    """Write one picture (and its thumbnail) and say what it is; or say why there is none."""
    try:
        data, note = make()
    except (ArchiverError, Unavailable, NoOriginal, ValueError) as exc:
        return {"file": None, "note": str(exc)}
    filename = f"{name}.{images.extension(data)}"
    (directory / filename).write_bytes(data)
    if name.endswith(("-original", "-render")):
        (directory / f"{name}-thumb.png").write_bytes(images.thumbnail(data, THUMBNAIL))
    return {"file": filename, "note": note}


def write_site(service: ReviewService, out: Path, states: tuple[str, ...] = ()) -> tuple[Path, int]:
    """Write `out/index.html` and `out/img/`; the index and how many assets it shows."""
    pictures = out / "img"
    pictures.mkdir(parents=True, exist_ok=True)
    chosen = items.select(service.items(), states)
    for item in chosen:
        asset_id = item["id"]

        def original(asset_id: int = asset_id) -> tuple[bytes, str]:
            data, where = service.original(asset_id)
            return data, f"from the {where} copy"

        def render(asset_id: int = asset_id) -> tuple[bytes, str]:
            served = service.render(asset_id)
            return served.data, f"verified {served.verified.describe()}"

        item["images"] = {
            "original": _picture(pictures, f"{asset_id}-original", original),
            "render": _picture(pictures, f"{asset_id}-render", render),
        }
        if item["images"]["original"]["file"] and item["images"]["render"]["file"]:
            for kind in ("diff", "colour"):

                def made(asset_id: int = asset_id, kind: str = kind) -> tuple[bytes, str]:
                    return service.difference_map(asset_id, kind), ""

                item["images"][kind] = _picture(pictures, f"{asset_id}-{kind}", made)
    config = {
        "mode": "static",
        "items": chosen,
        "decided": {},
        "state": states[0] if len(states) == 1 else "all",
        "gain": images.GAIN,
        "colour_max": service.thresholds.get("colour_max"),
    }
    index = out / "index.html"
    index.write_text(page.document(config, "archiver review (static)"), encoding="utf-8")
    return index, len(chosen)
