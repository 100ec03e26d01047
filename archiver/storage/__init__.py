"""Storage: one contract for hot sources and the vault, over local directories and S3.

This package owns every byte that leaves or enters a store, and turns provider failures into the
neutral errors of `archiver.errors`. `open_hot_store` and `open_vault` turn a URL from the settings
into a backend; nothing else in the project needs to know which backend it holds.

    s3://bucket/prefix      S3 (AWS, or any S3 API named by AWS_ENDPOINT_URL)
    file:///abs/path, path  a local directory

A hot source's keys are the objects' own names (invariant 6): an S3 source is its bucket, and a
URL's prefix only selects objects (`HotStore.selection`); a directory source's keys are paths
relative to the directory given. `source_url` says which source a URL names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from archiver.errors import ConfigError, UnsafeKey
from archiver.storage.base import (
    ARCHIVE_CLASSES,
    VAULT_CLASSES,
    HotStore,
    Leftover,
    ObjectInfo,
    OnSkip,
    RestoreState,
    RestoreStatus,
    RestoreTier,
    Vault,
    VaultCopy,
    safe_key,
)
from archiver.storage.local import LocalHotStore, LocalVault

if TYPE_CHECKING:
    from archiver.storage.s3 import S3HotStore, S3Vault, make_s3_client, translate_error

S3Client = Any  # boto3 ships no type stubs; the client is typed loosely on purpose

__all__ = [
    "ARCHIVE_CLASSES",
    "VAULT_CLASSES",
    "HotStore",
    "Leftover",
    "LocalHotStore",
    "LocalVault",
    "ObjectInfo",
    "OnSkip",
    "RestoreState",
    "RestoreStatus",
    "RestoreTier",
    "S3HotStore",
    "S3Vault",
    "Vault",
    "VaultCopy",
    "make_s3_client",
    "open_hot_store",
    "open_vault",
    "parse_store_url",
    "safe_key",
    "source_url",
    "translate_error",
]

ClientFactory = Callable[[], S3Client]

_S3_NAMES = {"S3HotStore", "S3Vault", "make_s3_client", "translate_error"}


def __getattr__(name: str) -> Any:
    """The S3 backend's names, imported on first use: boto3 takes a tenth of a second to import, and
    commands over local stores (or none) never need it."""
    if name in _S3_NAMES:
        from archiver.storage import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_s3_client_lazily() -> S3Client:
    """The default `client_factory`: make_s3_client, importing boto3 only when an S3 URL is opened."""
    from archiver.storage.s3 import make_s3_client

    return make_s3_client()


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# AWS's rules for general purpose bucket names, so a typo fails here and not at the first request.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_BAD_BUCKET_AFFIXES = (("xn--", "sthree-", "amzn-s3-demo-"), ("-s3alias", "--ol-s3", ".mrap", "--x-s3"))


def _check_bucket(bucket: str, url: str) -> None:
    prefixes, suffixes = _BAD_BUCKET_AFFIXES
    if (
        not _BUCKET.match(bucket)
        or ".." in bucket
        or _IP_LIKE.match(bucket)
        or bucket.startswith(prefixes)
        or bucket.endswith(suffixes)
    ):
        raise ConfigError(
            f"{url!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
        )


def parse_store_url(url: str) -> tuple[str, str, str]:
    """Split a store URL into ("s3", bucket, prefix) or ("file", path, "").

    A string without a scheme is a local path; write `./a:b` for a relative path containing ':'.
    """
    if not url or not url.strip():
        raise ConfigError("empty storage URL: give s3://bucket/prefix or a directory path")
    match = _SCHEME.match(url)
    if match is None:
        return "file", url, ""
    scheme = match.group(1).lower()
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"{url!r}: storage URLs take no '?' or '#' part")
    if scheme == "s3":
        if not url[3:].startswith("//") or not parts.netloc:
            raise ConfigError(f"{url!r} names no bucket: write s3://bucket/prefix")
        _check_bucket(parts.netloc, url)
        prefix = parts.path.strip("/")
        if prefix:
            try:
                safe_key(prefix)
            except UnsafeKey as exc:
                raise ConfigError(f"{url!r}: bad prefix: {exc}") from None
        return "s3", parts.netloc, prefix
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(
                f"{url!r}: a file URL must name an absolute local path, e.g. file:///srv/images"
            )
        return "file", unquote(parts.path), ""
    raise ConfigError(
        f"{url!r}: unknown storage scheme {scheme!r}: use s3://bucket/prefix, file:///path or a directory "
        "path (write ./name for a relative path containing ':')"
    )


def source_url(url: str) -> str:
    """The source a hot store URL names, as the catalog keeps it: `s3://bucket` for any
    `s3://bucket/prefix`, `file:///abs/dir` for a directory (which need not exist)."""
    kind, where, _ = parse_store_url(url)
    if kind == "s3":
        return f"s3://{where}"
    return Path(where).expanduser().absolute().as_uri()


def open_hot_store(url: str, *, client_factory: ClientFactory = make_s3_client_lazily) -> HotStore:
    """The hot store at `url` (see the module docstring); ConfigError for a malformed URL.

    An S3 URL's prefix selects what `list` lists; the store's keys are full object keys."""
    kind, where, prefix = parse_store_url(url)
    if kind == "s3":
        from archiver.storage.s3 import S3HotStore

        return S3HotStore(where, "", client_factory(), select=prefix)
    return LocalHotStore(Path(where).expanduser())


def open_vault(
    url: str, storage_class: str, *, client_factory: ClientFactory = make_s3_client_lazily
) -> Vault:
    """The vault at `url`, writing `storage_class` (GLACIER, DEEP_ARCHIVE or GLACIER_IR).

    A local vault directory is created if missing; it emulates the storage class's restore rules.
    """
    if storage_class not in VAULT_CLASSES:
        raise ConfigError(
            f"vault storage class {storage_class!r} is not an archive class: "
            f"use one of {', '.join(sorted(VAULT_CLASSES))}"
        )
    kind, where, prefix = parse_store_url(url)
    if kind == "s3":
        from archiver.storage.s3 import S3Vault

        return S3Vault(where, prefix, storage_class, client_factory())
    return LocalVault(Path(where).expanduser(), storage_class)
