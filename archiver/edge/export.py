"""Exporting the catalog for the edge: entries (full, or the changes after a cursor) and their files.

`export(catalog, scope, since)` reads, in its own transactions, the cursor (the newest event id
with nothing older still to commit: `queries.event_cursor`) and then the archived records in scope
(all of them, or those of the assets with an event after `since`), and builds the entries an edge
needs: one compact record per archived asset under its hashed request path (`keys`), the render
and encoding profiles and the models those records name, the dictionary the values were made with,
and `meta`. A delta also lists tombstones: the keys of assets in scope that changed and are no
longer archived (restored, or anything else), which the edge must forget. Changes committed
while it runs are in this export or the next delta (both is harmless: entries are idempotent).

The writers lay the same entries out for a store: `write_bundle` (one SQLite file, see `bundle`),
`write_cloudflare` (Workers KV bulk JSON: at most 10,000 pairs and 100 MB per file, values base64,
for `wrangler kv bulk put`; tombstones for `wrangler kv bulk delete`) and `write_fastly` (Fastly KV
NDJSON for `fastly kv-store-entry create --file`; tombstones one key per line). Dictionaries,
profiles and models come before the records that name them, and `meta` last.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import EncodingProfile, Model, RenderProfile
from archiver.catalog.profiles import canonical_json
from archiver.edge import keys
from archiver.edge.bundle import FORMAT, VERSION, write_bundle
from archiver.edge.records import Compressor, Dictionary, EdgeRecord, train
from archiver.errors import ConfigError

FORMATS = ("bundle", "cloudflare", "fastly")
CLOUDFLARE_PAIRS = 10_000  # per bulk request
CLOUDFLARE_BYTES = 100_000_000  # per bulk request ("100 megabytes or less")


@dataclass(frozen=True)
class Scope:
    """What an export covers and where it serves it: fixed for a bundle and every delta applied to it."""

    url_prefix: str = "/"
    key_prefix: str = ""
    source: str | None = None


@dataclass
class Export:
    meta: dict[str, Any]
    entries: dict[str, bytes]  # every entry but `meta`, by key
    tombstones: list[str]
    values: list[bytes] = field(repr=False)  # the records' canonical values, uncompressed
    dictionary: Dictionary | None
    note: str  # which dictionary, or why none

    @property
    def records(self) -> int:
        return len(self.values)

    @property
    def cursor(self) -> int:
        return int(self.meta["cursor"])

    def ordered(self) -> Iterator[tuple[str, bytes]]:
        """Every entry, what others name first: dictionaries, profiles, models, records, then meta."""
        rank = {keys.DICTIONARY: 0, keys.RENDER_PROFILE: 1, keys.ENCODING_PROFILE: 1, keys.MODEL: 2}
        for key in sorted(self.entries, key=lambda k: (rank.get(k[:2], 3), k)):
            yield key, self.entries[key]
        yield keys.META, canonical_json(self.meta)


def export(
    catalog: Catalog, scope: Scope, since: int | None = None, *, approved_only: bool = False
) -> Export:
    """The entries for `scope`: every archived record, or (with `since`, an event id) what changed.
    With `approved_only` (review is required), only records a person approved (archiver/http/review/);
    in a delta, the others become tombstones."""
    prefix = keys.url_prefix(scope.url_prefix)
    with catalog.begin() as session:
        cursor = queries.event_cursor(session)
    if since is not None and not 0 <= since <= cursor:
        raise ConfigError(f"--since {since} is not a cursor of this catalog (its newest event is {cursor})")
    with catalog.begin() as session:
        source = queries.scoped_source(session, scope.source)
        changed = None if since is None else queries.changed_since(session, since)
        scoped = queries.scoped_assets(session, scope.key_prefix, source, changed)
        rows = queries.edge_rows(session, [asset_id for asset_id, *_ in scoped])
        if approved_only:
            decided = queries.reviews(session, [row.asset_id for row in rows])
            rows = [
                row for row in rows if row.asset_id in decided and decided[row.asset_id].status == "approved"
            ]
        renders = {i: session.get(RenderProfile, i) for i in {row.render_profile_id for row in rows}}
        encodings = {i: session.get(EncodingProfile, i) for i in {row.encoding_profile_id for row in rows}}
        models = {i: session.get(Model, i) for i in {row.model_id for row in rows}}
        entries: dict[str, bytes] = {}
        for render in renders.values():
            assert render is not None
            entries[keys.profile_key(keys.RENDER_PROFILE, render.sha256)] = canonical_json(render.doc())
        for encoding in encodings.values():
            assert encoding is not None
            entries[keys.profile_key(keys.ENCODING_PROFILE, encoding.sha256)] = encoding.body
        for model in models.values():
            assert model is not None
            identity = {"name": model.name, "pipeline_class": model.pipeline_class, "sha256": model.sha256}
            entries[keys.profile_key(keys.MODEL, model.sha256)] = canonical_json(identity)
        put: dict[str, bytes] = {}  # record key -> canonical value
        for row in rows:
            record_key = keys.record_key(keys.request_path(prefix, row.key))
            if record_key in put:
                raise ConfigError(
                    f"{row.key!r} is archived in several sources: export one at a time "
                    "(--source URL), each under its own --url-prefix"
                )
            render, encoding, model = (
                renders[row.render_profile_id],
                encodings[row.encoding_profile_id],
                models[row.model_id],
            )
            assert render is not None and encoding is not None and model is not None
            value = EdgeRecord(
                prompt=row.prompt,
                negative_prompt=row.negative_prompt,
                seed=row.seed,
                render_profile=render.sha256,
                encoding_profile=encoding.sha256,
                model=model.sha256,
                sha256=row.rendered_sha256,
                size=row.rendered_size,
                last_modified=int(row.last_modified.timestamp()),
                render_sketch=row.render_sketch,
            ).encode()
            put[record_key] = value
        tombstones = sorted(
            {keys.record_key(keys.request_path(prefix, key)) for _, _, key, _ in scoped} - set(put)
            if since is not None
            else set()
        )
    values = list(put.values())
    dictionary, note = train(values)
    compressor = Compressor(dictionary)
    for record_key, value in put.items():
        entries[record_key] = compressor.compress(value)
    if dictionary is not None:
        entries[keys.dictionary_key(dictionary.dict_id)] = dictionary.data
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "url_prefix": prefix,
        "key_prefix": scope.key_prefix,
        "source": scope.source,
        "since": since,
        "cursor": cursor,
    }
    for key in entries:
        assert len(key.encode()) <= keys.MAX_KEY_BYTES, key
    return Export(meta, entries, tombstones, values, dictionary, note)


def output_names(result: Export) -> str:
    """The stem of an export's files: `full-<cursor>` or `delta-<since>-<cursor>`."""
    since = result.meta["since"]
    return f"full-{result.cursor}" if since is None else f"delta-{since}-{result.cursor}"


