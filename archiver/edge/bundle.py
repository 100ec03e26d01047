"""The edge bundle: one SQLite file holding an export's entries, and the small API that reads it.

A bundle is the key-value store an edge node of our own reads, as a file:

    entries(key TEXT PRIMARY KEY, value BLOB)   the export's entries (`archiver.edge.keys`)
    tombstones(key TEXT PRIMARY KEY)            a delta only: record keys to forget

Reading one, for `archiver serve --bundle` or any other edge node, needs no catalog and no vault:

    bundle = open_bundle(path, model_dir)   # ModelError unless the model is one the bundle names
    found = bundle.lookup("/shoes/red.png") # the request path; NotFound if it is not in the bundle
    pixels, data = render_and_encode(bundle.load_model(model_dir), found.spec, found.encoding)
    judge_render(data, pixels, found.sha256, found.render_sketch, DEFAULT_MIN_PSNR)
    # ^ what the record promises, as the catalog's reader checks: its exact bytes, or (this node's
    #   kernels differ) the same image by the render sketch; IntegrityError otherwise

`lookup` returns everything rehydrating and serving needs: the render spec, the encoding profile,
the model's SHA-256, the rendered bytes' SHA-256 and size, the content type and the last-modified
time. Profiles are checked against their content ids as they are first read.

`apply_delta(delta, bundle)` merges a delta export into a full bundle in one transaction: its
entries replace, its tombstones delete, then dictionaries, profiles and models no record names any
more go, and the bundle's cursor becomes the delta's. A delta the bundle already holds (its cursor
is not past the bundle's) changes nothing; one that starts after the bundle's cursor is refused
(changes in between would be missing). So a bundle plus its deltas equals a fresh full export.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.edge import keys
from archiver.edge.records import Decompressor, EdgeRecord, frame_dictionary
from archiver.errors import ConfigError, IntegrityError, ModelError, NotFound
from archiver.imagetypes import CONTENT_TYPES

if TYPE_CHECKING:
    from archiver.engine.encoding import EncodingProfile
    from archiver.engine.registry import LoadedModel
    from archiver.engine.rehydrate import RenderSpec

FORMAT = "archiver-edge"
VERSION = 1
SCHEMA = (
    "CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE tombstones (key TEXT PRIMARY KEY) WITHOUT ROWID",
)
SCOPE = ("url_prefix", "key_prefix", "source")  # meta fields a delta must share with its bundle


def write_bundle(path: Path, entries: Iterable[tuple[str, bytes]], tombstones: Iterable[str]) -> None:
    """A new bundle file at `path` (replaced whole and atomically if one is there)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    connection = sqlite3.connect(tmp)
    try:
        with connection:
            for statement in SCHEMA:
                connection.execute(statement)
            connection.executemany("INSERT INTO entries VALUES (?, ?)", entries)
            connection.executemany("INSERT INTO tombstones VALUES (?)", ((key,) for key in tombstones))
    finally:
        connection.close()
    os.replace(tmp, path)


@dataclass(frozen=True)
class BundleRecord:
    """Everything needed to rehydrate one asset and to serve and check what comes out."""

    path: str  # the request path it was looked up by
    spec: RenderSpec
    encoding: EncodingProfile
    model_sha256: str
    sha256: str  # of the rehydrated bytes
    size: int
    content_type: str
    last_modified: datetime
    render_sketch: bytes | None = None  # of the accepted render's pixels (archiver.gate.sketch)


