"""The record journal: what the vault holds so that the catalog can be rebuilt from it alone.

Invariant 5: before a hot copy is deleted, its record is durably in the vault. The sweep appends
one entry per asset it is about to release (`put_entry`), restores and assets that turned out
changed append tombstones (`tombstone`), and each batch is one segment: an append-only,
content-addressed object `journal/<sha256>.zst` (`vault_format.journal_key`), written in a
storage class readable without a restore (`vault_journal_storage_class`, STANDARD by default) and
confirmed by its checksum read back before the caller goes on. What entries name by id is in the
vault too, once, content-addressed: each profile's body (`profiles/<kind>/<id>.json`) and each
model's files (`models/<registry sha256>.tar`).

A segment is one zstd frame (with its checksum) of NDJSON: a header line
``{"format": "archiver-journal", "version": 1, "w": WRITER, "at": MICROSECONDS, "entries": N}``
and then one canonical JSON entry per line (`edge.records.canonical`: sorted keys, no spaces):

    put  {"op": "put", "at": µs, "w": writer, "src": source URL, "k": key,
          "o": the original {"h": SHA-256, "z": size, "e": ETag, "t": last modified µs, "c": type},
          "v": its vault copy {"k": key, "h": SHA-256, "z": size, "c": storage class, "p": pack?,
                               "ca": confirmed µs, "i": version id, "off", "len": a member's span},
          "r": the record, compact {"p", "n", "s", "r", "e", "g", "h", "z", "x", "sk"}:
               prompt, negative prompt, seed, render/encoding/gate profile ids, rendered SHA-256
               and size, gate metrics, render sketch (base64; only when the record has one),
          "m": its model {"h": registry SHA-256, "n": name, "c": pipeline class, "path": path}}
    del  {"op": "del", "at": µs, "w": writer, "src": source URL, "k": key,
          "st": the asset's new state (restored, rejected), "why": a reason}

Entries order by (at, w, position): for one (source, key), the newest entry wins when a rebuild
merges journals, whichever segment holds it. Nothing here runs SQL: callers hand in the rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from archiver.catalog import profiles
from archiver.catalog.models import EPOCH, MICROSECOND, Asset, Model, Record
from archiver.edge.records import canonical
from archiver.errors import ConfigError, IntegrityError, NoSuchObject
from archiver.storage import Vault, VaultCopy
from archiver.storage.vault_format import (
    JOURNAL_PREFIX,
    journal_key,
    model_files_from_tar,
    model_key,
    model_tar,
    profile_key,
)

FORMAT = "archiver-journal"
VERSION = 1
SEGMENT_ENTRIES = 10_000  # entries per segment at most: a sweep batch larger than this writes several
ZSTD_LEVEL = 10


def rooted(source: str, key: str) -> tuple[str, str]:
    """(source, key) under invariant 6: an S3 source is its bucket and a key is the full object key.
    Entries (and vault object metadata) written before that name `s3://bucket/prefix` and a key
    relative to the prefix; migration 0004 rewrites the catalog by this same rule."""
    if source.startswith("s3://"):
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        if prefix.strip("/"):
            return f"s3://{bucket}", f"{prefix.strip('/')}/{key}"
    return source, key


def micros(when: datetime) -> int:
    return (when.astimezone(UTC) - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + value * MICROSECOND


@dataclass(frozen=True)
class Entry:
    """One decoded journal entry; `doc` is the entry as written (see the module docstring)."""

    doc: dict[str, Any]
    segment: str  # the vault key of the segment holding it
    position: int

    @property
    def op(self) -> str:
        return str(self.doc["op"])

    @property
    def at(self) -> int:
        return int(self.doc["at"])

    @property
    def ident(self) -> tuple[str, str]:
        """(source URL, key): the asset the entry is about, named as today's catalog names it."""
        return rooted(str(self.doc["src"]), str(self.doc["k"]))

    @property
    def order(self) -> tuple[int, str, str, int]:
        return (self.at, str(self.doc["w"]), self.segment, self.position)


