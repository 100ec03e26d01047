"""How the vault lays out and names what it holds: object keys, and the pack format.

The vault holds these kinds of object, each under a content-addressed key, so a re-upload after a
crash lands on the same key, and each names what it holds (invariant 5: the vault describes itself):

* ``originals/<first 2 hex>/<sha256>``: one original, as it was hot (`original_key`, named by the
  original's SHA-256); its object metadata (`object_metadata`) names the source, the key and the
  SHA-256;
* ``packs/<sha256>.tar``: many small originals in one object (`pack_key`, named by the pack's
  SHA-256), in the format below; its manifest names the source and each member's key and SHA-256;
* ``journal/<sha256>.zst``: a segment of the record journal (`journal_key`; `archiver.journal`);
* ``profiles/<kind>/<id>.json``: a render, gate or encoding profile's body, named by its content
  id (`profile_key`);
* ``models/<registry sha256>.tar``: a registered model's files (`model_key`, `model_tar`).

This module owns those names, the object metadata and the pack and model formats (writing, reading
one member, reading the manifest, and the size estimate the dry-run cost uses). It does no I/O:
keys are strings and packs are bytes in, bytes out. Uploading, reading and restoring are
the backends' (`archiver.storage`); which originals are small enough to pack is the sweep's choice.

Why packs: an archive object in GLACIER or DEEP_ARCHIVE costs 40 KB of metadata overhead and
GLACIER_IR bills at least 128 KiB, so originals below the sweep's pack threshold are not uploaded
one by one: they are packed.

The format, version 1
---------------------
A POSIX tar archive (USTAR, as Python's tarfile writes it) with, in this order:

* ``members/<index>.zst`` for each original, index 0, 1, 2, … in the order given to `build_pack`:
  the original's bytes compressed as ONE independent zstd frame (level 10, with the content size
  and the content checksum in the frame);
* ``MANIFEST.json``, uncompressed UTF-8 JSON::

      {"format": "archiver-pack", "version": 1,
       "members": [{"index": 0, "key": "shoes/red.jpg", "sha256": "<hex of the ORIGINAL bytes>",
                    "size": <original size>, "name": "members/0.zst",
                    "offset": <byte offset of the frame in the tar>, "length": <frame length>}, …]}

The tar is deterministic: every header has mtime 0, uid/gid 0, empty uname/gname and mode 0o444,
so the same input gives identical bytes (with the same zstd library version, whose output is
what fixes the frames' bytes).

Why this shape: each member's data is one zstd frame at a known offset, so one original can be
read with a single byte-range GET of ``length`` bytes at ``offset`` (see `decode_member`) and no
other member is touched; the catalog stores the offset and length. Without the catalog (disaster
recovery) the manifest says which key is which member, and standard tools read everything::

    tar -xf pack.tar && zstd -d members/0.zst      # -> members/0, the first original
    jq . MANIFEST.json                             # which key it was, and its SHA-256

Every read checks the zstd frame checksum, the original's size and its SHA-256; damage becomes
`archiver.errors.IntegrityError`, never a crash or wrong bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote

import zstandard

from archiver.errors import IntegrityError

FORMAT = "archiver-pack"
FORMAT_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
ZSTD_LEVEL = 10

_TAR_BLOCK = tarfile.BLOCKSIZE  # 512: every tar header and every data area is a multiple of it

# What one member adds to a pack beyond its original's bytes, for `pack_size`'s estimate:
# its tar header (512) + the padding of its data to a 512-byte block (at most 511) + the zstd frame
# around incompressible data (measured: 16 bytes for 100 KiB, 37 for 1 MiB: header, one 3-byte
# header per 128 KiB block, 4-byte checksum) + its manifest entry (about 170 bytes of JSON plus the
# key). 1536 covers keys up to about 250 bytes; the frame's 3 bytes per 128 KiB of larger members
# are ignored.
PACK_MEMBER_OVERHEAD = 1536
# What every pack adds once: the manifest's tar header and padding (1,023), the JSON around the
# entries (~60), the two zero blocks that end a tar (1,024) and tarfile's padding of the whole
# archive to a 10,240-byte record (at most 10,239): 12,346 at most, rounded up to 25 blocks.
PACK_OVERHEAD = 12800

_SHA256_HEX = frozenset("0123456789abcdef")
JOURNAL_PREFIX = "journal/"
MODEL_PREFIX = "models/"
DATA_PREFIXES = ("originals/", "packs/")  # where originals are: what fsck looks for orphans in
PROFILE_KINDS = ("render", "gate", "encoding")
_META_SAFE = "/:@+,;=-_.~"


def original_key(sha256: str) -> str:
    """The vault key of a single original whose SHA-256 (lowercase hex) is `sha256`."""
    return f"originals/{_checked_sha256(sha256, 'original_key')[:2]}/{sha256}"


def pack_key(sha256: str) -> str:
    """The vault key of a pack whose own bytes (the whole tar) hash to `sha256` (lowercase hex)."""
    return f"packs/{_checked_sha256(sha256, 'pack_key')}.tar"


def journal_key(sha256: str) -> str:
    """The vault key of a journal segment whose own bytes hash to `sha256`."""
    return f"{JOURNAL_PREFIX}{_checked_sha256(sha256, 'journal_key')}.zst"


def model_key(sha256: str) -> str:
    """The vault key of a model's files, named by its registry hash (`engine.registry.model_sha256`)."""
    return f"{MODEL_PREFIX}{_checked_sha256(sha256, 'model_key')}.tar"


