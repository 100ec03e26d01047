"""Edge keys: how a request finds its record, and how the export names everything else.

The mapping from URL to key, which an edge worker repeats for every request:

1. The request path is the URL's path, percent-decoded, as UTF-8, without the query string:
   `https://img.example.com/shop/shoes/red%20sole.png?w=1` -> `/shop/shoes/red sole.png`.
2. The export serves the archive under one URL prefix (`--url-prefix`, default `/`): an asset with
   key `shoes/red sole.png` is at request path `<url prefix><key>`, here with the prefix `/shop/`.
3. Its record's key is `r/` followed by the hex SHA-256 of the request path's UTF-8 bytes: 66
   characters whatever the path's length, inside Cloudflare's 512-byte and Fastly's 1024-byte key
   limits, and free of the characters either refuses.

The other entries: `p/<sha256>` a render profile, `e/<sha256>` an encoding profile (each by its
content id), `m/<sha256>` a model's identity, `z/<id>` a zstd dictionary (by the dictionary id its
values' frames carry), and `meta`, what the export covers and the cursor it was taken at.
"""

from __future__ import annotations

import hashlib

from archiver.errors import ConfigError

RECORD = "r/"
RENDER_PROFILE = "p/"
ENCODING_PROFILE = "e/"
MODEL = "m/"
DICTIONARY = "z/"
META = "meta"
MAX_KEY_BYTES = 512  # Cloudflare Workers KV's limit, the smallest of the stores the export writes for


def url_prefix(prefix: str) -> str:
    """The URL path prefix the archive is served under: starts and ends with `/`."""
    if not prefix.startswith("/") or "?" in prefix or "#" in prefix:
        raise ConfigError(f"URL prefix {prefix!r} must be a URL path starting with '/', e.g. /images/")
    return prefix if prefix.endswith("/") else prefix + "/"


def request_path(prefix: str, key: str) -> str:
    """The (percent-decoded) URL path an asset is requested at."""
    return url_prefix(prefix) + key


def record_key(path: str) -> str:
    """The key of the record served at request path `path` (see the module docstring)."""
    return RECORD + hashlib.sha256(path.encode("utf-8")).hexdigest()


def profile_key(kind: str, sha256: str) -> str:
    return kind + sha256


def dictionary_key(dict_id: int) -> str:
    return f"{DICTIONARY}{dict_id}"