def put_entry(asset: Asset, at: datetime, writer: str) -> dict[str, Any]:
    """The entry saying that `asset` (loaded with its source, record, model and vault object) is in
    the vault with this record: everything a rebuild needs to recreate its rows exactly."""
    record, vault_object = asset.record, asset.vault_object
    if record is None or vault_object is None or asset.sha256 is None:
        raise ValueError(f"{asset.key}: only an asset with a record and a vault copy is journaled")
    compact: dict[str, Any] = {
        "p": record.prompt,
        "s": record.seed,
        "r": record.render_profile.sha256,
        "e": record.encoding_profile.sha256,
        "g": record.gate_profile.sha256,
        "h": record.rendered_sha256,
        "z": record.rendered_size,
        "x": record.metrics,
    }
    if record.negative_prompt:
        compact["n"] = record.negative_prompt
    sketch = getattr(record, "render_sketch", None)  # issue 17's column, where it has landed
    if sketch is not None:
        compact["sk"] = base64.b64encode(bytes(sketch)).decode("ascii")
    vault: dict[str, Any] = {
        "k": vault_object.key,
        "h": vault_object.sha256,
        "z": vault_object.size,
        "c": vault_object.storage_class,
        "p": vault_object.is_pack,
        "ca": micros(vault_object.confirmed_at or at),
    }
    if vault_object.version_id:
        vault["i"] = vault_object.version_id
    if asset.vault_offset is not None:
        vault["off"], vault["len"] = asset.vault_offset, asset.vault_length
    original: dict[str, Any] = {"h": asset.sha256, "z": asset.size, "t": micros(asset.last_modified)}
    if asset.etag is not None:
        original["e"] = asset.etag
    if asset.content_type is not None:
        original["c"] = asset.content_type
    model = record.model
    return {
        "op": "put",
        "at": micros(at),
        "w": writer,
        "src": asset.source.url,
        "k": asset.key,
        "o": original,
        "v": vault,
        "r": compact,
        "m": {"h": model.sha256, "n": model.name, "c": model.pipeline_class, "path": model.path},
    }


def tombstone(source: str, key: str, state: str, why: str, at: datetime, writer: str) -> dict[str, Any]:
    """The entry saying that an asset journaled as archived is no longer (restored, or rejected)."""
    return {"op": "del", "at": micros(at), "w": writer, "src": source, "k": key, "st": state, "why": why}


def encode_segment(entries: Sequence[dict[str, Any]], writer: str, at: datetime) -> bytes:
    header = {"format": FORMAT, "version": VERSION, "w": writer, "at": micros(at), "entries": len(entries)}
    text = b"".join(canonical(doc) + b"\n" for doc in [header, *entries])
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(text)