def profile_key(kind: str, profile_id: str) -> str:
    """The vault key of a profile's body: `kind` is render, gate or encoding; `profile_id` its content id."""
    if kind not in PROFILE_KINDS:
        raise ValueError(f"profile_key: kind must be one of {', '.join(PROFILE_KINDS)}, not {kind!r}")
    return f"profiles/{kind}/{_checked_sha256(profile_id, 'profile_key')}.json"


def object_metadata(source: str, key: str, sha256: str) -> dict[str, str]:
    """The object metadata of a single original: what it holds, in ASCII (S3 sends metadata as
    HTTP headers), so the URL and the key are percent-encoded (`urllib.parse.unquote` reads them)."""
    return {
        "archiver-source": quote(source, safe=_META_SAFE),
        "archiver-key": quote(key, safe=_META_SAFE),
        "archiver-sha256": _checked_sha256(sha256, "object_metadata"),
    }


def read_object_metadata(metadata: dict[str, str] | None) -> tuple[str, str, str] | None:
    """(source, key, sha256) from a single original's metadata, or None if it names none."""
    if not metadata or "archiver-key" not in metadata:
        return None
    return (
        unquote(metadata.get("archiver-source", "")),
        unquote(metadata["archiver-key"]),
        metadata.get("archiver-sha256", ""),
    )


def model_tar(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A model's files (relative POSIX path, bytes) as a deterministic tar, in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def model_files_from_tar(data: bytes, *, where: str) -> list[tuple[str, bytes]]:
    """The files of a model tar (`model_tar`), refusing any name that could leave its directory."""
    try:
        files = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar.getmembers():
                parts = info.name.split("/")
                if not info.isreg() or info.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
                    raise IntegrityError(
                        f"{where}: the model tar holds {info.name!r}, not a model file; nothing was written"
                    )
                extracted = tar.extractfile(info)
                assert extracted is not None
                files.append((info.name, extracted.read()))
        return files
    except (tarfile.TarError, EOFError, OSError) as err:
        raise IntegrityError(f"{where}: the model tar is damaged ({err}); nothing was written") from None


def _checked_sha256(sha256: str, caller: str) -> str:
    # A key names its object for good: refuse anything but a full lowercase hex digest up front
    # rather than upload under a name no reader would compute.
    if len(sha256) != 64 or not _SHA256_HEX.issuperset(sha256):
        raise ValueError(f"{caller}: sha256 must be 64 lowercase hex digits, not {sha256!r}")
    return sha256


@dataclass(frozen=True)
class PackMember:
    """One original inside a pack: `sha256` and `size` are the ORIGINAL's; `offset` and `length`
    locate its compressed zstd frame inside the pack's bytes."""

    key: str
    sha256: str
    size: int
    offset: int
    length: int


def member_name(index: int) -> str:
    return f"members/{index}.zst"


def build_pack(
    items: Sequence[tuple[str, bytes]], source: str | None = None
) -> tuple[bytes, list[PackMember]]:
    """Pack `(key, original bytes)` pairs, in the given order, into the format above; the manifest
    names `source`, the hot source the keys belong to, when given.

    Returns the pack's bytes and its members (the same entries as its manifest). Deterministic:
    the same items give byte-identical packs.
    """
    if not items:
        raise ValueError("a pack needs at least one member")
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one pack: a pack holds each original once")
        seen.add(key)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=True)
    buffer = io.BytesIO()
    members: list[PackMember] = []
    # USTAR, not PAX: our member names are short ASCII, so each header is exactly one 512-byte
    # block (no extended headers), which is what makes a frame's offset `header start + 512`.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for index, (key, data) in enumerate(items):
            frame = compressor.compress(data)
            header_start = buffer.tell()
            tar.addfile(_tar_info(member_name(index), len(frame)), io.BytesIO(frame))
            members.append(
                PackMember(
                    key=key,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                    offset=header_start + _TAR_BLOCK,
                    length=len(frame),
                )
            )
        manifest = _manifest_bytes(members, source)
        tar.addfile(_tar_info(MANIFEST_NAME, len(manifest)), io.BytesIO(manifest))
    return buffer.getvalue(), members


