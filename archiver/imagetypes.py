"""Which keys name images archiver can regenerate: the one list of image types, by key suffix,
and the media type each format is served as.

Used by the sweep's filters, verify, train, the mount and the edge export; it opens no file
(`engine.originals` decodes and checks the bytes themselves).
"""

from __future__ import annotations

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}  # by encoding format


def is_image_key(key: str) -> bool:
    """Whether the key names an image the engine can regenerate, judged by its suffix (any case)."""
    return key.lower().endswith(IMAGE_SUFFIXES)