def decode_segment(data: bytes, key: str) -> list[Entry]:
    """A segment's entries; IntegrityError (one line, naming it) if it is damaged or not a segment."""
    expected = key.removeprefix(JOURNAL_PREFIX).removesuffix(".zst")
    if hashlib.sha256(data).hexdigest() != expected:
        raise IntegrityError(f"journal segment {key} does not hash to its name: it is damaged")
    try:
        lines = zstandard.ZstdDecompressor().decompress(data).decode("utf-8").splitlines()
        header = json.loads(lines[0])
        if header.get("format") != FORMAT:
            raise ValueError("not an archiver journal segment")
        if header.get("version") != VERSION:
            raise IntegrityError(
                f"journal segment {key} is format version {header.get('version')!r}, not {VERSION}: "
                "read it with the archiver version that wrote it"
            )
        docs = [json.loads(line) for line in lines[1:]]
        if len(docs) != header["entries"] or any(d.get("op") not in ("put", "del") for d in docs):
            raise ValueError("entries do not match the header")
    except IntegrityError:
        raise
    except (zstandard.ZstdError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise IntegrityError(f"journal segment {key} is damaged ({exc})") from None
    return [Entry(doc, key, position) for position, doc in enumerate(docs)]


def segment_keys(vault: Vault) -> list[str]:
    return [info.key for info in vault.list(JOURNAL_PREFIX) if info.key.endswith(".zst")]


def read_journal(vault: Vault, keys: Iterable[str] | None = None) -> list[Entry]:
    """Every entry of every segment in the vault (or of `keys`), oldest first."""
    entries: list[Entry] = []
    for key in segment_keys(vault) if keys is None else keys:
        entries += decode_segment(vault.get(key), key)
    return sorted(entries, key=lambda entry: entry.order)


def latest(entries: Iterable[Entry]) -> dict[tuple[str, str], Entry]:
    """The newest entry per (source, key): the journal's word on each asset."""
    newest: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        known = newest.get(entry.ident)
        if known is None or entry.order > known.order:
            newest[entry.ident] = entry
    return newest


class JournalWriter:
    """Appends segments to a vault, and puts there, once, the profiles and models entries name."""

    def __init__(self, vault: Vault, storage_class: str, writer: str) -> None:
        self.vault, self.storage_class, self.writer = vault, storage_class, writer
        self._present: set[str] = set()  # keys known to be in the vault already

    def append(self, entries: Sequence[dict[str, Any]], at: datetime) -> list[VaultCopy]:
        """Write `entries` as segments of at most SEGMENT_ENTRIES; each is confirmed (its checksum
        read back) before this returns. Nothing is written for no entries."""
        copies = []
        for start in range(0, len(entries), SEGMENT_ENTRIES):
            data = encode_segment(entries[start : start + SEGMENT_ENTRIES], self.writer, at)
            key = journal_key(hashlib.sha256(data).hexdigest())
            copies.append(self.vault.put(key, data, storage_class=self.storage_class))
        return copies

    def _put_once(self, key: str, make: Any, metadata: dict[str, str] | None = None) -> None:
        if key in self._present:
            return
        try:
            self.vault.head(key)
        except NoSuchObject:
            self.vault.put(key, make(), metadata=metadata, storage_class=self.storage_class)
        self._present.add(key)

    def ensure_shared(self, record: Record) -> None:
        """The record's profiles and model, in the vault (each written once, by content id)."""
        render, gate, encoding = record.render_profile, record.gate_profile, record.encoding_profile
        self._put_once(profile_key("render", render.sha256), lambda: profiles.canonical_json(render.doc()))
        self._put_once(profile_key("gate", gate.sha256), lambda: profiles.canonical_json(gate.doc()))
        self._put_once(profile_key("encoding", encoding.sha256), lambda: bytes(encoding.body))
        self.ensure_model(record.model)

    def ensure_model(self, model: Model) -> None:
        """The model's files as one tar under its registry hash, after checking they still hash to it."""
        from archiver.engine.registry import model_files, verify_model

        def build() -> bytes:
            path = verify_model(model)
            return model_tar([(f.relative_to(path).as_posix(), f.read_bytes()) for f in model_files(path)])

        metadata = {"archiver-model": model.name, "archiver-pipeline": model.pipeline_class}
        self._put_once(model_key(model.sha256), build, metadata if model.name.isascii() else None)


def profile_body_ok(profile_id: str, body: bytes) -> bool:
    """A profile's body is its content: every kind's id is the SHA-256 of the body as stored."""
    return hashlib.sha256(body).hexdigest() == profile_id


def fetch_model(vault: Vault, sha256: str, directory: Path) -> dict[str, str]:
    """Write the model stored under `sha256` into `directory` (new or empty), check that its files
    hash to `sha256`, and return its object metadata (name, pipeline class, where known)."""
    from archiver.engine.registry import model_sha256

    key = model_key(sha256)
    where = f"{vault.url}/{key}"
    try:
        metadata = vault.head(key).metadata or {}
    except NoSuchObject:
        raise NoSuchObject(
            f"no model {sha256} in the vault ({where} does not exist): `archiver model list` on the "
            "rebuilt catalog names the hashes records use"
        ) from None
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} is not empty: name a new or empty directory for the model")
    files = model_files_from_tar(vault.get(key), where=where)
    for name, data in files:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    actual = model_sha256(directory)
    if actual != sha256:
        raise IntegrityError(
            f"{where} unpacked into {directory} hashes to {actual}, not {sha256}: the vault copy is damaged"
        )
    return metadata