def read_member(pack: bytes, member: PackMember) -> bytes:
    """The original bytes of `member`, read from a whole pack; IntegrityError if they are damaged."""
    frame = pack[member.offset : member.offset + member.length]
    return decode_member(frame, member)


def read_catalogued_member(pack: bytes, member: PackMember) -> bytes:
    """`read_member`, for a member as the catalog describes it. A catalog written before schema
    0006 may hold a render's size for an original that a rehydrated restore brought back: where
    the frame then claims another size, the pack's own manifest entry at the same offset, with the
    same SHA-256, gives the original's. The SHA-256 is checked either way, so this never lets
    other bytes through; it only keeps a stale size from calling a healthy pack damaged."""
    try:
        return read_member(pack, member)
    except IntegrityError:
        try:
            same = (member.offset, member.sha256)
            listed = [m for m in read_manifest(pack) if (m.offset, m.sha256) == same]
        except IntegrityError:
            listed = []
        if len(listed) != 1 or listed[0].size == member.size or listed[0].length != member.length:
            raise
        return read_member(pack, replace(member, size=listed[0].size))


def decode_member(frame: bytes, member: PackMember) -> bytes:
    """The original bytes from `member`'s zstd frame alone, e.g. fetched with a byte-range GET of
    `member.length` bytes at `member.offset`. Checks the frame's own checksum, then the original's
    size and SHA-256; any mismatch raises IntegrityError naming the key."""
    if len(frame) != member.length:
        raise _damaged(member, f"its frame is {len(frame)} bytes, {member.length} expected (truncated pack?)")
    # Check the size the frame claims before decompressing: a damaged header could otherwise
    # make zstd allocate whatever size it now claims.
    try:
        claimed = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as err:
        raise _damaged(member, f"its zstd frame header is unreadable ({err})") from None
    if claimed != member.size:
        raise _damaged(member, f"its zstd frame claims {claimed} bytes, {member.size} expected")
    try:
        data = zstandard.ZstdDecompressor().decompress(frame)
    except zstandard.ZstdError as err:
        raise _damaged(member, f"its zstd frame does not decompress ({err})") from None
    if len(data) != member.size:
        raise _damaged(member, f"it decompressed to {len(data)} bytes, {member.size} expected")
    digest = hashlib.sha256(data).hexdigest()
    if digest != member.sha256.lower():
        raise _damaged(member, f"its SHA-256 is {digest}, {member.sha256} expected")
    return data