class Bundle:
    """An open bundle. Thread-safe: lookups share one read-only connection under a lock."""

    def __init__(self, path: Path, connection: sqlite3.Connection, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta
        self._connection = connection
        self._lock = threading.Lock()
        self._checked: dict[str, bytes] = {}  # entries read and checked against their content ids
        self._values = Decompressor(lambda dict_id: self.get(keys.dictionary_key(dict_id)))
        self.model_sha256: str | None = None  # the model this bundle was opened with, if one was given

    @property
    def cursor(self) -> int:
        return int(self.meta["cursor"])

    @property
    def url_prefix(self) -> str:
        return str(self.meta["url_prefix"])

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._connection.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _addressed(self, kind: str, sha256: str) -> bytes:
        """A profile or model entry, checked once against the content id it is stored under."""
        key = keys.profile_key(kind, sha256)
        if key not in self._checked:
            value = self.get(key)
            if value is None:
                raise IntegrityError(f"the bundle {self.path} names {key} but does not hold it: re-export it")
            if kind != keys.MODEL and hashlib.sha256(value).hexdigest() != sha256:
                raise IntegrityError(f"the bundle {self.path} holds a damaged {key}: re-export it")
            self._checked[key] = value
        return self._checked[key]

    def record(self, record_key: str) -> EdgeRecord | None:
        """The record stored under a record key (`r/...`), decoded; None if there is none."""
        value = self.get(record_key)
        return None if value is None else EdgeRecord.decode(self._values.decompress(value))

    def models(self) -> dict[str, dict[str, Any]]:
        """The models the bundle's records name, by SHA-256 (identity only: never the model)."""
        with self._lock:
            rows = self._connection.execute(
                f"SELECT key, value FROM entries WHERE {_kind(keys.MODEL)}"
            ).fetchall()
        return {key[len(keys.MODEL) :]: json.loads(value) for key, value in rows}

    def lookup(self, path: str) -> BundleRecord:
        """What the asset at request path `path` (percent-decoded, see `keys`) needs; NotFound if none."""
        from archiver.engine.encoding import EncodingProfile
        from archiver.engine.rehydrate import RenderSpec

        found = self.record(keys.record_key(path))
        if found is None:
            raise NotFound(f"{path}: not in the bundle {self.path}")
        if self.model_sha256 is not None and found.model != self.model_sha256:
            raise ModelError(
                f"{path} is rendered by model {found.model[:12]}…, not the one this bundle was opened "
                f"with ({self.model_sha256[:12]}…): open it with that model's directory"
            )
        profile = json.loads(self._addressed(keys.RENDER_PROFILE, found.render_profile))
        encoding = EncodingProfile.from_json(self._addressed(keys.ENCODING_PROFILE, found.encoding_profile))
        spec = RenderSpec.from_parts(
            profile, prompt=found.prompt, negative_prompt=found.negative_prompt, seed=found.seed
        )
        return BundleRecord(
            path=path,
            spec=spec,
            encoding=encoding,
            model_sha256=found.model,
            sha256=found.sha256,
            size=found.size,
            content_type=CONTENT_TYPES.get(encoding.format, "application/octet-stream"),
            last_modified=datetime.fromtimestamp(found.last_modified, UTC),
            render_sketch=found.render_sketch,
        )

    def check_model(self, model_dir: Path) -> str:
        """The SHA-256 of the model at `model_dir`, if it is one this bundle's records name; else
        ModelError. Hashes every file of the model (as registering it does)."""
        from archiver.engine.registry import model_sha256

        if not model_dir.is_dir():
            raise ModelError(f"{model_dir} is not a model directory")
        actual = model_sha256(model_dir)
        known = self.models()
        if actual not in known:
            names = ", ".join(f"{m.get('name')} ({sha[:12]}…)" for sha, m in known.items()) or "none"
            raise ModelError(
                f"the bundle {self.path} was exported for model {names}, but {model_dir} hashes to "
                f"{actual[:12]}…: give the model directory the records were made with"
            )
        self.model_sha256 = actual
        return actual

    def load_model(self, model_dir: Path, device: str = "cpu") -> LoadedModel:
        """The model at `model_dir`, checked against the bundle, loaded to render its records."""
        import torch

        from archiver.catalog.models import Model
        from archiver.engine.pipeline import load_pipeline
        from archiver.engine.registry import LoadedModel
        from archiver.engine.rendering import enable_determinism

        sha256 = self.check_model(model_dir)
        identity = self.models()[sha256]
        enable_determinism()
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        row = Model(
            name=identity.get("name", sha256[:12]),
            sha256=sha256,
            path=str(model_dir),
            pipeline_class=identity.get("pipeline_class", ""),
        )
        return LoadedModel(
            row=row, pipeline=load_pipeline(model_dir, device=device, dtype=dtype), device=device
        )

    def logical(self) -> dict[str, Any]:
        """What lookups see, for comparing bundles: `meta`, and every entry but the dictionaries
        (records decoded). Two bundles with equal `logical()` answer every lookup alike."""
        found: dict[str, Any] = {}
        for key, value in self.entries():
            if key.startswith(keys.DICTIONARY):
                continue
            if key == keys.META:
                found[key] = json.loads(value)
            elif key.startswith(keys.RECORD):
                found[key] = EdgeRecord.decode(self._values.decompress(value))
            else:
                found[key] = value
        return found

    def entries(self) -> list[tuple[str, bytes]]:
        """Every entry as stored, in key order."""
        with self._lock:
            rows = self._connection.execute("SELECT key, value FROM entries ORDER BY key").fetchall()
        return [(key, bytes(value)) for key, value in rows]

    def tombstones(self) -> list[str]:
        with self._lock:
            return [key for (key,) in self._connection.execute("SELECT key FROM tombstones ORDER BY key")]

    def close(self) -> None:
        self._connection.close()


def _read_meta(path: Path, connection: sqlite3.Connection) -> dict[str, Any]:
    try:
        row = connection.execute("SELECT value FROM entries WHERE key = ?", (keys.META,)).fetchone()
        meta = json.loads(row[0]) if row else None
    except (sqlite3.DatabaseError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an archiver edge bundle (`archiver edge export --format bundle`)")
    if meta.get("version") != VERSION:
        raise ConfigError(
            f"{path} is an edge bundle of version {meta.get('version')}, this archiver reads version "
            f"{VERSION}: export it again with this archiver"
        )
    return meta


def _connect(path: Path, *, writable: bool) -> sqlite3.Connection:
    if not path.is_file():
        raise NotFound(f"no bundle at {path}: `archiver edge export --format bundle --out DIR` writes one")
    if writable:
        return sqlite3.connect(path, isolation_level=None)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def open_bundle(path: Path | str, model_dir: Path | str | None = None) -> Bundle:
    """Open the bundle at `path` to read; with `model_dir`, refuse it (ModelError) unless that
    directory holds a model the bundle's records were made with."""
    path = Path(path)
    connection = _connect(path, writable=False)
    try:
        bundle = Bundle(path, connection, _read_meta(path, connection))
        if model_dir is not None:
            bundle.check_model(Path(model_dir))
    except BaseException:
        connection.close()
        raise
    return bundle


@dataclass(frozen=True)
class Applied:
    """What `apply_delta` did."""

    changed: bool  # False: the bundle already held this delta
    put: int  # entries written
    deleted: int  # records forgotten
    collected: int  # dictionaries, profiles and models no record names any more, removed
    cursor: int  # the bundle's cursor now


def apply_delta(delta_path: Path | str, bundle_path: Path | str) -> Applied:
    """Merge the delta at `delta_path` into the full bundle at `bundle_path` (see the module docstring)."""
    delta_path, bundle_path = Path(delta_path), Path(bundle_path)
    delta = open_bundle(delta_path)
    try:
        if delta.meta.get("since") is None:
            raise ConfigError(
                f"{delta_path} is a full export, not a delta: use it as the bundle, or export a delta "
                "with --since CURSOR"
            )
        connection = _connect(bundle_path, writable=True)
        try:
            meta = _read_meta(bundle_path, connection)
            return _merge(delta, delta_path, connection, meta, bundle_path)
        finally:
            connection.close()
    finally:
        delta.close()


def _merge(
    delta: Bundle, delta_path: Path, connection: sqlite3.Connection, meta: dict[str, Any], bundle_path: Path
) -> Applied:
    if meta.get("since") is not None:
        raise ConfigError(f"{bundle_path} is a delta; apply deltas to a full bundle")
    for name in SCOPE:
        if meta.get(name) != delta.meta.get(name):
            raise ConfigError(
                f"{delta_path} covers {name} {delta.meta.get(name)!r}, the bundle {meta.get(name)!r}: "
                "export the delta with the bundle's --url-prefix, PREFIX and --source"
            )
    cursor, since, until = int(meta["cursor"]), int(delta.meta["since"]), delta.cursor
    if until <= cursor:
        return Applied(False, 0, 0, 0, cursor)
    if since > cursor:
        raise ConfigError(
            f"{delta_path} holds the changes after event {since}, the bundle is at event {cursor}: "
            f"changes in between would be missing; export a delta with --since {cursor}"
        )
    entries = [(key, value) for key, value in delta.entries() if key != keys.META]
    tombstones = delta.tombstones()
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?)", entries)
        deleted = sum(
            connection.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount for key in tombstones
        )
        collected = _collect_garbage(connection)
        meta["cursor"] = until
        connection.execute(
            "UPDATE entries SET value = ? WHERE key = ?",
            (json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(), keys.META),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return Applied(True, len(entries), deleted, collected, until)


def _collect_garbage(connection: sqlite3.Connection) -> int:
    """Delete the dictionaries, profiles and models that no record names; how many went."""
    dictionaries = dict(connection.execute(f"SELECT key, value FROM entries WHERE {_kind(keys.DICTIONARY)}"))
    values = Decompressor(lambda dict_id: dictionaries.get(keys.dictionary_key(dict_id)))
    named: set[str] = set()
    for (value,) in connection.execute(f"SELECT value FROM entries WHERE {_kind(keys.RECORD)}"):
        frame = bytes(value)
        record = EdgeRecord.decode(values.decompress(frame))
        named |= {
            keys.dictionary_key(frame_dictionary(frame)),
            keys.profile_key(keys.RENDER_PROFILE, record.render_profile),
            keys.profile_key(keys.ENCODING_PROFILE, record.encoding_profile),
            keys.profile_key(keys.MODEL, record.model),
        }
    shared = (keys.DICTIONARY, keys.RENDER_PROFILE, keys.ENCODING_PROFILE, keys.MODEL)
    unused = [
        key
        for (key,) in connection.execute("SELECT key FROM entries")
        if key[:2] in shared and key not in named
    ]
    connection.executemany("DELETE FROM entries WHERE key = ?", ((key,) for key in unused))
    return len(unused)


def _kind(prefix: str) -> str:
    """SQL matching the keys that start with a two-character kind prefix like `r/` (an index range)."""
    return f"key >= '{prefix}' AND key < '{prefix[0]}0'"
