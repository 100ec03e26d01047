"""Which keys name images archiver can regenerate: the one list of image types, by key suffix.

Used by the sweep's filters, verify, train and the mount; it opens no file (`engine.originals`
decodes and checks the bytes themselves).
"""

from __future__ import annotations

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def is_image_key(key: str) -> bool:
    """Whether the key names an image the engine can regenerate, judged by its suffix (any case)."""
    return key.lower().endswith(IMAGE_SUFFIXES)