def read_manifest(pack: bytes, *, where: str = "pack") -> list[PackMember]:
    """The members listed in a pack's MANIFEST.json, for recovery without the catalog.

    Each entry is cross-checked against the tar's own headers (name, offset, length), so a manifest
    that does not describe the pack it sits in is reported as damage. `where` names the pack in
    error messages (e.g. its vault URI).
    """
    if len(pack) % _TAR_BLOCK:
        # A tar is whole 512-byte blocks; tarfile would read past a cut in the final padding.
        raise IntegrityError(
            f"{where}: {len(pack)} bytes is not a whole number of tar blocks: the pack is truncated; "
            "use another copy of it"
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(pack), mode="r:") as tar:
            headers = {info.name: info for info in tar.getmembers()}
            info = headers.get(MANIFEST_NAME)
            if info is None:
                raise IntegrityError(
                    f"{where}: no {MANIFEST_NAME} found: the pack is truncated or damaged; "
                    "use another copy of it"
                )
            extracted = tar.extractfile(info)
            if extracted is None:
                raise ValueError(f"{MANIFEST_NAME} is not a regular file")
            manifest = json.loads(extracted.read())
        return _members_from_manifest(manifest, headers, len(pack), where)
    except IntegrityError:
        raise
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        # ValueError covers json's JSONDecodeError; KeyError/TypeError a manifest of the wrong shape.
        raise IntegrityError(
            f"{where}: the pack or its {MANIFEST_NAME} is damaged ({type(err).__name__}: {err}); "
            "use another copy of it"
        ) from None


def pack_size(member_sizes: Sequence[int]) -> int:
    """An estimate, on the high side, of the size of a pack of originals of these sizes.

    It assumes the originals do not compress (images barely do: compressed ones only shrink the
    pack) and keys of up to about 250 bytes: `PACK_OVERHEAD` + each size + `PACK_MEMBER_OVERHEAD`.
    """
    return PACK_OVERHEAD + sum(size + PACK_MEMBER_OVERHEAD for size in member_sizes)


def pack_groups(sizes: Sequence[int], target: int) -> list[list[int]]:
    """Split originals, in the given order, into packs: the indexes of each pack's members.

    Greedy: a pack is cut before its originals' bytes would pass `target` (the tar and zstd
    overhead come on top), and a pack always holds at least one original, so one larger than
    `target` forms a pack alone. This is the rule the sweep packs by, so the estimate counts the
    same packs the sweep uploads.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, size in enumerate(sizes):
        if current and total + size > target:
            groups.append(current)
            current, total = [], 0
        current.append(index)
        total += size
    if current:
        groups.append(current)
    return groups


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _manifest_bytes(members: Sequence[PackMember], source: str | None) -> bytes:
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        **({"source": source} if source is not None else {}),
        "members": [
            {
                "index": index,
                "key": member.key,
                "sha256": member.sha256,
                "size": member.size,
                "name": member_name(index),
                "offset": member.offset,
                "length": member.length,
            }
            for index, member in enumerate(members)
        ],
    }
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _members_from_manifest(
    manifest: Any, headers: dict[str, tarfile.TarInfo], pack_length: int, where: str
) -> list[PackMember]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{MANIFEST_NAME} is not an {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        # Not damage: a newer archiver wrote it. Said plainly rather than as "damaged".
        raise IntegrityError(
            f"{where}: pack format version {manifest.get('version')!r} is not {FORMAT_VERSION}, "
            "the one this archiver reads: read it with the archiver version that wrote it"
        )
    members = []
    for position, entry in enumerate(manifest["members"]):
        member = PackMember(
            key=_typed(entry["key"], str),
            sha256=_typed(entry["sha256"], str),
            size=_typed(entry["size"], int),
            offset=_typed(entry["offset"], int),
            length=_typed(entry["length"], int),
        )
        header = headers.get(_typed(entry["name"], str))
        if (
            entry["index"] != position
            or entry["name"] != member_name(position)
            or header is None
            or header.offset_data != member.offset
            or header.size != member.length
            or member.offset + member.length > pack_length
        ):
            raise ValueError(f"manifest entry {position} ({member.key!r}) does not match the tar's headers")
        members.append(member)
    return members


def _typed(value: Any, kind: type) -> Any:
    # bool is an int in Python; a manifest saying `"size": true` is still damage.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value


def _damaged(member: PackMember, detail: str) -> IntegrityError:
    return IntegrityError(
        f"{member.key}: the vault copy is damaged: {detail}; nothing was changed: "
        "restore this original from another copy of its pack"
    )