def write(result: Export, out: Path, fmt: str) -> list[Path]:
    """Write the export into directory `out` in format `fmt`; the files written, in upload order."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown edge format {fmt!r}: use one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "bundle":
        path = out / f"{output_names(result)}.bundle"
        write_bundle(path, result.ordered(), result.tombstones)
        return [path]
    if fmt == "cloudflare":
        return write_cloudflare(result, out)
    return write_fastly(result, out)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def write_cloudflare(result: Export, out: Path) -> list[Path]:
    """Workers KV bulk JSON: `[{"key", "value" (base64), "base64": true}]`, split at 10,000 pairs or
    100 MB, whichever comes first; tombstones as JSON arrays of keys, 10,000 a file."""
    stem = output_names(result)
    files: list[Path] = []
    batch: list[bytes] = []
    size = 2
    for key, value in result.ordered():
        item = json.dumps({"key": key, "value": _b64(value), "base64": True}, separators=(",", ":")).encode()
        if batch and (len(batch) == CLOUDFLARE_PAIRS or size + len(item) + 1 > CLOUDFLARE_BYTES):
            files.append(_write_json_array(out / f"cloudflare-{stem}-put-{len(files) + 1:04d}.json", batch))
            batch, size = [], 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        files.append(_write_json_array(out / f"cloudflare-{stem}-put-{len(files) + 1:04d}.json", batch))
    for n, start in enumerate(range(0, len(result.tombstones), CLOUDFLARE_PAIRS), 1):
        chunk = [json.dumps(key).encode() for key in result.tombstones[start : start + CLOUDFLARE_PAIRS]]
        files.append(_write_json_array(out / f"cloudflare-{stem}-delete-{n:04d}.json", chunk))
    return files


def _write_json_array(path: Path, items: list[bytes]) -> Path:
    _atomic_write(path, b"[" + b",".join(items) + b"]\n")
    return path


def write_fastly(result: Export, out: Path) -> list[Path]:
    """Fastly KV NDJSON, one `{"key", "value" (base64)}` a line; tombstones one key a line."""
    stem = output_names(result)
    lines = [
        json.dumps({"key": key, "value": _b64(value)}, separators=(",", ":")) + "\n"
        for key, value in result.ordered()
    ]
    path = out / f"fastly-{stem}.ndjson"
    _atomic_write(path, "".join(lines).encode())
    files = [path]
    if result.tombstones:
        deletes = out / f"fastly-{stem}-delete.txt"
        _atomic_write(deletes, "".join(key + "\n" for key in result.tombstones).encode())
        files.append(deletes)
    return files
