"""The storage contract: what a hot source and the vault promise, whatever the backend.

This module owns the value types (`ObjectInfo`, `VaultCopy`, `RestoreState`), the two protocols
(`HotStore`, `Vault`), key validation (`safe_key`) and the checksum comparison every backend uses.
It must not know about any provider: no boto3, no file system calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Literal, Protocol, get_args

from archiver.errors import ChecksumMismatch, NotRestored, ObjectChanged, UnsafeKey

RestoreTier = Literal["Expedited", "Standard", "Bulk"]
RESTORE_TIERS: tuple[str, ...] = get_args(RestoreTier)

# Storage classes whose objects must be restored before a GET (GLACIER_IR reads like STANDARD).
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# Classes a vault may write: the archive tier, including instant retrieval.
VAULT_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"})
# Every class a backend here understands; STANDARD is for hot stores (and tests of the emulation).
KNOWN_CLASSES = VAULT_CLASSES | {"STANDARD"}

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length; applied to every backend alike


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object without reading its bytes.

    `etag` is the provider's change token: the S3 ETag, or for a local file a token made of inode,
    mtime (ns) and size. It is compared for equality only, never parsed as a content hash.
    `sha256` (hex) is set only where the store keeps a full-object SHA-256 (S3 with ChecksumSHA256,
    the local vault's sidecar); listings never compute it.
    """

    key: str
    size: int
    etag: str | None
    last_modified: datetime  # timezone-aware, UTC
    storage_class: str | None = None
    sha256: str | None = None
    # What the object says it holds (S3 user metadata, the local vault's sidecar); vaults only.
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class VaultCopy:
    """A confirmed copy in the vault: its checksum was read back from the store and matched."""

    uri: str
    key: str
    storage_class: str
    version_id: str | None
    sha256: str  # hex
    size: int


class RestoreStatus(Enum):
    NOT_ARCHIVED = "not_archived"  # readable with a plain GET (STANDARD, GLACIER_IR)
    ARCHIVED = "archived"  # in GLACIER/DEEP_ARCHIVE: request a restore before reading
    IN_PROGRESS = "in_progress"  # a restore was requested and is not finished
    AVAILABLE = "available"  # a restored copy is readable until `expiry`


@dataclass(frozen=True)
class RestoreState:
    status: RestoreStatus
    expiry: datetime | None = None  # when a restored copy goes away again (UTC); AVAILABLE only

    @property
    def readable(self) -> bool:
        return self.status in (RestoreStatus.NOT_ARCHIVED, RestoreStatus.AVAILABLE)


# on_skip(key, reason): reason is "symlink", "not-a-file" or "unsafe-key".
OnSkip = Callable[[str, str], None]


class HotStore(Protocol):
    """Where live images sit: a directory or an S3 bucket. Keys are the objects' own names,
    '/'-separated: an S3 object's full key, a file's path relative to the directory given. A source
    URL's S3 prefix selects objects (`selection`), it does not re-root them (invariant 6)."""

    @property
    def url(self) -> str:
        """The source: what its keys are names in (`s3://bucket`, `file:///dir`). The catalog's
        source row, the journal and the vault's object metadata all name it so."""
        ...

    @property
    def selection(self) -> str:
        """The key prefix the URL selected (`shoes/` for `s3://bucket/shoes`; "" for a directory):
        `list` lists only keys under it; every other call takes any key of the source."""
        ...

    def list(self, prefix: str = "", on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        """Every object of the selection whose key starts with `prefix`, in key order; pages through the store
        without a request per object. Entries under `prefix` that are not addressable objects (a
        symlink, a socket, a key that is not NFC or holds a control character) are not listed:
        `on_skip(key, reason)` hears of each, so nothing is left out in silence."""
        ...

    def head(self, key: str) -> ObjectInfo: ...

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Write `data` atomically: readers see the old object or the new one, never a part."""
        ...

    def delete_if_unchanged(self, key: str, expected: ObjectInfo) -> None:
        """Delete `key` only if it is still the object described by `expected` (same change token);
        raise ObjectChanged otherwise."""
        ...


@dataclass(frozen=True)
class Leftover:
    """A partial write left behind: where it is, its size and time, and how to remove it."""

    where: str
    size: int
    last_modified: datetime
    remove: str  # a command that removes it, for the user to run once nothing is writing


class Vault(Protocol):
    """The archive tier: originals go here before their hot copy is removed."""

    @property
    def url(self) -> str: ...

    @property
    def storage_class(self) -> str: ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> VaultCopy:
        """Upload with a SHA-256, read the stored checksum back, raise ChecksumMismatch unless it is
        the hash of `data`. `metadata` (ASCII names and values) is kept with the object and comes
        back from `head`; `storage_class` overrides the vault's own (the journal's is readable
        without a restore)."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order (no checksums, no metadata)."""
        ...

    def head(self, key: str) -> ObjectInfo: ...

    def restore_state(self, key: str) -> RestoreState: ...

    def request_restore(self, key: str, tier: RestoreTier, days: int) -> RestoreState:
        """Ask for a readable copy for `days` days. Idempotent: asking again while one is in
        progress or available is not an error."""
        ...

    def get(self, key: str) -> bytes:
        """The original bytes; NotRestored while the object is archived and not restored."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        ...

    def leftovers(self) -> Iterator[Leftover]:
        """What interrupted writes left in the vault and nothing refers to (local: temporary files;
        S3: incomplete multipart uploads), for `fsck` to report. Lists; changes nothing."""
        ...


def safe_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise UnsafeKey.

    Keys are data, never trusted paths: the same key must name the same object on S3 and on a
    local disk, and must not be able to reach outside its store. Rejected: empty keys, keys over
    1024 UTF-8 bytes, a leading '/', backslashes, empty, '.' or '..' segments (a trailing '/' is an
    empty segment), and control or format characters (Unicode Cc, Cf, and line/paragraph
    separators).

    Keys not in Unicode NFC are rejected rather than normalised: S3 compares keys byte for byte,
    so normalising would silently address a different object than the one that exists, and some
    file systems (HFS+) store names decomposed, so two spellings could alias one file locally and
    two objects remotely. Refusing keeps one key == one object everywhere.
    """
    if not key:
        raise UnsafeKey("empty object key: name the object, e.g. 'shoes/red.jpg'")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafeKey(f"object key {key!r} is not valid Unicode text: rename the object") from None
    if size > MAX_KEY_BYTES:
        raise UnsafeKey(f"object key {key[:40]!r}... is {size} bytes long; the limit is {MAX_KEY_BYTES}")
    for char in key:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            raise UnsafeKey(
                f"object key {key!r} contains the control character U+{ord(char):04X}: rename the object"
            )
    if "\\" in key:
        raise UnsafeKey(f"object key {key!r} contains a backslash: keys use '/' as the only separator")
    if key.startswith("/"):
        raise UnsafeKey(f"object key {key!r} starts with '/': keys are relative to their store")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeKey(
                f"object key {key!r} has an empty, '.' or '..' path segment: keys must not navigate"
            )
    if unicodedata.normalize("NFC", key) != key:
        raise UnsafeKey(
            f"object key {key!r} is not in Unicode NFC form: rename the object to its NFC spelling"
        )
    return key


def class_to_write(storage_class: str | None, vault_class: str) -> str:
    """The storage class a `Vault.put` writes: the one asked for (the journal's STANDARD), else the
    vault's own; ValueError for one no backend knows."""
    wanted = storage_class or vault_class
    if wanted not in KNOWN_CLASSES:
        raise ValueError(f"storage_class must be one of {sorted(KNOWN_CLASSES)}, not {wanted!r}")
    return wanted


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64_to_hex(value: str) -> str:
    """Decode a base64 checksum (as S3 sends it) to lowercase hex."""
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        raise ChecksumMismatch(f"the store returned a malformed checksum {value!r}") from None


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def confirm_checksum(expected_sha256: str, stored_sha256: str | None, *, uri: str) -> None:
    """Raise ChecksumMismatch unless the checksum the store reports equals the one we computed.

    A store that reports no checksum cannot confirm the copy, and an unconfirmed copy is not a
    copy the hot original may be deleted for (see the design's first invariant).
    """
    if stored_sha256 is None:
        raise ChecksumMismatch(
            f"{uri}: the store returned no SHA-256 to confirm the upload; use a store that keeps "
            "object checksums (S3 ChecksumSHA256), nothing was deleted"
        )
    if stored_sha256.lower() != expected_sha256.lower():
        raise ChecksumMismatch(
            f"{uri}: stored SHA-256 {stored_sha256} differs from the uploaded bytes' {expected_sha256}; "
            "the copy is not confirmed: upload it again"
        )


def check_restore_args(tier: str, days: int) -> None:
    if tier not in RESTORE_TIERS:
        raise ValueError(f"restore tier must be one of {', '.join(RESTORE_TIERS)}, not {tier!r}")
    if days < 1:
        raise ValueError(f"a restore must last at least 1 day, not {days}")


def object_changed(where: str) -> ObjectChanged:
    return ObjectChanged(f"{where} changed since it was verified, so it was not deleted: verify it again")


def not_restored(where: str, *, in_progress: bool) -> NotRestored:
    if in_progress:
        return NotRestored(f"{where}: its restore is still in progress; try again later")
    return NotRestored(
        f"{where} is archived and not restored: request a restore (tier Expedited, Standard or Bulk), "
        "then read it once the restore completes"
    )
